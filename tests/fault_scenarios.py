"""Fault injection: the records the gateway keeps, compared with what stations really did.

Each scenario runs emulated stations in this process (a sped-up `Clock`) and the
real gateway as a child process, so that it can be killed with SIGKILL, over a
database of its own: a SQLite file, or in the scaled half of the suite a
PostgreSQL database (tests/databases.py). It plays one fault, waits for the records to settle and
compares every session and command row with the stations' own ledgers
(`EmulatedStation.history`, `.executed`). Used by tests/test_faults.py and
bench/faults.py; `python -m tests.fault_scenarios gateway ...` is the child.
"""

import argparse
import asyncio
import itertools
import json
import os
import signal
import socket
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from chargers.kecontact.emulator import Car, EmulatedStation, Faults, Fleet, SessionRecord
from chargers.kecontact.timing import Clock
from tests.databases import ChildDatabase, migrated_database
from tests.emulated import BROADCAST, GATEWAY_HOST, NETWORK, free_port, station_address

MANAGE = Path(__file__).resolve().parents[1] / "manage.py"
SPEED = 50.0  # station seconds per real second
POLL_INTERVAL_S = 5  # KEBA's minimum, station seconds
CAR_KW = 16 * 230 * 3 / 1000  # Car(max_current_a=16) on three phases

# How far a record may be from the truth, in one place.
# A session read from the station's log is exact, to the log's 0.1 Wh and 1 s.
LOG_ENERGY_KWH = 0.0002
LOG_TIME_S = 2.0
# A session the station forgot (reboot) or never logged (P20) is known only from
# polls: it may lack what was charged since the last poll that got through (two
# intervals, as one poll may be lost), and its times are off by as much.
POLLED_ENERGY_KWH = CAR_KW * 2 * POLL_INTERVAL_S / 3600
POLLED_TIME_S = 2 * POLL_INTERVAL_S + 5
# A boot time derived from the uptime (whole seconds) and a reply's flight.
BOOT_TIME_S = 3.0
SETTLE_S = 20.0  # real seconds to wait for any one outcome

FINAL = {"verified", "acknowledged", "refused", "failed", "expired"}
# What report 2 cannot show: a row for these is at best "acknowledged".
UNSEEN_IN_REPORT2 = {"display", "start", "stop", "unlock", "setdatetime"}
# Executing these twice does something else than executing them once.
NOT_IDEMPOTENT = {"x2", "start", "stop"}


@dataclass
class Result:
    name: str
    sessions_expected: int = 0
    sessions_found: int = 0
    sessions_wrong: list[str] = field(default_factory=list)
    commands_expected: int = 0
    commands_done_once: int = 0
    commands_stuck: list[str] = field(default_factory=list)
    other_wrong: list[str] = field(default_factory=list)  # stations, events, processes
    reference: str = ""  # covered elsewhere: where

    @property
    def ok(self) -> bool:
        return not (self.sessions_wrong or self.commands_stuck or self.other_wrong)

    def report(self) -> str:
        lines = [f"{self.name}:"]
        lines += [f"  session: {w}" for w in self.sessions_wrong]
        lines += [f"  command: {w}" for w in self.commands_stuck]
        lines += [f"  other: {w}" for w in self.other_wrong]
        return "\n".join(lines)


# The database, read as the user's pages would show it


def _parse_time(value: object) -> float | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(str(value))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _clock_text(wall: float | None) -> str:
    return "-" if wall is None else datetime.fromtimestamp(wall, UTC).strftime("%H:%M:%S")


@dataclass
class Downtime:
    """When the gateway was not running, in station wall time."""

    start: float
    end: float | None = None


