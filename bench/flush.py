"""Time of one gateway flush (chargers/recorder.write) and its queries.

Each station has a running session and is observed once per flush, as when every
station's poll falls in the same second (the worst case); with a 5 s interval
a flush holds about a fifth of them. A fresh SQLite database in a temporary
folder, or the database of DATABASE_URL (its tables are created by migrate).

    .venv/bin/python bench/flush.py [--stations 200 1000 2000] [--flushes 20]
"""

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from django_setup import set_up_django  # beside this file

AT = datetime(2026, 1, 1, tzinfo=UTC)


def measure(count: int, flushes: int) -> tuple[float, float, int]:
    """Median wall and CPU milliseconds of a flush of `count` stations, and its queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chargers import recorder
    from chargers.kecontact.codec import ChargingState, PlugState, Report2, Report3
    from chargers.models import Session, Station

    Station.objects.all().delete()
    stations = Station.objects.bulk_create(
        Station(name=f"flush {n}", address=f"10.9.{n // 256}.{n % 256}") for n in range(count)
    )
    sessions = Session.objects.bulk_create(
        Session(station=s, keba_session_id=1, started_at=AT) for s in stations
    )
    keeper = recorder.Recorder(heartbeat_s=300)
    walls, cpus = [], []
    queries = 0
    for flush in range(flushes + 1):
        at = AT + timedelta(seconds=5 * flush)
        for n, (station, session) in enumerate(zip(stations, sessions, strict=True)):
            # Power moves by more than 5 % each time: every flush also stores readings.
            status = Report2(
                state=ChargingState.CHARGING, plug=PlugState.CAR_CONNECTED_LOCKED, uptime_s=flush
            )
            meter = Report3(power_w=1000.0 * (1 + (flush + n) % 11), session_energy_kwh=0.1 * flush)
            keeper.observe(station.pk, status, meter, at, session.pk)
        batch = keeper.take()
        if flush == 0:
            with CaptureQueriesContext(connection) as captured:
                recorder.write(batch)
            queries = len(captured)
            continue
        wall, cpu = time.perf_counter(), time.process_time()
        recorder.write(batch)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000, queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, nargs="+", default=[200, 1000, 2000])
    parser.add_argument("--flushes", type=int, default=20)
    args = parser.parse_args()
    print(f"$ {shlex.join([os.path.relpath(sys.executable), *sys.argv])}")
    with tempfile.TemporaryDirectory(prefix="kebaweb-flush-") as data_dir:
        set_up_django(Path(data_dir), keep_database_url=True)
        from django.db import connection

        print(f"database: {connection.vendor}")
        print(
            f"{'stations':>8}  {'wall ms':>8}  {'CPU ms':>8}  {'queries':>7}  (median of a flush)"
        )
        for count in args.stations:
            wall, cpu, queries = measure(count, args.flushes)
            print(f"{count:>8}  {wall:8.1f}  {cpu:8.1f}  {queries:>7}")


if __name__ == "__main__":
    main()
