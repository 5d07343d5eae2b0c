"""Load of the real gateway: poll interval, CPU time, database growth and command latency.

The gateway runs in this process and polls emulated P30 c-series stations, each
charging a car, every 5 s into a fresh SQLite database in a temporary folder.
The stations run at real speed in a separate process on 127.1.0.2 and up, so
their CPU time is not counted as the gateway's. The fleet notes when each
`report 2` arrives (the kernel's timestamp), which gives the poll interval the
stations really see.

    .venv/bin/python bench/gateway_load.py [--stations 200] [--minutes 2] [--commands 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import itertools
import multiprocessing
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from django_setup import set_up_django  # beside this file

from chargers.kecontact.emulator import Car, Fleet

if TYPE_CHECKING:
    from chargers.gateway import Gateway

GATEWAY_HOST = "127.1.0.1"  # the tests use 127.0.0.x
FIRST_STATION = ipaddress.IPv4Address("127.1.0.2")
POLL_INTERVAL_S = 5
COMMAND_TIMEOUT_S = 30.0
SECONDS_PER_DAY = 24 * 3600
CURRENTS_MA = (16000, 12000)  # alternated per station, so each command changes something


def station_hosts(count: int) -> list[str]:
    return [str(FIRST_STATION + n) for n in range(count)]


# The fleet (a separate process: its CPU time must not count as the gateway's)


def serve_fleet(hosts: list[str], ready: ProcessEvent, stop: ProcessEvent, out: Connection) -> None:
    arrivals: dict[str, list[float]] = {host: [] for host in hosts}

    def noting_polls(station: Any, host: str) -> None:
        handle = station.handle

        def handle_noting(data: bytes, addr: tuple[str, int], arrived_real: float) -> None:
            if data.strip() == b"report 2":
                arrivals[host].append(arrived_real)
            handle(data, addr, arrived_real)

        station.handle = handle_noting

    async def serve() -> None:
        # No broadcast listener: discovery by anyone else must not break these stations' pacing.
        async with Fleet() as fleet:  # Clock speed 1: the protocol's real timing
            for host in hosts:
                station = await fleet.add(host, "p30c")
                noting_polls(station, host)
                station.plug_in(Car())
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.2)
            out.send(sum(s.pacing_violations for s in fleet.stations.values()))
            out.send(arrivals)

    asyncio.run(serve())


class FleetProcess:
    def __init__(self, hosts: list[str]) -> None:
        # spawn, not fork: the parent runs Django and asgiref's threads.
        context = multiprocessing.get_context("spawn")
        self.ready, self.stop_event = context.Event(), context.Event()
        self.results, sender = context.Pipe(duplex=False)
        self.process = context.Process(
            target=serve_fleet, args=(hosts, self.ready, self.stop_event, sender), daemon=True
        )

    def start(self, timeout_s: float) -> None:
        self.process.start()
        if not self.ready.wait(timeout_s):
            self.stop()
            raise SystemExit("the emulated fleet did not start")

    def stop(self) -> tuple[int | None, dict[str, list[float]]]:
        """Stop the fleet; returns how many requests broke KEBA's pacing, if it said,
        and when each station received report 2 (wall-clock seconds)."""
        self.stop_event.set()
        violations = self.results.recv() if self.results.poll(15) else None
        arrivals = self.results.recv() if self.results.poll(15) else {}
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        return violations, arrivals


# Database steps (synchronous; run through `db`, on the gateway's own DB thread)


def db(function: Any) -> Any:
    from asgiref.sync import sync_to_async

    return sync_to_async(function, thread_sensitive=True)


def set_up_database(data_dir: Path) -> Path:
    """A fresh SQLite database in `data_dir`; returns the database file."""
    set_up_django(data_dir)
    from django.conf import settings

    return Path(settings.DATABASES["default"]["NAME"])


def add_stations(hosts: list[str]) -> list[int]:
    from chargers.models import Station

    stations = [
        Station.objects.create(name=f"bench {host}", address=host, poll_interval_s=POLL_INTERVAL_S)
        for host in hosts
    ]
    return [station.pk for station in stations]


def count_polled(station_ids: list[int]) -> int:
    from chargers.models import Station

    polled = Station.objects.filter(pk__in=station_ids, is_online=True, readings__isnull=False)
    return polled.distinct().count()


@dataclass(frozen=True)
class Snapshot:
    rows: dict[str, int]
    size_bytes: int


def snapshot(database: Path) -> Snapshot:
    """Row counts and file size, with the WAL folded into the database file."""
    from django.db import connection

    from chargers.models import Event, Reading, Session

    with connection.cursor() as cursor:
        for _ in range(50):
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            busy, _, _ = cursor.fetchone()
            if not busy:
                break
            time.sleep(0.05)
    rows = {
        "readings": Reading.objects.count(),
        "sessions": Session.objects.count(),
        "events": Event.objects.count(),
    }
    wal = database.with_name(database.name + "-wal")
    size = sum(path.stat().st_size for path in (database, wal) if path.exists())
    return Snapshot(rows, size)


def queue_command(station_id: int, wire: str) -> int:
    from chargers import services
    from chargers.models import Station

    station = Station.objects.get(pk=station_id)
    return services.queue_command(station, wire, requested_by="bench").pk


def command_outcome(command_id: int) -> tuple[str, float | None]:
    """The command's status and, once final, seconds from its row to its verdict."""
    from chargers.models import Command

    row = Command.objects.get(pk=command_id)
    if row.status not in Command.FINAL or row.finished_at is None:
        return row.status, None
    return row.status, (row.finished_at - row.created_at).total_seconds()