class Run:
    """One scenario's world: a data directory, a fleet and the gateway processes."""

    def __init__(self, name: str, database: ChildDatabase, speed: float = SPEED) -> None:
        self.name = name
        self.database = database
        self.data_dir = database.data_dir
        self.clock = Clock(speed)
        self.fleet = Fleet(self.clock, broadcast=BROADCAST)
        self.gateways: dict[str, asyncio.subprocess.Process] = {}
        self.downtimes: list[Downtime] = []
        self.result = Result(name)
        self._started = 0

    def env(self) -> dict[str, str]:
        return self.database.env() | {
            "KEBAWEB_TEST_NET": str(NETWORK),
            "KEBAWEB_DEBUG": "0",
            "PYTHONUNBUFFERED": "1",
        }

    def rows(self, sql: str) -> list[dict[str, Any]]:
        return self.database.rows(sql)

    def check(self, sql: str) -> Callable[[], bool]:
        return lambda: bool(self.rows(sql))

    def finished(self, count: int) -> Callable[[], bool]:
        """A condition: `count` command rows have left "pending" and "sent"."""
        sql = "SELECT count(*) AS n FROM chargers_command WHERE status NOT IN ('pending', 'sent')"
        return lambda: self.rows(sql)[0]["n"] >= count

    async def until(
        self, what: str, condition: Callable[[], bool], timeout_s: float = SETTLE_S
    ) -> bool:
        """Wait for an outcome; one that never comes is noted, and the scenario goes on."""
        try:
            async with asyncio.timeout(timeout_s):
                while not await asyncio.to_thread(condition):
                    if any(child.returncode is not None for child in self.gateways.values()):
                        self.result.other_wrong.append(f"the gateway died while waiting for {what}")
                        return False
                    await asyncio.sleep(0.05)
        except TimeoutError:
            self.result.other_wrong.append(f"gave up after {timeout_s:g} s waiting for {what}")
            return False
        return True

    async def polled(self, station: EmulatedStation, times: int = 2) -> bool:
        """Wait until the gateway read report 3 `times` more: it saw the present."""
        mark = station.received.count("report 3")
        return await self.until(
            f"{station.host} to be polled",
            lambda: station.received.count("report 3") >= mark + times,
        )

    async def charge(self, station: EmulatedStation, seconds: float) -> None:
        """Let `seconds` of station time pass (cars draw meanwhile)."""
        await self.clock.sleep(seconds)

    # Gateways

    async def start_gateway(
        self, bind: str = GATEWAY_HOST, setup: dict[str, Any] | None = None
    ) -> None:
        self._started += 1
        log = (self.data_dir / f"gateway-{self._started}.log").open("wb")
        command = [sys.executable, "-m", "tests.fault_scenarios", "gateway", str(self.data_dir)]
        command += ["--bind", bind, "--broadcast", BROADCAST, "--speed", str(self.clock.speed)]
        command += [
            "--origin",
            repr(self.clock._origin),
            "--wall-origin",
            repr(self.clock._wall_origin),
        ]
        if setup:
            command += ["--setup", json.dumps(setup)]
        child = await asyncio.create_subprocess_exec(
            *command,
            env=self.env(),
            cwd=MANAGE.parent,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        log.close()
        self.gateways[bind] = child
        logfile = self.data_dir / f"gateway-{self._started}.log"
        ready = await self.until(
            f"the gateway on {bind} to listen",
            lambda: (
                "gateway listening" in logfile.read_text(errors="replace")
                or child.returncode is not None
            ),
            60,
        )
        if not ready or child.returncode is not None:
            self.result.other_wrong.append(f"gateway did not start: {logfile.read_text()[-2000:]}")
        if self.downtimes and self.downtimes[-1].end is None:
            self.downtimes[-1].end = self.clock.wall()

    async def stop_gateway(self, bind: str = GATEWAY_HOST, kill: bool = False) -> None:
        child = self.gateways.pop(bind)
        self.downtimes.append(Downtime(self.clock.wall()))
        if child.returncode is None:
            child.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        status = await asyncio.wait_for(child.wait(), 30)
        if not kill and status != 0:
            self.result.other_wrong.append(f"gateway on {bind} exited {status} on SIGTERM")

    async def close(self) -> None:
        for child in self.gateways.values():
            if child.returncode is None:
                child.kill()
            await child.wait()
        self.gateways.clear()
        await self.fleet.close()

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.data_dir.glob("*.log")))

    # The comparison

    async def settle_and_compare(self, **options: Any) -> Result:
        """compare(), once the database agrees with the stations or SETTLE_S have
        passed: the gateway writes in batches, and nothing says "written"."""

        def agrees() -> bool:
            kept, self.result = self.result, Result(self.name)
            try:
                found = self.compare(**options)
            finally:
                self.result = kept
            return not (found.sessions_wrong or found.commands_stuck)

        try:
            async with asyncio.timeout(SETTLE_S):
                while not agrees():
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pass  # compare() below says what is still wrong
        return self.compare(**options)

    def compare(
        self,
        observed_only: Collection[str] = (),
        lossy: bool = False,
    ) -> Result:
        """Every station's ledger against the database.

        observed_only: serials of stations without a session log (P20); their
        sessions wholly inside a downtime cannot be known and are not expected.
        lossy: replies were lost, so an idempotent command may rightly run twice.
        """
        stations = {s.serial: s for s in self.fleet.stations.values()}
        rows = self.rows(
            "SELECT s.*, st.serial AS station_serial FROM chargers_session s "
            "JOIN chargers_station st ON st.id = s.station_id ORDER BY s.started_at, s.id"
        )
        result = self.result
        result.sessions_found = len(rows)
        for row in rows:
            if row["station_serial"] not in stations:
                result.sessions_wrong.append(
                    f"invented: a session of unknown station {row['station_serial']}"
                )
        for serial, station in stations.items():
            mine = [r for r in rows if r["station_serial"] == serial]
            expected = [
                record
                for record in station.history
                if serial not in observed_only or self._observable(record)
            ]
            result.sessions_expected += len(expected)
            wrong = (
                self._compare_observed(serial, expected, mine)
                if serial in observed_only
                else self._compare_logged(serial, expected, mine)
            )
            wrong += _overlaps(serial, mine)
            result.sessions_wrong += wrong
        self._compare_commands(stations, lossy)
        return result

    def _observable(self, record: SessionRecord) -> bool:
        ended = record.ended_wall if record.ended_wall is not None else float("inf")
        for down in self.downtimes:
            down_end = down.end if down.end is not None else float("inf")
            if down.start <= record.started_wall and ended <= down_end:
                return False
        return True

    def _spans_downtime(self, record: SessionRecord) -> Downtime | None:
        ended = record.ended_wall if record.ended_wall is not None else float("inf")
        for down in self.downtimes:
            down_end = down.end if down.end is not None else float("inf")
            if record.started_wall < down_end and ended > down.start:
                return down
        return None

    def _compare_logged(
        self, serial: str, expected: list[SessionRecord], rows: list[dict[str, Any]]
    ) -> list[str]:
        wrong = []
        by_id: dict[int | None, list[dict[str, Any]]] = {}
        for row in rows:
            by_id.setdefault(row["keba_session_id"], []).append(row)
        for record in expected:
            found = by_id.pop(record.session_id, [])
            name = f"{serial} session {record.session_id}"
            if not found:
                wrong.append(f"missing: {name} ({record.energy / 10000:.4f} kWh)")
                continue
            if len(found) > 1:
                wrong.append(f"doubled: {name} stored {len(found)} times")
            if record.cut_by_reboot and _saw_not(found[0], record):
                continue  # not watched when the station restarted, and the row says so
            tolerance = POLLED_ENERGY_KWH if record.cut_by_reboot else LOG_ENERGY_KWH
            end_tolerance = BOOT_TIME_S if record.cut_by_reboot else LOG_TIME_S
            wrong += _check_pair(name, record, found[0], tolerance, LOG_TIME_S, end_tolerance)
        for keba_id, extra in by_id.items():
            for row in extra:
                what = "wrong KEBA id" if keba_id is None else "invented"
                wrong.append(
                    f"{what}: {serial} row {row['id']} "
                    f"(KEBA id {keba_id}, {row['energy_kwh']:.4f} kWh)"
                )
        return wrong

    def _compare_observed(
        self, serial: str, expected: list[SessionRecord], rows: list[dict[str, Any]]
    ) -> list[str]:
        # Without session ids, rows and sessions pair up in order.
        wrong = []
        if len(rows) != len(expected):
            wrong.append(
                f"{serial}: {len(expected)} sessions could be observed, {len(rows)} rows stored "
                f"(stored energies {[round(r['energy_kwh'], 4) for r in rows]}, true "
                f"{[round(s.energy / 10000, 4) for s in expected]})"
            )
        for record, row in zip(expected, rows, strict=False):
            name = f"{serial} session {record.session_id} (observed)"
            down = self._spans_downtime(record)
            if down is None:
                wrong += _check_pair(
                    name, record, row, POLLED_ENERGY_KWH, POLLED_TIME_S, POLLED_TIME_S
                )
                continue
            if not _incomplete(row):
                wrong.append(f"{name} spans the gateway's downtime but is not marked incomplete")
            if row["energy_kwh"] > record.energy / 10000 + POLLED_ENERGY_KWH:
                wrong.append(
                    f"{name}: {row['energy_kwh']:.4f} kWh stored, "
                    f"only {record.energy / 10000:.4f} charged"
                )
            ended = _parse_time(row["ended_at"])
            if record.ended_wall is not None and ended is None:
                wrong.append(f"{name}: left open though the station's session ended")
            if (
                ended is not None
                and record.ended_wall is not None
                and record.ended_wall > down.start
                and ended > down.start + POLLED_TIME_S
                and abs(ended - record.ended_wall) > POLLED_TIME_S
            ):
                wrong.append(
                    f"{name}: end invented at {_clock_text(ended)}; "
                    f"the gateway went down at {_clock_text(down.start)}"
                )
        return wrong

    def _compare_commands(self, stations: dict[str, EmulatedStation], lossy: bool) -> None:
        rows = self.rows(
            "SELECT c.*, st.serial AS station_serial, st.model_label FROM chargers_command c "
            "JOIN chargers_station st ON st.id = c.station_id ORDER BY c.id"
        )
        result = self.result
        result.commands_expected = len(rows)
        for row in rows:
            station = stations.get(row["station_serial"])
            wire, status, name = row["wire"], row["status"], row["wire"].split()[0]
            label = (
                f"`{wire}` on {row['station_serial']} ({status}: {row['reason'] or row['reply']})"
            )
            runs = [error for text, error in station.executed if text == wire] if station else []
            took_effect = any(error is None for error in runs)
            problem = None
            if status not in FINAL:
                problem = f"left {status!r}"
            elif len(runs) > 1 and (name in NOT_IDEMPOTENT or not lossy):
                problem = f"executed {len(runs)} times (errors {runs})"
            elif status == "verified" and (
                name in UNSEEN_IN_REPORT2
                or (row["model_label"].startswith("P20") and name == "failsafe")
            ):
                problem = "claims verified, but report 2 cannot show it"
            elif status in ("verified", "acknowledged") and not took_effect:
                problem = "claims success, but the station never carried it out"
            elif status in ("refused", "failed") and took_effect and "unknown" not in row["reason"]:
                problem = "says it did not happen, but the station carried it out"
            if problem is None:
                result.commands_done_once += 1
            else:
                result.commands_stuck.append(f"{label}: {problem}")


