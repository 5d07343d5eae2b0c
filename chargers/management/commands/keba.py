"""`manage.py keba`: talk to KEBA stations from the command line.

    keba decode [FILE ...]            captured datagrams as JSON
    keba send HOST COMMAND ...        one command, e.g. `currtime 10000 60`
    keba discover [--scan CIDR]       find stations on the LAN
    keba emulate --station 127.0.0.2=p30c ...   emulated stations, driven from stdin

Each subcommand is a thin layer over chargers.kecontact; nothing here needs
the database.
"""

import argparse
import asyncio
import ipaddress
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chargers.kecontact.client import MAX_SCAN_ADDRESSES, FoundStation, KebaClient
from chargers.kecontact.codec import Message, decode
from chargers.kecontact.commands import Command as KebaCommand
from chargers.kecontact.commands import parse_command
from chargers.kecontact.emulator import (
    MODELS,
    Car,
    EmulatedStation,
    Faults,
    Fleet,
    network_broadcast,
)
from chargers.kecontact.errors import KebaError
from chargers.kecontact.jsonable import to_jsonable
from chargers.kecontact.timing import Clock, Timing
from chargers.management.arguments import ipv4, non_negative, positive, probability
from chargers.management.emulator_console import HELP as CONSOLE_HELP
from chargers.management.emulator_console import Console, ConsoleError, stdin_lines

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
DEFAULT_MODEL = "p30c"


def ipv4_network(text: str) -> str:
    try:
        network = ipaddress.IPv4Network(text, strict=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected a range such as 192.168.1.0/24: {exc}"
        ) from None
    if network.num_addresses > MAX_SCAN_ADDRESSES:
        raise argparse.ArgumentTypeError(
            f"{text} has {network.num_addresses} addresses; scan at most {MAX_SCAN_ADDRESSES}"
        )
    return str(network)


def parse_station(text: str, allow_lan: bool) -> tuple[str, str]:
    """Read `127.0.0.2=p30c` as ("127.0.0.2", "p30c"); the model defaults to p30c."""
    host, _, model = text.partition("=")
    model = model.strip().lower() or DEFAULT_MODEL
    try:
        address = ipaddress.IPv4Address(host.strip())
    except ValueError:
        raise CommandError(f"--station {text}: {host!r} is not an IPv4 address") from None
    if model not in MODELS:
        raise CommandError(
            f"--station {text}: unknown model {model!r}; choose one of "
            + ", ".join(f"{name} ({description})" for name, description in MODELS.items())
        )
    if address not in LOOPBACK and not allow_lan:
        raise CommandError(
            f"--station {text}: emulated stations stay on loopback addresses (127.0.0.0/8); "
            "add --allow-lan to put one on a real network"
        )
    return str(address), model


def read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    return Path(name).read_bytes()


def discovery_table(found: list[FoundStation]) -> list[str]:
    rows = [("ADDRESS", "SERIAL", "PRODUCT", "MODEL", "FIRMWARE", "CAPABILITIES")]
    for station in found:
        report = station.report
        info = report.product_info
        label = info.label if info else "?"
        if info and not info.udp_supported:
            label += " (no UDP)"
        capabilities = ", ".join(sorted(info.capabilities)) if info else ""
        rows.append(
            (
                station.host,
                report.serial,
                report.product,
                label,
                report.firmware,
                capabilities or "-",
            )
        )
    # Pad every column but the last, which may be long.
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]


async def send_command(host: str, command: KebaCommand, bind: str, timeout_s: float) -> Message:
    async with KebaClient(bind_host=bind, reply_timeout_s=timeout_s) as client:
        if command.wire not in ("i", "report 1"):
            # The client refuses what the model cannot do once it knows the model.
            await client.identify(host)
        return await client.request(host, command)


async def find_stations(
    bind: str, scan: str | None, broadcast: str, wait_s: float
) -> list[FoundStation]:
    async with KebaClient(bind_host=bind) as client:
        if scan is not None:
            return await client.scan(scan, wait_s)
        return await client.discover(broadcast, wait_s)