class QueryCounter:
    """Counts the statements the gateway's database thread runs (a connection wrapper)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


def count_queries(counter: QueryCounter) -> None:
    from django.db import connection

    connection.execute_wrappers.append(counter)


def close_connections() -> None:
    from django.db import connections

    connections.close_all()


# Measurements


async def wait_until_polled(station_ids: list[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (polled := await db(count_polled)(station_ids)) < len(station_ids):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {polled} of {len(station_ids)} stations were polled")
        await asyncio.sleep(1.0)


@dataclass
class Latencies:
    seconds: list[float] = field(default_factory=list)
    not_verified: list[str] = field(default_factory=list)


async def command_latencies(station_ids: list[int], count: int, rng: random.Random) -> Latencies:
    """Queue commands one after another, a few seconds apart, as a user would."""
    result = Latencies()
    last_ma: dict[int, int] = {}
    for _ in range(count):
        # Random gaps land the commands at every point of the 5 s poll cycle.
        await asyncio.sleep(rng.uniform(2.0, 4.0))
        station_id = rng.choice(station_ids)
        ma = CURRENTS_MA[1] if last_ma.get(station_id) == CURRENTS_MA[0] else CURRENTS_MA[0]
        last_ma[station_id] = ma
        command_id = await db(queue_command)(station_id, f"currtime {ma} 0")
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while True:
            status, seconds = await db(command_outcome)(command_id)
            if seconds is not None or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        if status == "verified" and seconds is not None:
            result.seconds.append(seconds)
        else:
            result.not_verified.append(status)
    return result


@dataclass
class Window:
    started_wall: float  # time.time(), to compare with the fleet's arrival stamps
    ended_wall: float
    seconds: float
    cpu_s_per_minute: float
    cpu_s_by_minute: list[float]
    before: Snapshot
    after: Snapshot
    datagrams_sent: int
    retries: int
    timeouts: int
    queries: int


async def measure_window(gateway: Gateway, database: Path, minutes: float) -> Window:
    stats = gateway.client.stats
    before = await db(snapshot)(database)
    counter = QueryCounter()
    await db(count_queries)(counter)  # the thread every `db` call of the gateway runs on
    sent, retries, timeouts = stats.sent, stats.retries, stats.timeouts
    started_wall = time.time()
    started, cpu = time.perf_counter(), time.process_time()
    by_minute = []
    left_s = minutes * 60
    while left_s > 0:
        chunk_s = min(60.0, left_s)
        chunk_cpu, chunk_start = time.process_time(), time.perf_counter()
        await asyncio.sleep(chunk_s)
        elapsed = time.perf_counter() - chunk_start
        by_minute.append((time.process_time() - chunk_cpu) / elapsed * 60)
        left_s -= chunk_s
    cpu_s, seconds = time.process_time() - cpu, time.perf_counter() - started
    queries = counter.count  # before the snapshot's own
    after = await db(snapshot)(database)
    return Window(
        started_wall=started_wall,
        ended_wall=time.time(),
        seconds=seconds,
        cpu_s_per_minute=cpu_s / seconds * 60,
        cpu_s_by_minute=by_minute,
        before=before,
        after=after,
        datagrams_sent=stats.sent - sent,
        retries=stats.retries - retries,
        timeouts=stats.timeouts - timeouts,
        queries=queries,
    )


@dataclass
class Results:
    stations: int
    window: Window
    one_station: Latencies
    all_stations: Latencies
    heartbeat_s: float
    pacing_violations: int | None = None
    intervals: list[float] = field(default_factory=list)  # between report 2s, in the window


def poll_intervals(arrivals: dict[str, list[float]], window: Window) -> list[float]:
    """Seconds between consecutive report 2s of each station inside the window."""
    gaps = []
    for times in arrivals.values():
        inside = [t for t in times if window.started_wall <= t <= window.ended_wall]
        gaps += [later - earlier for earlier, later in itertools.pairwise(inside)]
    return gaps


def interval_text(gaps: list[float]) -> str:
    if not gaps:
        return "unknown (no report 2 seen in the window)"
    mean = statistics.fmean(gaps)
    p95 = statistics.quantiles(gaps, n=20, method="inclusive")[18] if len(gaps) > 1 else gaps[0]
    drift = mean / POLL_INTERVAL_S - 1
    return (
        f"mean {mean:.3f} s ({drift:+.1%} against {POLL_INTERVAL_S} s), median"
        f" {statistics.median(gaps):.3f} s, p95 {p95:.3f} s, max {max(gaps):.3f} s"
        f" ({len(gaps)} intervals)"
    )


async def run_benchmark(hosts: list[str], database: Path, minutes: float, commands: int) -> Results:
    from chargers import live
    from chargers.gateway import Gateway
    from chargers.kecontact.client import KebaClient

    rng = random.Random(7)
    stop = asyncio.Event()
    async with KebaClient(GATEWAY_HOST) as client:
        gateway = Gateway(client)
        running = asyncio.create_task(gateway.run(stop))
        try:
            first = await db(add_stations)(hosts[:1])
            await wait_until_polled(first, 60)
            one_station = await command_latencies(first, commands, rng)

            others = await db(add_stations)(hosts[1:])
            if others:
                await live.wake_gateway(others[0])  # as the admin does after adding one
            station_ids = first + others
            await wait_until_polled(station_ids, 60 + 0.5 * len(station_ids))
            # Let every station pass its first polls (session log import) first.
            await asyncio.sleep(3 * POLL_INTERVAL_S)
            window = await measure_window(gateway, database, minutes)
            all_stations = await command_latencies(station_ids, commands, rng)
        finally:
            stop.set()
            await running
            await db(close_connections)()
    return Results(len(hosts), window, one_station, all_stations, gateway.settings.heartbeat_s)


# Report


def per_station_day(added: float, stations: int, seconds: float) -> float:
    return added / stations / seconds * SECONDS_PER_DAY


def latency_text(latencies: Latencies) -> str:
    times = sorted(latencies.seconds)
    if not times:
        return f"none verified ({', '.join(latencies.not_verified)})"
    p95 = statistics.quantiles(times, n=20, method="inclusive")[18] if len(times) > 1 else times[0]
    text = (
        f"p50 {statistics.median(times):.3f} s, p95 {p95:.3f} s, max {times[-1]:.3f} s"
        f" ({len(times)} verified"
    )
    if latencies.not_verified:
        text += f"; not verified: {', '.join(latencies.not_verified)}"
    return text + ")"


def print_report(results: Results, command: str) -> None:
    window, n = results.window, results.stations
    before, after = window.before, window.after
    rows = {table: after.rows[table] - before.rows[table] for table in after.rows}
    cpu = window.cpu_s_per_minute
    day_rows = {table: per_station_day(added, n, window.seconds) for table, added in rows.items()}
    day_bytes = per_station_day(after.size_bytes - before.size_bytes, n, window.seconds)
    sent_per_minute = window.datagrams_sent / window.seconds * 60
    table = [
        ("stations (P30 c, car charging)", f"{n}, polled every {POLL_INTERVAL_S} s"),
        ("measured window", f"{window.seconds / 60:.2f} min"),
        (
            "gateway CPU time per minute",
            f"{cpu:.2f} s ({cpu / 60:.1%} of one core);"
            f" minute by minute: {' '.join(f'{m:.2f}' for m in window.cpu_s_by_minute)}",
        ),
        ("real poll interval (report 2 at the station)", interval_text(results.intervals)),
        (
            "gateway CPU per station per minute",
            f"{cpu / n * 1000:.2f} ms ({cpu / n / (60 / POLL_INTERVAL_S) * 1e6:.0f} us per poll)",
        ),
        (
            "database statements per minute",
            f"{window.queries / window.seconds * 60:.0f}"
            f" ({window.queries / window.seconds * 60 / n:.2f} per station)",
        ),
        (
            "requests sent per minute",
            f"{sent_per_minute:.0f} ({window.retries} retries, {window.timeouts} timeouts)",
        ),
        (
            "rows added per station-day",
            ", ".join(f"{table} {value:.1f}" for table, value in day_rows.items())
            + f" (in the window: {', '.join(f'{t} {v}' for t, v in rows.items())})",
        ),
        (
            "bytes added per station-day",
            f"{day_bytes / 1024:.1f} KiB (database file"
            f" {before.size_bytes / 1024:.0f} -> {after.size_bytes / 1024:.0f} KiB)",
        ),
        ("command -> verified, 1 station", latency_text(results.one_station)),
        (f"command -> verified, {n} stations", latency_text(results.all_stations)),
        (
            "pacing violations at the fleet",
            "unknown" if results.pacing_violations is None else str(results.pacing_violations),
        ),
    ]
    width = max(len(name) for name, _ in table)
    print(f"$ {command}")
    for name, value in table:
        print(f"{name:<{width}}  {value}")
    if window.seconds < results.heartbeat_s + POLL_INTERVAL_S:
        # A steady charge changes no significant field, so readings come from the heartbeat.
        print(
            f"note: the window is shorter than the {results.heartbeat_s:.0f} s reading heartbeat;"
            " run with --minutes 10 or more for steady-state database growth"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the CPU window")
    parser.add_argument("--commands", type=int, default=20, help="commands per latency case")
    args = parser.parse_args()
    if not 1 <= args.stations <= 2000:
        parser.error("--stations: choose 1 to 2000")
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    hosts = station_hosts(args.stations)
    fleet = FleetProcess(hosts)
    fleet.start(timeout_s=60)
    try:
        with tempfile.TemporaryDirectory(prefix="kebaweb-bench-") as data_dir:
            database = set_up_database(Path(data_dir))
            results = asyncio.run(run_benchmark(hosts, database, args.minutes, args.commands))
    finally:
        violations, arrivals = fleet.stop()
    results.pacing_violations = violations
    results.intervals = poll_intervals(arrivals, results.window)
    print_report(results, command)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