def _saw_not(row: dict[str, Any], record: SessionRecord) -> bool:
    """A session whose end nobody saw (polls lost under load around a reboot) is
    right when marked incomplete with an unwatched time that holds its true end,
    and when it claims no more energy than was charged."""
    since, until = _parse_time(row["unobserved_from"]), _parse_time(row["unobserved_until"])
    return (
        _incomplete(row)
        and record.ended_wall is not None
        and since is not None
        and until is not None
        and since <= record.ended_wall <= until
        and row["energy_kwh"] <= record.energy / 10000 + LOG_ENERGY_KWH
    )


def _incomplete(row: dict[str, Any]) -> bool:
    return any("incomplete" in name and value for name, value in row.items())


def _check_pair(
    name: str,
    record: SessionRecord,
    row: dict[str, Any],
    energy_tol: float,
    start_tol: float,
    end_tol: float,
) -> list[str]:
    wrong = []
    true_kwh = record.energy / 10000
    if abs(row["energy_kwh"] - true_kwh) > energy_tol:
        wrong.append(f"{name}: {row['energy_kwh']:.4f} kWh stored, {true_kwh:.4f} charged")
    started, ended = _parse_time(row["started_at"]), _parse_time(row["ended_at"])
    if started is None or abs(started - record.started_wall) > start_tol:
        wrong.append(
            f"{name}: started {_clock_text(started)}, really {_clock_text(record.started_wall)}"
        )
    if record.ended_wall is None:
        if ended is not None:
            wrong.append(f"{name}: closed at {_clock_text(ended)} though still running")
    elif ended is None:
        why = " (cut by a reboot)" if record.cut_by_reboot else ""
        wrong.append(f"{name}: left open though the station's session ended{why}")
    elif abs(ended - record.ended_wall) > end_tol:
        wrong.append(f"{name}: ended {_clock_text(ended)}, really {_clock_text(record.ended_wall)}")
    return wrong