async def until_stopped() -> None:
    """Wait for Ctrl-C or SIGTERM (scripts/run stops the emulator with the latter)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for number in signals:
        loop.add_signal_handler(number, stop.set)
    try:
        await stop.wait()
    finally:
        for number in signals:
            loop.remove_signal_handler(number)


class Command(BaseCommand):
    help = "Talk to KEBA KeContact stations over UDP: decode, send, discover, emulate."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

        p = sub.add_parser("decode", help="print KEBA datagrams (files or stdin) as JSON")
        p.add_argument("files", nargs="*", metavar="FILE", help="one datagram per file; - is stdin")

        p = sub.add_parser("send", help="send one command to a station and print the reply")
        p.add_argument("host", type=ipv4, metavar="HOST")
        p.add_argument("words", nargs="+", metavar="COMMAND", help="as in KEBA's guide")
        p.add_argument("--timeout", type=positive, default=1.5, help="seconds per attempt")
        self._add_bind(p)

        p = sub.add_parser("discover", help="find stations by broadcast or by scanning a range")
        where = p.add_mutually_exclusive_group()
        where.add_argument(
            "--scan", type=ipv4_network, metavar="CIDR", help="ask every address, e.g. 10.0.0.0/24"
        )
        where.add_argument("--broadcast", type=ipv4, default="255.255.255.255", metavar="ADDR")
        p.add_argument("--wait", type=positive, default=1.0, metavar="SECONDS")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        self._add_bind(p)

        p = sub.add_parser(
            "emulate",
            help="run emulated stations until interrupted",
            description="Run emulated stations until Ctrl-C or SIGTERM.\nLines on standard "
            "input drive them; end of input leaves them running.",
            epilog=CONSOLE_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument(
            "--station",
            action="append",
            required=True,
            metavar="ADDR=MODEL",
            help=f"e.g. 127.0.0.2=p30c; models: {', '.join(MODELS)}",
        )
        p.add_argument("--speed", type=positive, default=1.0, help="station clock speed-up")
        p.add_argument("--car", action="store_true", help="plug a car into every station")
        p.add_argument(
            "--loss", type=probability, default=0.0, metavar="P", help="chance a request is lost"
        )
        p.add_argument(
            "--delay", type=non_negative, default=0.0, metavar="SECONDS", help="before each reply"
        )
        p.add_argument(
            "--duplicate", type=probability, default=0.0, metavar="P", help="chance of a 2nd reply"
        )
        p.add_argument(
            "--garbage", type=probability, default=0.0, metavar="P", help="chance of a junk reply"
        )
        p.add_argument("--dirty-json", action="store_true", help="answer as old firmware does")
        p.add_argument("--udp-disabled", action="store_true", help="DIP switch DSW1.3 off")
        p.add_argument(
            "--strict-source-port", action="store_true", help="ignore requests not from port 7090"
        )
        p.add_argument("--serial-base", type=int, metavar="N", help="serials N, N+1, ...")
        p.add_argument(
            "--broadcast",
            type=ipv4,
            metavar="ADDR",
            help="where to hear discovery (default: the first station's x.y.z.255)",
        )
        p.add_argument("--allow-lan", action="store_true", help="allow non-loopback addresses")

    def _add_bind(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--bind",
            type=ipv4,
            default=settings.KEBA_BIND,
            metavar="ADDRESS",
            help="local address for UDP port 7090 (default: KEBA_BIND)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "decode": self.handle_decode,
            "send": self.handle_send,
            "discover": self.handle_discover,
            "emulate": self.handle_emulate,
        }
        handlers[options["subcommand"]](options)

    def print_json(self, value: object) -> None:
        self.stdout.write(json.dumps(value, indent=2, ensure_ascii=False))

    # decode

    def handle_decode(self, options: dict[str, Any]) -> None:
        names: list[str] = options["files"] or ["-"]
        failed = sum(not self.decode_one(name) for name in names)
        if failed:
            raise CommandError(f"{failed} of {len(names)} input(s) could not be decoded")

    def decode_one(self, name: str) -> bool:
        label = "stdin" if name == "-" else name
        try:
            message = decode(read_input(name))
        except OSError as exc:
            self.stderr.write(f"{label}: {exc.strerror or exc}")
            return False
        except KebaError as exc:
            self.stderr.write(f"{label}: {exc}")
            return False
        self.print_json(to_jsonable(message))
        return True

    # send

    def handle_send(self, options: dict[str, Any]) -> None:
        try:
            command = parse_command(" ".join(options["words"]))
            reply = asyncio.run(
                send_command(
                    str(options["host"]), command, str(options["bind"]), options["timeout"]
                )
            )
        except KebaError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"cannot use UDP port 7090 on {options['bind']}: {exc}") from None
        self.print_json(to_jsonable(reply))

    # discover

    def handle_discover(self, options: dict[str, Any]) -> None:
        try:
            found = asyncio.run(
                find_stations(
                    str(options["bind"]),
                    options["scan"],
                    str(options["broadcast"]),
                    options["wait"],
                )
            )
        except KebaError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"cannot use UDP port 7090 on {options['bind']}: {exc}") from None
        if options["json"]:
            self.print_json([{"address": s.host, **to_jsonable(s.report)} for s in found])
        elif not found:
            self.stdout.write(
                "No stations found. Check that they are powered and on this network, that "
                "their UDP interface is on (DIP switch DSW1.3), and try --scan CIDR where "
                "broadcasts do not pass."
            )
        else:
            for line in discovery_table(found):
                self.stdout.write(line)

    # emulate

    def handle_emulate(self, options: dict[str, Any]) -> None:
        stations = [parse_station(text, options["allow_lan"]) for text in options["station"]]
        hosts = [host for host, _ in stations]
        duplicates = sorted({host for host in hosts if hosts.count(host) > 1})
        if duplicates:
            raise CommandError(f"--station: {', '.join(duplicates)} given more than once")
        if options["serial_base"] is not None and options["serial_base"] < 0:
            raise CommandError("--serial-base must be 0 or more")
        asyncio.run(self.emulate(stations, options))

    async def emulate(self, stations: list[tuple[str, str]], options: dict[str, Any]) -> None:
        broadcast = str(options["broadcast"] or network_broadcast(stations[0][0]))
        fleet = Fleet(clock=Clock(options["speed"]), timing=Timing(), broadcast=broadcast)
        try:
            for index, (host, model) in enumerate(stations):
                station = await self.start_station(fleet, host, model, index, options)
                self.stdout.write(f"{host}  {model}  {MODELS[model]}  serial {station.serial}")
            self.stdout.write(
                f"Emulating {len(stations)} station(s); type help for commands, Ctrl-C stops them."
            )
            self.stdout.flush()
            console = Console(fleet, allow_lan=options["allow_lan"])
            async with asyncio.TaskGroup() as tasks:
                driver = tasks.create_task(self.drive(console))
                await until_stopped()
                driver.cancel()
        finally:
            await fleet.close()

    async def drive(self, console: Console) -> None:
        """Carry out stdin's lines until it ends; the stations keep running after."""
        async for line in stdin_lines():
            try:
                answers = await console.run(line)
            except (ConsoleError, KebaError) as exc:
                self.stderr.write(str(exc))
                self.stderr.flush()
                continue
            for answer in answers:
                self.stdout.write(answer)
            self.stdout.flush()

    async def start_station(
        self, fleet: Fleet, host: str, model: str, index: int, options: dict[str, Any]
    ) -> EmulatedStation:
        base = options["serial_base"]
        faults = Faults(
            loss=options["loss"],
            delay_s=options["delay"],
            duplicate=options["duplicate"],
            garbage=options["garbage"],
        )
        try:
            station = await fleet.add(
                host,
                model,
                serial=None if base is None else str(base + index),
                faults=faults,
                dirty_json=options["dirty_json"],
                udp_enabled=not options["udp_disabled"],
                strict_source_port=options["strict_source_port"],
            )
        except KebaError as exc:
            raise CommandError(str(exc), returncode=2) from None
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {host}:7090: {exc.strerror or exc}", returncode=2
            ) from None
        if options["car"]:
            station.plug_in(Car())
        return station
