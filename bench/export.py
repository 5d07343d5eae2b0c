"""Time and peak memory of the CSV exports, with 100,000 sessions.

Builds a throwaway SQLite database (a temporary KEBAWEB_DATA_DIR) with 20 cards
of 10 owners, priced sessions on 5 stations, then prints:
- the streamed export (the view's iterator, consumed line by line, as a
  StreamingHttpResponse sends it) next to building the same CSV as one string;
- the per-owner-per-month totals query and its CSV.
Time is one run without tracing; peak memory is tracemalloc's peak of Python
allocations during a second run of the same step.

    .venv/bin/python bench/export.py [--sessions 100000]
"""

import argparse
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from django_setup import set_up_django  # beside this file


def build(count: int) -> None:
    from django.contrib.auth.models import User

    from chargers.models import Session, Station, Tag

    owners = [User.objects.create_user(f"owner{n}", first_name=f"Owner {n}") for n in range(10)]
    cards = [
        Tag.objects.create(tag=f"{n:02X}A1B2C3D4E5F607", label=f"=card {n}", owner=owners[n % 10])
        for n in range(20)
    ]
    stations = [
        Station.objects.create(name=f"Garage {n}", address=f"127.0.0.{n + 2}") for n in range(5)
    ]
    start = datetime(2023, 1, 1, tzinfo=UTC)
    batch: list[Session] = []
    for n in range(count):
        card = cards[n % 20]
        begun = start + timedelta(minutes=7 * n)
        batch.append(
            Session(
                station=stations[n % 5],
                keba_session_id=n // 5 + 1,
                started_at=begun,
                ended_at=begun + timedelta(hours=3),
                energy_kwh=5 + n % 17,
                start_counter_kwh=1000.0 + n,
                end_reason=1,
                tag=card,
                owner=card.owner,
                cost=Decimal("1.50") + n % 17,
                currency="EUR",
            )
        )
        if len(batch) == 5000:
            Session.objects.bulk_create(batch)  # bulk: no per-row pricing
            batch.clear()
    Session.objects.bulk_create(batch)


def measure(step: Callable[[], Any]) -> tuple[float, int, Any]:
    """Time without tracemalloc (it slows Python several times), then peak memory with it."""
    began = time.perf_counter()
    step()
    elapsed = time.perf_counter() - began
    tracemalloc.start()
    result = step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak, result


def drain(lines: Iterator[str]) -> int:
    """What the server does with a streamed response: encode each line and send it on."""
    size = 0
    for line in lines:
        size += len(line.encode("utf-8"))
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    args = parser.parse_args()
    # Nothing here may touch the user's own data, even by accident.
    data_dir = Path(tempfile.mkdtemp(prefix="kebaweb-bench-export-"))
    set_up_django(data_dir, KEBAWEB_TIME_ZONE="Europe/Vienna")
    from chargers import exports
    from chargers.models import Session

    print(f"building {args.sessions:,} sessions …", flush=True)
    build(args.sessions)
    fmt = exports.CsvFormat()
    sessions = Session.objects.all()

    rows: list[tuple[str, float, int, str]] = []
    seconds, peak, size = measure(lambda: drain(exports.export_sessions(sessions, fmt)))
    rows.append(("sessions CSV, streamed", seconds, peak, f"{size / 1e6:.1f} MB"))
    # As an HttpResponse would hold it: the whole text, encoded once.
    seconds, peak, body = measure(
        lambda: "".join(exports.export_sessions(sessions, fmt)).encode("utf-8")
    )
    rows.append(("sessions CSV, one string", seconds, peak, f"{len(body) / 1e6:.1f} MB"))
    del body
    seconds, peak, groups = measure(lambda: list(exports.monthly_totals(sessions)))
    rows.append(("totals per owner per month, query", seconds, peak, f"{len(groups)} rows"))
    seconds, peak, size = measure(lambda: drain(exports.export_totals(sessions, fmt)))
    rows.append(("totals per owner per month, CSV", seconds, peak, f"{size / 1e3:.1f} kB"))

    print(f"\n{args.sessions:,} sessions, SQLite")
    print(f"{'step':<36}{'time s':>9}{'peak MB':>10}  output")
    for name, seconds, peak, output in rows:
        print(f"{name:<36}{seconds:>9.2f}{peak / 1e6:>10.1f}  {output}")


if __name__ == "__main__":
    main()