def _overlaps(serial: str, rows: list[dict[str, Any]]) -> list[str]:
    wrong = []
    timed = sorted(
        (r for r in rows if r["started_at"]), key=lambda r: _parse_time(r["started_at"]) or 0
    )
    if sum(1 for r in rows if r["ended_at"] is None) > 1:
        wrong.append(f"{serial}: more than one open session")
    for before, after in itertools.pairwise(timed):
        end = _parse_time(before["ended_at"])
        if end is None or end > (_parse_time(after["started_at"]) or 0) + LOG_TIME_S:
            wrong.append(f"{serial}: row {before['id']} overlaps row {after['id']}")
    return wrong


# Setting up


@asynccontextmanager
async def scenario(name: str, speed: float = SPEED) -> AsyncIterator[Run]:
    with tempfile.TemporaryDirectory(prefix="kebaweb-faults-") as folder:
        made = migrated_database(Path(folder))
        run = Run(name, await asyncio.to_thread(made.__enter__), speed)
        try:
            yield run
        finally:
            await run.close()
            await asyncio.to_thread(made.__exit__, None, None, None)


def station_row(host: str, name: str = "", site: str = "") -> dict[str, Any]:
    return {"name": name or host, "address": host, "site": site}


def charging_car(kwh: float = 50.0) -> Car:
    return Car(max_current_a=16, needed_kwh=kwh)


async def session(run: Run, station: EmulatedStation, seconds: float) -> None:
    """A whole session of `seconds` station time, watched by the gateway."""
    station.plug_in(charging_car())
    await run.polled(station)
    await run.charge(station, seconds)
    station.unplug()
    await run.polled(station)


# The scenarios


