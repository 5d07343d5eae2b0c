"""Server time and queries of every page, with a year of data.

Builds a throwaway SQLite database (bulk inserts: 200 stations, 100,000
sessions and a year of readings at the 300 s heartbeat, 21 million), then
requests every page the URL conf has: the app's pages and, for each model in
the admin, its list (also filtered by station and by the last 7 days), its
change page and its add page. It prints the median server time of 10 requests
and the number of queries of each, then adds stations up to 1,000 and
measures every page again.

    .venv/bin/python bench/pages.py [--readings 21000000] [--sessions 100000]
        [--stations 200] [--more-stations 1000] [--repeat 10] [--keep DIR]

Server time is the time Django takes from the request to the last byte of the
response, in this process (no network); queries are counted on one more request.
A download (a streamed response: the CSV exports of every session) is marked
"download" and timed to its first byte, which is what its user waits for before
the file starts to arrive; the whole file's time and memory are bench/export.py's.
Its queries and KiB are those of the whole file.

With --keep DIR the database is kept, and a second run reuses it: also after
growing, so `--keep DIR --stations 200 --more-stations 1000` measures 1,000
stations at once the second time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from django_setup import set_up_django  # beside this file

YEAR_S = 365 * 24 * 3600
HEARTBEAT_S = 300  # the gateway's reading heartbeat: 105,120 readings per station-year
READINGS_PER_STATEMENT = 1_000_000
SLOW_S = 5.0  # a page slower than this is timed 3 times, not --repeat times
END = datetime.now(UTC).replace(microsecond=0)  # the year of data ends now
START = END - timedelta(seconds=YEAR_S)


# Building the data


def now_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def insert_series(model: Any, count: int, columns: dict[str, str], offset: int = 0) -> None:
    """INSERT `count` rows computed in SQL from i = offset .. offset+count-1.

    `columns` maps column names to SQL expressions of i; every other column
    gets its field's default, so fields added later do not break the bench."""
    from django.db import connection

    values: list[Any] = []
    expressions = dict(columns)
    for field in model._meta.concrete_fields:
        if field.column in expressions or field.primary_key:
            continue
        expressions[field.column] = "%s"
        default = field.get_default() if field.has_default() or not field.null else None
        values.append(field.get_db_prep_save(default, connection))
    names = ", ".join(connection.ops.quote_name(c) for c in expressions)
    sql = (
        f"WITH RECURSIVE seq(i) AS (SELECT {offset} UNION ALL SELECT i + 1 FROM seq "
        f"WHERE i < {offset + count - 1}) "
        f"INSERT INTO {model._meta.db_table} ({names}) "
        f"SELECT {', '.join(expressions.values())} FROM seq"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)


def at_expression(seconds: str) -> str:
    """A datetime column as Django stores it in SQLite, `seconds` after START."""
    return (
        f"strftime('%%Y-%%m-%%d %%H:%%M:%%S', {int(START.timestamp())} + ({seconds}), 'unixepoch')"
    )


@dataclass
class Built:
    stations: int = 0
    first_station: int = 0
    sessions: int = 0
    readings: int = 0
    events: int = 0
    commands: int = 0
    seconds: float = 0.0


