"""A database that cannot grow: SQLite's own "database or disk is full", made real by
letting the database file grow no more and filling what room is left.

What must hold: the gateway loses no session without trace (the time it could not
store counts as unwatched, as downtime does), says so in one line a minute rather
than a traceback per try, and pages answer 503 with what to do."""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from asgiref.sync import sync_to_async
from django.contrib.sessions.models import Session as DjangoSession
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone

from chargers.gateway.database import Failures
from chargers.kecontact.emulator import EmulatedStation, SessionRecord
from chargers.models import Command, Event, Reading, Session, Station
from tests.emulated import fleet_and_client, station_address, until_stored, wait_for
from tests.fault_scenarios import POLLED_ENERGY_KWH, POLLED_TIME_S, charging_car
from tests.gateways import running
from tests.people import PASSWORD, person

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.sqlite_only(reason="a size limit on one connection is SQLite's (max_page_count)"),
]

UNLIMITED_PAGES = 1073741823  # SQLite's default max_page_count
FILLER = "filler (not a station)"


def fill_the_disk() -> None:
    """From now on a write that needs room fails as on a full disk: the database
    may not grow, and the room left in each table's pages is taken by rows of a
    station that is not one (without an address, so nobody polls it)."""
    filler = Station.objects.create(name=FILLER, address=None)
    now = timezone.now()
    rows: list[Callable[[int], object]] = [
        lambda n: Session.objects.create(station=filler, started_at=now, ended_at=now),
        lambda n: Reading.objects.create(station=filler, at=now),
        lambda n: Event.objects.create(station=filler, kind="error", message=""),
        lambda n: Command.objects.create(station=filler, wire="ena 1", status="refused"),
        lambda n: DjangoSession.objects.create(
            session_key=f"{FILLER[:6]}{n:026d}", session_data="", expire_date=now
        ),
    ]
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA page_count")
        (pages,) = cursor.fetchone()
        cursor.execute(f"PRAGMA max_page_count = {pages}")
    for add in rows:
        try:
            for n in range(100_000):
                add(n)
        except OperationalError as exc:
            assert "database or disk is full" in str(exc)


def free_the_disk() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA max_page_count = {UNLIMITED_PAGES}")
    DjangoSession.objects.filter(session_key__startswith=FILLER[:6]).delete()
    Station.objects.filter(name=FILLER).delete()


@contextmanager
def disk_full() -> Iterator[None]:
    fill_the_disk()
    try:
        yield
    finally:
        free_the_disk()


# The gateway


async def polled(station: EmulatedStation, times: int) -> None:
    """Until the gateway read report 3 `times` more: it saw the present."""
    mark = station.received.count("report 3")
    await wait_for(lambda: station.received.count("report 3") >= mark + times, 30)


async def test_p20_sessions_across_a_full_disk_are_kept_as_unwatched_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with fleet_and_client(speed=10) as (fleet, client):
        emulated = await fleet.add(station_address(3), "p20")
        await sync_to_async(Station.objects.create)(
            name="Carport", address=station_address(3), poll_interval_s=5
        )
        async with running(client):
            await polled(emulated, 1)
            emulated.plug_in(charging_car())  # A, seen from its start
            # A's energy so far is stored, with the station's last contact.
            await until_stored(lambda: Station.objects.filter(session_energy_kwh__gt=0.01).exists())
            await sync_to_async(fill_the_disk)()
            caplog.clear()
            emulated.unplug()  # A ends and B begins while nothing can be stored
            await polled(emulated, 2)
            emulated.plug_in(charging_car())
            await polled(emulated, 5)  # longer than a poll may be late
            told = [r for r in caplog.records if r.levelno >= logging.WARNING]
            await sync_to_async(free_the_disk)()
            await until_stored(lambda: Session.objects.count() == 2)
            await until_stored(lambda: Session.objects.filter(ended_at=None).count() == 1)
    rows = await sync_to_async(lambda: list(Session.objects.order_by("started_at")))()
    for record, row in zip(emulated.history[-2:], rows, strict=True):
        shown = {
            k: getattr(row, k)
            for k in ("started_at", "ended_at", "energy_kwh", "incomplete_reason")
        }
        assert watched(record, row) or marked_unwatched(record, row), (record, shown)
    first_end, second_start = rows[0].ended_at, rows[1].started_at
    assert first_end is not None and second_start is not None and second_start >= first_end
    # One line while it failed, with what to do, and no traceback.
    assert len(told) == 1, [r.getMessage() for r in told]
    assert "free disk space" in told[0].getMessage() and told[0].exc_info is None