async def forged_datagrams() -> Result:
    async with scenario("1 forged datagrams take over a station") as run:
        station = await run.fleet.add(station_address(2), "p30c", serial="17000001")
        station.plug_in(charging_car())
        await run.start_gateway(setup={"stations": [station_row(station.host)]})
        await run.polled(station)
        forgers = [station_address(n) for n in range(100, 150)]
        lies = [
            {"ID": "2", "State": 2, "Plug": 1, "Serial": station.serial, "Sec": 1},
            {
                "ID": "3",
                "P": 9999000,
                "E pres": 9999000,
                "E total": 99990000,
                "Serial": station.serial,
                "Sec": 1,
            },
            {"ID": "100", "Session ID": 999, "E pres": 9999000, "Serial": station.serial, "Sec": 1},
        ]
        for _ in range(3):
            for host in forgers:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forger:
                    forger.bind((host, 7090))
                    for lie in lies:
                        forger.sendto(json.dumps(lie).encode(), (GATEWAY_HOST, 7090))
                    forger.sendto(b"TCH-OK :done\n", (GATEWAY_HOST, 7090))
            await run.polled(station, 1)
        await run.polled(station, 3)
        await run.charge(station, 10)
        station.unplug()
        await run.polled(station)
        await run.settle_and_compare()
        where = run.rows("SELECT address, is_online FROM chargers_station")
        if where != [{"address": station.host, "is_online": 1}]:
            run.result.other_wrong.append(f"the station is now recorded as {where}")
        moved = run.rows("SELECT message FROM chargers_event WHERE kind = 'moved'")
        if moved:
            run.result.other_wrong.append(
                f"{len(moved)} 'moved' events, e.g. {moved[0]['message']}"
            )
        events = run.rows("SELECT count(*) AS n FROM chargers_event")[0]["n"]
        if events > len(forgers) + 20:
            run.result.other_wrong.append(
                f"{events} events for {len(forgers)} forging addresses: not rate-limited"
            )
        return run.result


async def swapped_addresses() -> Result:
    async with scenario("2 two stations swap addresses") as run:
        a = await run.fleet.add(station_address(2), "p30c", serial="17000002")
        b = await run.fleet.add(station_address(3), "p30c", serial="17000003")
        a.plug_in(charging_car())
        await run.start_gateway(
            setup={"stations": [station_row(a.host, "A"), station_row(b.host, "B")]}
        )
        await session(run, b, 20)
        await run.polled(a)
        spare = station_address(50)
        await run.fleet.move(a.host, spare)
        await run.fleet.move(station_address(3), station_address(2))
        await run.fleet.move(spare, station_address(3))
        await run.until(
            "both stations at their new addresses",
            lambda: (
                {
                    (r["serial"], r["address"])
                    for r in run.rows("SELECT serial, address FROM chargers_station")
                }
                == {(a.serial, a.host), (b.serial, b.host)}
            ),
            40,
        )
        await run.charge(a, 10)
        a.unplug()
        await session(run, b, 10)
        await run.polled(a)
        await run.settle_and_compare()
        return run.result


async def impossible_timestamp() -> Result:
    async with scenario("3 a report 100 with an impossible timestamp") as run:
        station = await run.fleet.add(station_address(2), "p30c", serial="17000004")
        for _ in range(2):
            station.plug_in(charging_car())
            await run.charge(station, 20)
            station.unplug()
        station.plug_in(charging_car())
        running = station.history[-1].session_id
        station.faults.report_fields = {100: {"started[s]": 99999999999999}}
        await run.start_gateway(setup={"stations": [station_row(station.host)]})
        await run.polled(station, 4)
        station.faults.report_fields = {}
        station.unplug()  # session 3 moves to report 101, where it reads right
        await session(run, station, 10)
        # Once the garbled field is gone, session `running` reads right and is expected.
        del running
        await run.settle_and_compare()
        if not run.rows("SELECT 1 FROM chargers_station WHERE is_online"):
            run.result.other_wrong.append("the station is not online")
        return run.result


async def quick_replug() -> Result:
    async with scenario("4 a quick re-plug between two polls") as run:
        station = await run.fleet.add(station_address(2), "p30c", serial="17000005")
        await run.start_gateway(setup={"stations": [station_row(station.host)]})
        station.plug_in(charging_car())
        await run.polled(station)
        await run.charge(station, 15)
        station.unplug()
        station.plug_in(charging_car())  # within the same instant: no poll between
        await run.charge(station, 15)
        # Compared while the second session runs (the plug never looked unplugged),
        # with its car full so that the energy stands still and must match exactly.
        station.tick()
        assert station.car is not None
        station.car.needed_kwh = station.car.charged_kwh
        await run.polled(station, 3)
        await run.settle_and_compare()
        return run.result


async def p20_downtime() -> Result:
    async with scenario("5 P20 sessions across gateway downtime") as run:
        station = await run.fleet.add(station_address(2), "p20", serial="17000006")
        await run.start_gateway(setup={"stations": [station_row(station.host)]})
        await session(run, station, 20)
        for kill in (True, False):
            station.plug_in(charging_car())  # B: seen, then ends while the gateway is down
            await run.polled(station)
            await run.charge(station, 10)
            await run.polled(station)
            await run.until(  # B's energy so far is written before the gateway goes
                "the running session's energy to be written",
                run.check(
                    "SELECT 1 FROM chargers_session WHERE ended_at IS NULL AND energy_kwh > 0"
                ),
            )
            await run.stop_gateway(kill=kill)
            await run.charge(station, 10)
            station.unplug()
            station.plug_in(charging_car())  # C: wholly unseen
            await run.charge(station, 15)
            station.unplug()
            station.plug_in(charging_car())  # D: began unseen, ends in view
            await run.charge(station, 5)
            await run.start_gateway()
            await run.polled(station)
            await run.charge(station, 10)
            station.unplug()
            await run.polled(station)
        await run.settle_and_compare(observed_only={station.serial})
        return run.result