def add_stations(count: int, first_number: int) -> list[int]:
    from chargers.models import Site, Station

    site, _ = Site.objects.get_or_create(name="Garage")
    stations = [
        Station(
            name=f"Station {n:04d}",
            address=f"10.{n // 65536}.{n // 256 % 256}.{n % 256}",
            serial=f"{20000000 + n}",
            product="KC-P30-ESS400C2-E0R",
            model_label="P30 c-series",
            firmware="P30 v 3.10.57",
            capabilities=["session log", "currtime", "setenergy"],
            site=site if n % 2 else None,
            poll_interval_s=5,
            is_online=n % 10 != 0,
            last_contact=END,
            state=3 if n % 3 else 2,
            plug=7 if n % 3 else 5,
            power_w=11000.0 if n % 3 else 0.0,
            session_energy_kwh=12.5,
            total_energy_kwh=12345.6,
            offered_current_a=16.0,
            uptime_s=123456,
        )
        for n in range(first_number, first_number + count)
    ]
    Station.objects.bulk_create(stations, batch_size=500)
    return list(
        Station.objects.filter(serial__in=[s.serial for s in stations])
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def add_sessions(station_ids: list[int], per_station: int, tags: int, users: int) -> int:
    """`per_station` sessions on each station over the year; the last one of every
    other station still runs."""
    from django.contrib.auth import get_user_model

    from chargers.models import Session, Tag

    first_tag = Tag.objects.order_by("pk").values_list("pk", flat=True)[0]
    first_user = get_user_model().objects.order_by("pk").values_list("pk", flat=True)[0]
    stations = len(station_ids)
    assert station_ids == list(range(station_ids[0], station_ids[0] + stations))
    step = YEAR_S // per_station
    station = f"(i % {stations})"
    k = f"(i / {stations})"
    running = f"({k} = {per_station - 1} AND {station} % 2 = 0)"
    insert_series(
        Session,
        stations * per_station,
        {
            "station_id": f"{station_ids[0]} + {station}",
            "keba_session_id": f"{k} + 1",
            "started_at": at_expression(f"{k} * {step} + {station} * 37"),
            "ended_at": f"CASE WHEN {running} THEN NULL ELSE "
            + at_expression(f"{k} * {step} + {station} * 37 + 3600 + (i % 7) * 1800")
            + " END",
            "energy_kwh": "(i * 7 % 400) / 10.0",
            "start_counter_kwh": f"{k} * 20.0",
            "tag_id": f"CASE WHEN i % 4 = 0 THEN NULL ELSE {first_tag} + i % {tags} END",
            "owner_id": f"CASE WHEN i % 4 = 0 THEN NULL ELSE {first_user} + i % {users} END",
            "source": "CASE WHEN i % 5 = 0 THEN 'live' ELSE 'log' END",
        },
    )
    return stations * per_station


def add_readings(station_ids: list[int], count: int, report: Any) -> None:
    """Readings at the heartbeat, time first, so the index on time only grows at its end."""
    from chargers.models import Reading

    if not count:
        return
    stations = len(station_ids)
    station = f"(i % {stations})"
    done = 0
    started = time.perf_counter()
    while done < count:
        chunk = min(READINGS_PER_STATEMENT, count - done)
        insert_series(
            Reading,
            chunk,
            {
                "station_id": f"{station_ids[0]} + {station}",
                "at": at_expression(f"(i / {stations}) * {HEARTBEAT_S} + {station}"),
                "state": "CASE WHEN i % 3 = 0 THEN 2 ELSE 3 END",
                "plug": "CASE WHEN i % 3 = 0 THEN 5 ELSE 7 END",
                "power_w": "(i % 11) * 1000.0",
                "current_1_a": "16.0",
                "current_2_a": "16.0",
                "current_3_a": "16.0",
                "voltage_1_v": "230",
                "voltage_2_v": "231",
                "voltage_3_v": "229",
                "session_energy_kwh": "(i % 97) / 10.0",
                "total_energy_kwh": "10000.0 + i / 1000.0",
                "offered_current_a": "16.0",
            },
            offset=done,
        )
        done += chunk
        report(done, time.perf_counter() - started)


def add_events(station_ids: list[int], count: int) -> None:
    from chargers.models import Event

    stations = len(station_ids)
    kinds = "CASE i % 6 WHEN 0 THEN 'plug' WHEN 1 THEN 'state' WHEN 2 THEN 'state' "
    kinds += "WHEN 3 THEN 'plug' WHEN 4 THEN 'state' ELSE 'online' END"
    insert_series(
        Event,
        count,
        {
            "station_id": f"{station_ids[0]} + i % {stations}",
            "at": at_expression(f"i * {YEAR_S // count}"),
            "kind": kinds,
            "message": "'state: charging'",
        },
    )


def add_commands(station_ids: list[int], count: int) -> None:
    from chargers.models import Command

    stations = len(station_ids)
    insert_series(
        Command,
        count,
        {
            "station_id": f"{station_ids[0]} + i % {stations}",
            "wire": "'currtime 16000 0'",
            "requested_by": "'bench'",
            "status": "'verified'",
            "claimed_by": "'bench/127.0.0.1:7090'",
            "attempts": "1",
            "reply": "'TCH-OK :done'",
            "reason": "'report 2 shows 16 A'",
            "created_at": at_expression(f"i * {YEAR_S // count}"),
            "sent_at": at_expression(f"i * {YEAR_S // count} + 1"),
            "finished_at": at_expression(f"i * {YEAR_S // count} + 6"),
        },
    )


def add_people(users: int, tags: int) -> None:
    from django.contrib.auth import get_user_model

    from chargers.models import Tag, Tariff

    User = get_user_model()
    User.objects.create_superuser("bench", "bench@example.org", "bench-password")
    User.objects.bulk_create(
        User(username=f"driver{n:03d}", first_name=f"Driver {n}") for n in range(users)
    )
    Tag.objects.bulk_create(
        Tag(tag=f"{0x04A1B2C3D4000000 + n:016X}", label=f"card {n}") for n in range(tags)
    )
    Tariff.objects.create(price_per_kwh="0.30", valid_from=START.date())


def build(args: argparse.Namespace) -> Built:
    from django.core.management import call_command
    from django.db import connection, transaction

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        # A throwaway database: no crash safety while it is built.
        cursor.execute("PRAGMA journal_mode=OFF")
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.execute("PRAGMA cache_size=-1000000")
    built = Built()
    with transaction.atomic():
        add_people(users=50, tags=300)
        ids = add_stations(args.stations, 1)
        built.stations, built.first_station = len(ids), ids[0]
        built.sessions = add_sessions(ids, args.sessions // len(ids), tags=300, users=50)
        built.events = args.sessions * 4
        add_events(ids, built.events)
        built.commands = args.sessions // 5
        add_commands(ids, built.commands)

    def progress(done: int, seconds: float) -> None:
        print(f"  {done:>11,} readings in {seconds:6.1f} s ({done / seconds:,.0f}/s)", flush=True)

    add_readings(ids, args.readings, progress)  # one statement, one transaction per chunk
    built.readings = args.readings
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as a long-running database would have statistics
        cursor.execute("PRAGMA journal_mode=WAL")
    built.seconds = time.perf_counter() - started
    return built


def grow_to(built: Built, total: int) -> None:
    """Stations up to `total`, each with a running session and a few finished ones."""
    from django.db import transaction

    extra = total - built.stations
    if extra <= 0:
        return
    with transaction.atomic():
        ids = add_stations(extra, built.stations + 1)
        add_sessions(ids, 3, tags=300, users=50)
    built.stations = total


# The pages


@dataclass(frozen=True)
class Page:
    label: str
    url: str


def sample_ids() -> dict[str, int]:
    """One object of each kind, named as URL parameters name them."""
    from django.apps import apps

    found: dict[str, int] = {}
    for model in apps.get_app_config("chargers").get_models():
        # The middle of the table: neither the newest nor the oldest row.
        count = model._default_manager.count() if model.__name__ != "Reading" else 0
        row = (
            model._default_manager.order_by("pk").values_list("pk", flat=True)[count // 2 :][:1]
            if count
            else model._default_manager.order_by("-pk").values_list("pk", flat=True)[:1]
        )
        pk = next(iter(row), None)
        if pk is not None:
            found[str(model._meta.model_name)] = pk
    return found


def app_pages(samples: dict[str, int]) -> Iterator[Page]:
    """Every named page outside the admin, with sample objects for its parameters."""
    from django.urls import URLPattern, URLResolver, get_resolver, reverse

    def walk(patterns: list[Any], namespace: str, prefix: str) -> Iterator[tuple[str, list[str]]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.app_name == "admin":
                    continue
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                yield from walk(pattern.url_patterns, inner, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern) and pattern.name:
                params = list(getattr(pattern.pattern, "converters", {}) or {})
                params += list(pattern.pattern.regex.groupindex)
                yield namespace + pattern.name, sorted(set(params))

    for name, params in walk(get_resolver().url_patterns, "", "/"):
        kwargs: dict[str, Any] = {}
        for param in params:
            kind = next((k for k in samples if k in param), "station")
            kwargs[param] = samples.get(kind, 1)
        try:
            url = reverse(name, kwargs=kwargs)
        except Exception as exc:
            print(f"  (not measured: {name}: {exc})")
            continue
        yield Page(name, url)


def admin_pages(samples: dict[str, int], station_id: int) -> Iterator[Page]:
    """The admin's index and, for each model, its list, filtered lists, add and change page."""
    from django.contrib import admin
    from django.contrib.admin.filters import DateFieldListFilter
    from django.urls import NoReverseMatch, reverse

    yield Page("admin index", reverse("admin:index"))
    # Aware midnights, as the filter's own "Past 7 days" link has them (a date alone
    # makes Django warn about a naive datetime).
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    week = (today - timedelta(days=7), today + timedelta(days=1))
    for model, model_admin in sorted(admin.site._registry.items(), key=lambda i: i[0].__name__):
        info = f"{model._meta.app_label}_{model._meta.model_name}"
        name = f"admin {model._meta.app_label}.{model._meta.model_name}"
        changelist = reverse(f"admin:{info}_changelist")
        yield Page(f"{name} list", changelist)
        fields = {f.name for f in model._meta.concrete_fields}
        if "station" in fields:
            yield Page(f"{name} list, one station", f"{changelist}?station__id__exact={station_id}")
        for spec in model_admin.list_filter:
            if isinstance(spec, tuple) and issubclass(spec[1], DateFieldListFilter):
                yield Page(
                    f"{name} list, last 7 days",
                    f"{changelist}?"
                    + urlencode({f"{spec[0]}__gte": str(week[0]), f"{spec[0]}__lt": str(week[1])}),
                )
        if model_admin.date_hierarchy:
            year = datetime.now(UTC).year
            yield Page(
                f"{name} list, one year", f"{changelist}?{model_admin.date_hierarchy}__year={year}"
            )
        if model_admin.has_add_permission(_superuser_request()):
            yield Page(f"{name} add", reverse(f"admin:{info}_add"))
        pk = samples.get(str(model._meta.model_name))
        if pk is None:
            pk = model._default_manager.order_by("-pk").values_list("pk", flat=True).first()
        if pk is not None:
            with contextlib.suppress(NoReverseMatch):
                yield Page(f"{name} change", reverse(f"admin:{info}_change", args=[pk]))


def _superuser_request() -> Any:
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = get_user_model().objects.get(username="bench")
    return request


@dataclass
class Timing:
    status: int
    median_ms: float
    queries: int
    kib: float
    requests: int
    download: bool = False  # streamed: median_ms is the time to the first byte


def measure(client: Any, url: str, repeat: int) -> Timing:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def fetch() -> tuple[int, int, bool]:
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return response.status_code, len(body), response.streaming

    def first_byte() -> None:
        response = client.get(url)
        next(iter(response.streaming_content), b"")
        response.close()  # the rest of the file is not read

    started = time.perf_counter()
    status, size, download = fetch()  # warms caches, as a page that is used is warm
    first_s = time.perf_counter() - started
    times = []
    for _ in range(3 if first_s > SLOW_S and not download else repeat):
        started = time.perf_counter()
        if download:
            first_byte()
        else:
            fetch()
        times.append(time.perf_counter() - started)
    with CaptureQueriesContext(connection) as queries:
        fetch()
    median_ms = statistics.median(times) * 1000
    return Timing(status, median_ms, len(queries), size / 1024, len(times), download)


def measure_all(stations: int, repeat: int, station_id: int) -> list[tuple[Page, Timing]]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client(raise_request_exception=False)  # a failing page is a 500 in the table
    client.force_login(get_user_model().objects.get(username="bench"))
    samples = sample_ids()
    results = []
    for page in [*app_pages(samples), *admin_pages(samples, station_id)]:
        timing = measure(client, page.url, repeat)
        results.append((page, timing))
        label = f"{page.label} (download: time to first byte)" if timing.download else page.label
        print(
            f"  {stations:>5}  {timing.median_ms:9.1f}  {timing.queries:7}  {timing.status:6}"
            f"  {timing.kib:9.1f}  {label}  {page.url}",
            flush=True,
        )
    return results


def header() -> None:
    print(f"  {'stns':>5}  {'median ms':>9}  {'queries':>7}  {'status':>6}  {'KiB':>9}  page  url")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--more-stations", type=int, default=1000, help="0: skip that round")
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--readings", type=int, default=int(YEAR_S / HEARTBEAT_S) * 200)
    parser.add_argument("--repeat", type=int, default=10, help="timed requests per page")
    parser.add_argument(
        "--keep", type=Path, help="build the database in DIR and keep it; reuse it if built"
    )
    args = parser.parse_args()
    print(f"$ {shlex.join([os.path.relpath(sys.executable), *sys.argv])}")
    with tempfile.TemporaryDirectory(prefix="kebaweb-pages-") as scratch:
        data_dir = args.keep or Path(scratch)
        # The database is built or reused below: no migration yet.
        set_up_django(data_dir, migrate=False, ALLOWED_HOSTS="testserver")
        print(f"building {args.stations} stations, {args.sessions:,} sessions,", end=" ")
        print(f"{args.readings:,} readings")
        marker = data_dir / "bench-pages.json"
        if args.keep and marker.exists():
            built = Built(**json.loads(marker.read_text()))
            print(f"reusing the database in {data_dir} (built in {built.seconds:.0f} s)")
        else:
            built = build(args)
            marker.write_text(json.dumps(dataclasses.asdict(built)))
        print(
            f"built in {built.seconds:.0f} s: {built.stations} stations,"
            f" {built.sessions:,} sessions, {built.readings:,} readings,"
            f" {built.events:,} events, {built.commands:,} commands"
        )
        header()
        measure_all(built.stations, args.repeat, built.first_station)
        if args.more_stations > built.stations:
            marker.unlink(missing_ok=True)  # not the database it describes while it grows
            grow_to(built, args.more_stations)
            marker.write_text(json.dumps(dataclasses.asdict(built)))
            print(f"now {built.stations} stations (the new ones have 3 sessions each, no readings)")
            header()
            measure_all(built.stations, args.repeat, built.first_station)


if __name__ == "__main__":
    main()
