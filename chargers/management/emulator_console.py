"""Lines typed on `keba emulate`'s standard input: play faults by hand.

`Console.run` turns one line into the answer lines for stdout, or raises
ConsoleError (or the emulator's KebaError) with one line for stderr after
changing nothing.
"""

import asyncio
import contextlib
import ipaddress
import os
import re
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from chargers.kecontact.codec import ChargingState
from chargers.kecontact.emulator import Car, EmulatedStation, Fleet

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
CAR_CURRENT_A = (6, 63)  # IEC 61851 lets a car draw from 6 A; KEBA offers up to 63 A
MAX_NEEDED_KWH = 200
TAG_HEX_DIGITS = 16
CLASS_HEX_DIGITS = 20
HELP = """\
Commands, one per line; start with the station's address unless only one runs:
  127.0.0.2 plug [16A] [5kWh]       plug in a car (max current, energy it needs)
  127.0.0.2 unplug                  unplug the car; its session ends
  127.0.0.2 swipe TAG [CLASS]       hold an RFID card to the reader (hex digits)
  127.0.0.2 reboot                  restart; the session log reads as zeros
  127.0.0.2 move 127.0.0.9          take a new address, as after a DHCP change
  127.0.0.2 silent                  hear and answer nothing, as with the cable pulled
  127.0.0.2 back                    answer again
  list                              every station's state
  help                              this text"""


class ConsoleError(Exception):
    """A line that could not be carried out; nothing was changed."""


Action = Callable[[EmulatedStation, list[str]], Awaitable[str]]


@dataclass
class Console:
    fleet: Fleet
    allow_lan: bool = False

    async def run(self, line: str) -> list[str]:
        words = line.partition("#")[0].split()  # comments, for scenario files
        if not words:
            return []
        host = None
        if words[0][0].isdigit():
            host, words = self.station_host(words[0]), words[1:]
        if not words:
            raise ConsoleError(f"{host}: what should it do? type help")
        name, args = words[0].lower(), words[1:]
        if name == "help":
            return HELP.splitlines()
        if name == "list":
            hosts = [host] if host else list(self.fleet.stations)
            return [describe(self.fleet.stations[each]) for each in hosts]
        actions: dict[str, Action] = {
            "plug": self.plug,
            "unplug": self.unplug,
            "swipe": self.swipe,
            "reboot": self.reboot,
            "move": self.move,
            "silent": self.silent,
            "back": self.back,
        }
        action = actions.get(name)
        if action is None:
            raise ConsoleError(f"unknown command `{words[0]}`: type help")
        station = self.fleet.stations[host or self.only_host()]
        return [f"{station.host}: {await action(station, args)}"]

    def station_host(self, word: str) -> str:
        try:
            host = str(ipaddress.IPv4Address(word))
        except ValueError:
            raise ConsoleError(f"`{word}` is not an IPv4 address; type list") from None
        if host not in self.fleet.stations:
            raise ConsoleError(f"no emulated station at {host}; type list")
        return host

    def only_host(self) -> str:
        if len(self.fleet.stations) != 1:
            raise ConsoleError(
                "which station? start the line with its address, e.g. `127.0.0.2 plug`; type list"
            )
        return next(iter(self.fleet.stations))

    async def plug(self, station: EmulatedStation, args: list[str]) -> str:
        car = parse_car(args)
        if station.car is not None:
            raise ConsoleError(f"{station.host}: a car is already plugged in; unplug it first")
        station.plug_in(car)
        return f"car plugged in ({car.max_current_a:g} A, needs {car.needed_kwh:g} kWh)"

    async def unplug(self, station: EmulatedStation, args: list[str]) -> str:
        no_arguments("unplug", args)
        if station.car is None:
            raise ConsoleError(f"{station.host}: no car is plugged in")
        session = station.session
        station.unplug()
        if session is None:
            return "car unplugged"
        return (
            f"car unplugged; session {session.session_id} ended with "
            f"{session.energy / 10000:.3f} kWh"
        )

    async def swipe(self, station: EmulatedStation, args: list[str]) -> str:
        if not 1 <= len(args) <= 2:
            raise ConsoleError("swipe: give a tag and optionally its class, e.g. `swipe 04A1B2C3`")
        tag = hex_word(args[0], TAG_HEX_DIGITS, "tag")
        tag_class = hex_word(args[1], CLASS_HEX_DIGITS, "class") if len(args) == 2 else ""
        if not station.present_tag(tag, tag_class):
            return f"tag {tag} refused (not on the station's whitelist)"
        if station.session is None:
            return f"tag {tag} accepted"
        return f"tag {tag} accepted for session {station.session.session_id}"

    async def reboot(self, station: EmulatedStation, args: list[str]) -> str:
        no_arguments("reboot", args)
        station.reboot()
        return "rebooted"

    async def move(self, station: EmulatedStation, args: list[str]) -> str:
        if len(args) != 1:
            raise ConsoleError("move: give the new address, e.g. `move 127.0.0.9`")
        try:
            address = ipaddress.IPv4Address(args[0])
        except ValueError:
            raise ConsoleError(f"move: `{args[0]}` is not an IPv4 address") from None
        if address not in LOOPBACK and not self.allow_lan:
            raise ConsoleError(
                f"move: emulated stations stay on loopback addresses (127.0.0.0/8), not {address}; "
                "start with --allow-lan to put one on a real network"
            )
        old_host, new_host = station.host, str(address)
        if new_host in self.fleet.stations:
            raise ConsoleError(f"move: {new_host} is already an emulated station's address")
        await self.fleet.move(old_host, new_host)
        return f"moved to {new_host} (serial {station.serial}); {old_host} is free"

    async def silent(self, station: EmulatedStation, args: list[str]) -> str:
        no_arguments("silent", args)
        station.faults.silent = True
        return f"silent: hears and answers nothing until `{station.host} back`"

    async def back(self, station: EmulatedStation, args: list[str]) -> str:
        no_arguments("back", args)
        station.faults.silent = False
        return "answering again"