async def reboot_mid_session() -> Result:
    async with scenario("6 a reboot mid-session") as run:
        station = await run.fleet.add(station_address(2), "p30c", serial="17000007")
        await run.start_gateway(setup={"stations": [station_row(station.host)]})
        station.plug_in(charging_car())
        await run.polled(station, 3)
        await run.charge(station, 8)
        station.reboot()  # the car stays: a new session begins at the boot
        await run.polled(station, 3)
        await run.charge(station, 10)
        station.unplug()
        await run.polled(station, 3)
        await run.settle_and_compare()
        return run.result


async def restart_within_a_poll() -> Result:
    async with scenario("6b a restart in the middle of a poll") as run:
        p30 = await run.fleet.add(station_address(2), "p30c", serial="17000013")
        p20 = await run.fleet.add(station_address(3), "p20", serial="17000014")
        reading_log = await run.fleet.add(station_address(4), "p30c", serial="17000015")
        stations = [p30, p20, reading_log]
        await run.start_gateway(setup={"stations": [station_row(s.host) for s in stations]})
        for station in stations:  # plugged in while watched: a P20's start is seen
            await run.polled(station)
            station.plug_in(charging_car())
        for station in stations:
            await run.polled(station, 3)
        await run.charge(p30, 8)
        # After report 2 of one poll, before its report 3 or its log read. The car
        # stays: a new session begins at the boot.
        for station in stations:
            station.faults.reboot_before = "report 100" if station is reading_log else "report 3"
        await run.until(
            "each station to restart",
            lambda: all(s.faults.reboot_before is None for s in stations),
        )
        for station in stations:
            await run.polled(station, 3)
        await run.charge(p30, 10)
        for station in stations:
            station.unplug()
        for station in stations:
            await run.polled(station, 3)
        await run.settle_and_compare(observed_only={p20.serial})
        return run.result


async def command_in_flight_at_kill() -> Result:
    async with scenario("7a a command in flight at kill -9") as run:
        station = await run.fleet.add(station_address(2), "p30c", serial="17000008")
        station.faults.lose_reply = {"curr"}  # keeps the gateway waiting for the reply
        setup = {
            "stations": [station_row(station.host)],
            "commands": [[station.host, "curr 10000"]],
        }
        await run.start_gateway(setup=setup)
        await run.until(
            "the station to receive the command", lambda: "curr 10000" in station.received
        )
        await run.stop_gateway(kill=True)
        station.faults.lose_reply = set()
        await run.start_gateway()
        await run.until(
            "the row to be resolved",
            run.check("SELECT 1 FROM chargers_command WHERE status NOT IN ('pending', 'sent')"),
        )
        await run.polled(station)
        await run.settle_and_compare()
        return run.result


async def lost_reply_not_idempotent() -> Result:
    async with scenario("7b reply lost for a non-idempotent command") as run:
        station = await run.fleet.add(station_address(2), "p30c", serial="17000009")
        station.faults.lose_reply = {"x2"}
        commands = [[station.host, "x2src 4"], [station.host, "x2 0"]]
        await run.start_gateway(
            setup={"stations": [station_row(station.host)], "commands": commands}
        )
        await run.until(
            "both rows to end",
            run.finished(2),
            40,
        )
        await run.settle_and_compare()
        row = run.rows("SELECT status FROM chargers_command WHERE wire = 'x2 0'")
        if row and row[0]["status"] != "verified":
            run.result.commands_stuck.append(f"`x2 0` ended {row[0]['status']!r}, not 'verified'")
        return run.result


async def unverifiable_commands() -> Result:
    async with scenario("7c/7d commands report 2 cannot show (P30, and P20 unlock)") as run:
        station = await run.fleet.add(station_address(2), "p30c", serial="17000010")
        p20 = await run.fleet.add(station_address(3), "p20", serial="17000011")
        station.plug_in(charging_car())
        tag = "04A1B2C3D4E5F600"
        wires = [f"start {tag} {'0' * 20}", "display 0 0 0 0 Hello", f"stop {tag}"]
        commands = [[station.host, wire] for wire in wires] + [[p20.host, "unlock"]]
        setup = {
            "stations": [station_row(station.host), station_row(p20.host)],
            "commands": commands,
        }
        await run.start_gateway(setup=setup)
        await run.until(
            "all rows to end",
            run.finished(4),
            40,
        )
        station.unplug()
        await run.polled(station)
        await run.settle_and_compare()
        for row in run.rows("SELECT wire, status FROM chargers_command"):
            if row["status"] != "acknowledged":
                run.result.commands_stuck.append(
                    f"`{row['wire']}` ended {row['status']!r}, not 'acknowledged'"
                )
        return run.result