# A session without a log is seen to begin and end at a poll: as far from the truth
# as the fault scenarios allow (a poll may be late on a loaded machine).
POLL_S = POLLED_TIME_S
ENERGY_KWH = POLLED_ENERGY_KWH


def _times(row: Session) -> tuple[float, float | None]:
    assert row.started_at is not None
    return row.started_at.timestamp(), row.ended_at.timestamp() if row.ended_at else None


def watched(record: SessionRecord, row: Session) -> bool:
    """Stored as it happened, to within a poll."""
    started, ended = _times(row)
    return (
        not row.incomplete_reason
        and abs(started - record.started_wall) <= POLL_S
        and (ended is None) == (record.ended_wall is None)
        and (ended is None or abs(ended - (record.ended_wall or 0)) <= POLL_S)
        and (ended is None or abs(row.energy_kwh - record.energy / 10000) <= ENERGY_KWH)
    )


def marked_unwatched(record: SessionRecord, row: Session) -> bool:
    """Said to span time nobody stored, and claiming nothing that did not happen."""
    started, ended = _times(row)
    return (
        "did not watch" in row.incomplete_reason
        and started >= record.started_wall - POLL_S
        and (ended is None) == (record.ended_wall is None)
        and (ended is None or ended <= (record.ended_wall or 0) + POLL_S)
        and row.energy_kwh <= record.energy / 10000 + ENERGY_KWH
    )


def test_failures_are_told_once_a_minute_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    failures = Failures(clock=lambda: now[0])
    full = OperationalError("database or disk is full")
    for _ in range(500):  # a write that fits in a page's free room still works now and then
        failures.failed("storing readings", full)
        failures.worked()
        now[0] += 0.1
    (told,) = caplog.records  # the first at once, then nothing for a minute
    assert "free disk space" in told.getMessage() and told.exc_info is None
    now[0] = 61.0
    failures.failed("storing readings", full)
    assert "500 since the last report" in caplog.records[-1].getMessage()
    now[0] += Failures.QUIET_S
    failures.worked()
    assert caplog.records[-1].getMessage() == "database steps work again"
    failures.failed("storing readings", OperationalError("database is locked"))
    assert len(caplog.records) == 4  # after "work again", the next failure is news
    assert "reachable and writable" in caplog.records[-1].getMessage()


# Pages


def test_a_control_posted_while_the_disk_is_full_answers_503_and_says_what_to_do() -> None:
    station = Station.objects.create(
        name="Garage",
        address="192.0.2.10",
        model_label="P30 c-series",
        capabilities=["meter", "session log", "current timer", "energy limit", "display"],
        is_online=True,
        live_status={"hardware_current_a": 16.0, "state": 2, "plug": 7},
    )
    browser = Client(raise_request_exception=False)
    browser.force_login(person("member"))
    with disk_full():
        response = browser.post(
            f"/stations/{station.pk}/control/current/",
            {f"s{station.pk}-current-amps": "10"},
            headers={"HX-Request": "true"},
        )
        page = browser.get("/").content.decode()  # reading still works
    assert response.status_code == 503
    assert "disk is full" in response.content.decode()
    assert "Free disk space" in response.content.decode()
    assert not Command.objects.exists()
    assert "Garage" in page


def test_a_login_while_the_disk_is_full_answers_503_not_500() -> None:
    person("viewer")
    browser = Client(raise_request_exception=False)
    with disk_full():
        response = browser.post("/login/", {"username": "viewer", "password": PASSWORD})
    assert response.status_code == 503
    assert "disk is full" in response.content.decode()