def parse_car(args: list[str]) -> Car:
    """Read `16A 5kWh`, in either order and both optional, as a Car."""
    car = Car()
    seen: set[str] = set()
    for word in args:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(a|kwh)", word.lower())
        if match is None:
            raise ConsoleError(
                f"plug: `{word}` is neither a current (e.g. 16A) nor an energy (e.g. 5kWh)"
            )
        value, unit = float(match[1]), match[2]
        if unit in seen:
            raise ConsoleError(f"plug: give the {'current' if unit == 'a' else 'energy'} once")
        seen.add(unit)
        if unit == "a":
            low, high = CAR_CURRENT_A
            if not low <= value <= high:
                raise ConsoleError(f"plug: a car draws {low} to {high} A, not {value:g} A")
            car.max_current_a = value
        else:
            if not 0 < value <= MAX_NEEDED_KWH:
                raise ConsoleError(
                    f"plug: a car needs more than 0 and at most {MAX_NEEDED_KWH} kWh, "
                    f"not {value:g} kWh"
                )
            car.needed_kwh = value
    return car


def hex_word(word: str, digits: int, what: str) -> str:
    if not re.fullmatch(rf"[0-9a-fA-F]{{1,{digits}}}", word):
        raise ConsoleError(f"swipe: `{word}` is not an RFID {what}; give 1 to {digits} hex digits")
    return word.upper()


def no_arguments(name: str, args: list[str]) -> None:
    if args:
        raise ConsoleError(f"{name}: takes nothing after it, got `{' '.join(args)}`")


def describe(station: EmulatedStation) -> str:
    station.tick()  # bring energy up to the clock before reading it
    parts = [station.host, station.model, f"serial {station.serial}"]
    parts.append(ChargingState(station.state()).name.lower().replace("_", " "))
    car = station.car
    if car is None:
        parts.append("no car")
    else:
        parts.append(
            f"car {car.max_current_a:g} A, {car.charged_kwh:.3f} of {car.needed_kwh:g} kWh"
        )
    session = station.session
    if session is not None:
        parts.append(f"session {session.session_id} {session.energy / 10000:.3f} kWh")
        if station.authorized_tag is not None:
            parts.append(f"tag {session.tag}")
    if station.faults.silent:
        parts.append("SILENT")
    return "  ".join(parts)


async def stdin_lines() -> AsyncIterator[str]:
    """Standard input's lines, without blocking the loop; ends at end of input.

    A thread reads, because the loop cannot watch every kind of stdin (a file
    or /dev/null is refused by epoll). It reads the raw descriptor: a daemon
    thread blocked inside sys.stdin's buffer can abort interpreter shutdown.
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def deliver(line: str | None) -> None:
        # The loop may be gone already when the user stops the emulator.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(lines.put_nowait, line)

    def read() -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(sys.stdin.fileno(), 4096)
            except (OSError, ValueError, AttributeError):  # closed or absent stdin
                chunk = b""
            if not chunk:
                if pending:
                    deliver(pending.decode(errors="replace"))
                deliver(None)
                return
            *complete, pending = (pending + chunk).split(b"\n")
            for line in complete:
                deliver(line.decode(errors="replace"))

    threading.Thread(target=read, name="stdin", daemon=True).start()
    while (line := await lines.get()) is not None:
        yield line