async def two_gateways() -> Result:
    async with scenario("7e two gateways over one database") as run:
        station = await run.fleet.add(station_address(2), "p30c", serial="17000012")
        wires = [f"curr {6000 + 1000 * n}" for n in range(6)]
        setup = {
            "stations": [station_row(station.host)],
            "commands": [[station.host, w] for w in wires],
        }
        await run.start_gateway(setup=setup)
        await run.start_gateway(bind=station_address(254))
        await run.until(
            "all rows to end",
            run.finished(6),
            40,
        )
        await run.settle_and_compare()
        return run.result


async def kill_mid_batch() -> Result:
    async with scenario("13 kill -9 mid-batch write") as run:
        stations = [
            await run.fleet.add(station_address(n), "p30c", serial=f"1700002{n}")
            for n in range(2, 6)
        ]
        await run.start_gateway(setup={"stations": [station_row(s.host) for s in stations]})
        for round_ in range(3):
            for station in stations:
                station.plug_in(charging_car())
            await run.polled(stations[-1], 2 + round_)
            await run.charge(stations[0], 10)
            for station in stations[::2]:
                station.unplug()
            await run.polled(stations[0], 1)
            await asyncio.sleep(0.3 * round_ + 0.5)  # kill at a different point of the flush cycle
            await run.stop_gateway(kill=True)
            for station in stations[1::2]:
                station.unplug()
            await run.start_gateway()
        for station in stations:
            await run.polled(station, 3)
        await run.settle_and_compare()
        return run.result


async def loss_with_reboots() -> Result:
    async with scenario("14 30 % loss with reboots") as run:
        stations = [
            await run.fleet.add(
                station_address(n), "p30c", serial=f"1700003{n}", faults=Faults(loss=0.3), seed=n
            )
            for n in range(2, 6)
        ]
        commands = [[s.host, f"curr {10000 + 1000 * i}"] for i, s in enumerate(stations)]
        await run.start_gateway(
            setup={"stations": [station_row(s.host) for s in stations], "commands": commands}
        )
        for station in stations:
            station.plug_in(charging_car())
        for station in stations:
            await run.polled(station, 3)
        await run.charge(stations[0], 10)
        for station in stations[:2]:
            station.reboot()
        for station in stations:
            await run.polled(station, 3)
        await run.charge(stations[0], 10)
        for station in stations:
            station.unplug()
        for station in stations:
            await run.polled(station, 4)
        await run.until(
            "all rows to end",
            run.finished(4),
            40,
        )
        await run.settle_and_compare(lossy=True)
        return run.result


# Whole programs: `serve` and the admin


def _clusters(data_dir: Path) -> list[int]:
    """Top-level django-q2 clusters started for `data_dir` (workers are their children)."""
    found: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with suppress(OSError):
            command = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if (
                b"qcluster" in command
                and f"KEBAWEB_DATA_DIR={data_dir}".encode() in environ
                and stat[0] != "Z"
            ):
                found[int(proc.name)] = int(stat[1])
    return [pid for pid, parent in found.items() if parent not in found]


async def _serve(
    run: Run, port: int, *options: str, tasks: str = "thread"
) -> asyncio.subprocess.Process:
    command = [
        sys.executable,
        str(MANAGE),
        "serve",
        "--port",
        str(port),
        "--udp-bind",
        GATEWAY_HOST,
        *options,
    ]
    log = (run.data_dir / f"serve-{port}.log").open("wb")
    child = await asyncio.create_subprocess_exec(
        *command,
        env=run.env() | {"KEBAWEB_TASKS": tasks},
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    log.close()
    await run.until(
        "serve to be ready",
        lambda: (
            "kebaweb is running at"
            in (run.data_dir / f"serve-{port}.log").read_text(errors="replace")
            or child.returncode is not None
        ),
        60,
    )
    return child


async def cluster_after_kill() -> Result:
    async with scenario("8 the task cluster after kill -9 of serve") as run:
        first = await _serve(run, free_port(), tasks="cluster")
        await run.until("a cluster to start", lambda: len(_clusters(run.data_dir)) >= 1, 60)
        first.kill()
        await first.wait()
        second = await _serve(run, free_port(), tasks="cluster")
        try:
            await run.until(
                "the orphaned cluster to end", lambda: len(_clusters(run.data_dir)) <= 1, 15
            )
            count = len(_clusters(run.data_dir))
            if count != 1:
                run.result.other_wrong.append(f"{count} task clusters run after the restart, not 1")
        finally:
            second.terminate()
            await second.wait()
            for pid in _clusters(run.data_dir):  # an orphan this scenario made
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return run.result


def _admin_session(base: str) -> urllib.request.OpenerDirector:
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    login = f"{base}/admin/login/"
    page = opener.open(login, timeout=30).read().decode()
    token = page.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    body = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token,
            "username": "admin",
            "password": "fault-pass-1",
            "next": "/admin/",
        }
    )
    opener.open(
        urllib.request.Request(login, body.encode(), headers={"Referer": login}), timeout=30
    )
    return opener


