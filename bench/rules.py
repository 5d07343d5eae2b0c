"""Rules at scale: how fast a rule boundary reaches every station, and what reconciliation costs.

The real gateway runs in this process and polls emulated P30 c-series stations
(a separate process, real speed, each with a car plugged in) every 5 s into a
fresh SQLite database. Every station gets two rules of its own: an energy cap
per session (a `setenergy` each) and a current limit of 10 A whose window opens
a little later. The script prints:

- from the moment the window opens to each station's `currtime` verified in
  report 2 (p50, p95, max), with the wake-up the django-q2 boundary task sends;
- the gateway's CPU seconds per minute with the rules in force (reconciling after
  every poll) against plain polling of the same stations before any rule existed.

    .venv/bin/python bench/rules.py [--stations 200] [--minutes 1]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The fleet process and the database set-up of the gateway load benchmark, beside this file.
from gateway_load import (
    FleetProcess,
    add_stations,
    close_connections,
    db,
    set_up_database,
    wait_until_polled,
)

if TYPE_CHECKING:
    from chargers.gateway import Gateway

GATEWAY_HOST = "127.11.0.1"  # apart from the tests' and bench/gateway_load.py's ranges
FIRST_STATION = ipaddress.IPv4Address("127.11.0.2")
LEAD_S = 20.0  # the window opens this long after the rules are written
LIMIT_WIRE = "currtime 10000 1"


def hosts(count: int) -> list[str]:
    return [str(FIRST_STATION + n) for n in range(count)]


def add_rules(station_ids: list[int], opens_at: datetime) -> None:
    from chargers.models import Rule

    for pk in station_ids:
        cap = Rule.objects.create(name=f"cap {pk}", kind="session cap", energy_kwh=50)
        cap.stations.add(pk)
        day = Rule.objects.create(
            name=f"day {pk}",
            kind="current",
            starts_at=opens_at.time(),
            ends_at=(opens_at + timedelta(hours=2)).time(),
            current_a=10,
        )
        day.stations.add(pk)


def verified_at(wire: str) -> list[datetime]:
    from chargers.models import Command

    rows = Command.objects.filter(wire=wire, status="verified")
    return [at for at in rows.values_list("finished_at", flat=True) if at is not None]


def created_at(wire: str) -> list[datetime]:
    from chargers.models import Command

    return list(Command.objects.filter(wire=wire).values_list("created_at", flat=True))


def count(wire: str) -> int:
    from chargers.models import Command

    return Command.objects.filter(wire=wire).count()


async def cpu_per_minute(seconds: float) -> float:
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    return (time.process_time() - cpu) / (time.perf_counter() - started) * 60


async def until_count(wire: str, wanted: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while (found := len(await db(verified_at)(wire))) < wanted and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    return found


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    if not values:
        return "none"
    p95 = (
        statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]
    )
    return (
        f"p50 {statistics.median(values):.2f} s, p95 {p95:.2f} s, max {values[-1]:.2f} s "
        f"({len(values)} stations)"
    )


async def run(count_stations: int, minutes: float) -> None:
    from chargers import live
    from chargers.gateway import Gateway
    from chargers.kecontact.client import KebaClient

    stop = asyncio.Event()
    async with KebaClient(GATEWAY_HOST) as client:
        gateway: Gateway = Gateway(client)
        running = asyncio.create_task(gateway.run(stop))
        try:
            station_ids = await db(add_stations)(hosts(count_stations))
            await live.wake_gateway(station_ids[0])
            await wait_until_polled(station_ids, 60 + 0.5 * count_stations)
            await asyncio.sleep(15)  # past the first polls and log imports
            plain = await cpu_per_minute(minutes * 60)
            print(f"plain polling: {plain:.2f} CPU s per minute", flush=True)

            opens_at = (datetime.now(UTC) + timedelta(seconds=LEAD_S)).replace(microsecond=0)
            await db(add_rules)(station_ids, opens_at)
            await live.wake_gateway_rules()  # as saving a rule does
            caps = await until_count("setenergy 500000", count_stations, 120)
            print(f"session caps verified before the window: {caps} of {count_stations}")
            await asyncio.sleep(max(0.0, (opens_at - datetime.now(UTC)).total_seconds()) + 0.05)
            await live.wake_gateway_rules()  # what the boundary's django-q2 task sends
            verified = await until_count(LIMIT_WIRE, count_stations, 120)
            times = await db(verified_at)(LIMIT_WIRE)
            delays = [(at - opens_at).total_seconds() for at in times]
            early = await db(count)(LIMIT_WIRE) - len(times)
            print(f"window open to limit verified: {percentiles(delays)}")
            rows_at = [(at - opens_at).total_seconds() for at in await db(created_at)(LIMIT_WIRE)]
            print(f"  (to the command row written: {percentiles(rows_at)})")
            print(f"  verified {verified} of {count_stations}; not (yet) verified rows: {early}")

            await asyncio.sleep(10)  # the corrections are done; from now on polls find no gap
            gateway.enforcer.cpu_s = 0.0
            written = gateway.enforcer.commands_written
            with_rules = await cpu_per_minute(minutes * 60)
            deciding = gateway.enforcer.cpu_s / (minutes * 60) * 60
            extra = gateway.enforcer.commands_written - written
            print(
                f"with two rules per station: {with_rules:.2f} CPU s per minute "
                f"({with_rules - plain:+.2f} against plain polling; the desired-state and "
                f"reconciliation functions themselves {deciding:.3f} s; {extra} commands "
                "written in the window)"
            )
        finally:
            stop.set()
            await running
            await db(close_connections)()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=1.0, help="length of each CPU window")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kebaweb-bench-rules-") as tmp:
        set_up_database(Path(tmp))
        fleet = FleetProcess(hosts(args.stations))
        fleet.start(60)
        try:
            print(f"{args.stations} stations, polled every 5 s, each with a car plugged in")
            asyncio.run(run(args.stations, args.minutes))
        finally:
            violations, _ = fleet.stop()
            print(f"pacing violations seen by the stations: {violations}")


if __name__ == "__main__":
    main()