def _add_station(base: str, opener: urllib.request.OpenerDirector, host: str) -> int:
    url = f"{base}/admin/chargers/station/add/"
    page = opener.open(url, timeout=60).read().decode()
    token = page.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    body = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token, "name": host, "address": host, "_save": "Save"}
    )
    try:
        with opener.open(
            urllib.request.Request(url, body.encode(), headers={"Referer": url}), timeout=60
        ) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def concurrent_admin_adds() -> Result:
    async with scenario("9 8 concurrent station adds in the admin") as run:
        busy = await run.fleet.add(station_address(2), "p30c", serial="17000040")
        busy.plug_in(charging_car())
        hosts = [station_address(n) for n in range(10, 18)]
        for n, host in enumerate(hosts):
            # Slow answers: a probe that holds the write lock holds it this long.
            slow = Faults(delay_s=1.0)
            await run.fleet.add(host, "p30c", serial=f"1700005{n}", faults=slow)
        env = run.env() | {"DJANGO_SUPERUSER_PASSWORD": "fault-pass-1"}
        maker = await asyncio.create_subprocess_exec(
            sys.executable,
            str(MANAGE),
            "createsuperuser",
            "--noinput",
            "--username",
            "admin",
            "--email",
            "a@example.invalid",
            env=env,
        )
        await maker.wait()
        port = free_port()
        server = await _serve(run, port, "--no-tasks")
        try:
            base = f"http://127.0.0.1:{port}"
            opener = await asyncio.to_thread(_admin_session, base)
            # The busy station is added first, so the gateway writes while the others are added.
            await asyncio.to_thread(_add_station, base, opener, busy.host)
            await run.polled(busy)
            statuses = await asyncio.gather(
                *(asyncio.to_thread(_add_station, base, opener, h) for h in hosts)
            )
            bad = [s for s in statuses if s >= 400]
            if bad:
                run.result.other_wrong.append(f"HTTP {bad} for {len(bad)} of {len(hosts)} adds")
            stored = run.rows("SELECT count(*) AS n FROM chargers_station")[0]["n"]
            if stored != len(hosts) + 1:
                run.result.other_wrong.append(f"{stored} stations stored, {len(hosts) + 1} added")
        finally:
            server.terminate()
            await server.wait()
        if "database is locked" in run.log_text():
            run.result.other_wrong.append("'database is locked' in the log")
        return run.result


def covered_elsewhere(name: str, where: str) -> Callable[[], Awaitable[Result]]:
    async def reference() -> Result:
        return Result(name, reference=where)

    return reference


SCENARIOS: list[Callable[[], Awaitable[Result]]] = [
    forged_datagrams,
    swapped_addresses,
    impossible_timestamp,
    quick_replug,
    p20_downtime,
    reboot_mid_session,
    restart_within_a_poll,
    command_in_flight_at_kill,
    lost_reply_not_idempotent,
    unverifiable_commands,
    two_gateways,
    cluster_after_kill,
    concurrent_admin_adds,
    covered_elsewhere("10 start-up errors", "tests/test_startup.py"),
    covered_elsewhere("11 security", "tests/test_security.py"),
    covered_elsewhere("12 broadcast and isolation", "tests/test_isolation.py, test_serve.py"),
    kill_mid_batch,
    loss_with_reboots,
]


# The child: the real gateway on the scenario's clock


def _gateway_main(options: argparse.Namespace) -> None:
    os.environ["KEBAWEB_DATA_DIR"] = options.data_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kebaweb.settings")
    import django

    django.setup()
    from chargers.gateway import Gateway, GatewaySettings
    from chargers.kecontact.client import KebaClient
    from chargers.models import Command, Site, Station

    setup = json.loads(options.setup) if options.setup else {}
    for row in setup.get("stations", []):
        site = Site.objects.get_or_create(name=row["site"])[0] if row.get("site") else None
        Station.objects.create(
            name=row["name"], address=row["address"], site=site, poll_interval_s=POLL_INTERVAL_S
        )
    for address, wire in setup.get("commands", []):
        station = Station.objects.get(address=address)
        Command.objects.create(
            station=station, wire=wire, requested_by="fault scenario", expires_at=None
        )

    # The same clock as the fleet's: station times the gateway derives
    # (a boot moment from the uptime) must be comparable with the ledger.
    clock = Clock(options.speed)
    clock._origin, clock._wall_origin = options.origin, options.wall_origin
    settings = GatewaySettings(scan_interval_s=0.2, search_interval_s=0, heartbeat_s=60)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with KebaClient(options.bind, clock=clock, reply_timeout_s=0.3, retries=2) as client:
            print(f"gateway listening on {options.bind}:7090", flush=True)
            await Gateway(client, settings=settings, broadcast=options.broadcast).run(stop)

    asyncio.run(run())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["gateway"])
    parser.add_argument("data_dir")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--broadcast", required=True)
    parser.add_argument("--speed", type=float, required=True)
    parser.add_argument("--origin", type=float, required=True)
    parser.add_argument("--wall-origin", type=float, required=True)
    parser.add_argument("--setup", default="")
    _gateway_main(parser.parse_args())
