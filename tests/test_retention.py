"""Thinning old readings: what stays, what goes, and the daily schedule."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django_q.models import Schedule
from django_q.tasks import async_task, result

from chargers.gateway.enforcement import write_commands
from chargers.kecontact.codec import Report2
from chargers.models import Command, Reading, RetentionProgress, Station
from chargers.retention import forget_keep_alives, thin_readings
from chargers.rules.desired import DesiredState
from chargers.rules.reconcile import Abilities, Action, Aspect, FallbackSpec, keep_alive
from tests.emulated import station_address

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
STEP = timedelta(seconds=5)
HOUR = timedelta(hours=1)
READY, CHARGING, INTERRUPTED = 2, 3, 5

Status = tuple[int, int]  # state, plug


def make_station(number: int) -> Station:
    return Station.objects.create(name=f"Garage {number}", address=station_address(number + 1))


def add_hour(station: Station, start: datetime, status: Callable[[datetime], Status]) -> None:
    """One hour of readings every 5 s, as a station polled that often would leave."""
    readings = []
    for n in range(HOUR // STEP):
        at = start + n * STEP
        state, plug = status(at)
        readings.append(Reading(station=station, at=at, state=state, plug=plug, power_w=11000))
    Reading.objects.bulk_create(readings)


def steady(at: datetime) -> Status:
    return CHARGING, 7


def hour_at(days_ago: int) -> datetime:
    return (NOW - timedelta(days=days_ago)).replace(hour=10)


def kept(station: Station, start: datetime) -> list[datetime]:
    readings = station.readings.filter(at__gte=start, at__lt=start + HOUR)
    return list(readings.order_by("at").values_list("at", flat=True))


def every(start: datetime, step: timedelta) -> list[datetime]:
    """The last reading of each bucket of `step` in the hour from `start`."""
    return [start + step * (n + 1) - STEP for n in range(HOUR // step)]


def first_and_every(start: datetime, step: timedelta) -> list[datetime]:
    # A station's very first reading stays: nothing was kept before it.
    return [start, *every(start, step)]


def test_it_keeps_todays_readings_as_stored() -> None:
    station = make_station(1)
    add_hour(station, hour_at(0), steady)

    thin_readings(NOW)

    assert len(kept(station, hour_at(0))) == 720


def test_it_thins_only_what_is_older_than_two_days() -> None:
    now = NOW + timedelta(minutes=3)  # not at the start of a slice
    station = make_station(1)
    start = now - timedelta(days=2, minutes=30)
    add_hour(station, start, steady)

    thin_readings(now)

    older = every(start, timedelta(minutes=1))[:30]
    younger = [now - timedelta(days=2) + n * STEP for n in range(360)]
    assert kept(station, start) == [start, *older, *younger]


def test_it_keeps_one_reading_per_minute_after_two_days() -> None:
    station = make_station(1)
    add_hour(station, hour_at(5), steady)

    deleted = thin_readings(NOW)

    assert kept(station, hour_at(5)) == first_and_every(hour_at(5), timedelta(minutes=1))
    assert deleted == 720 - 61


def test_it_keeps_one_reading_per_quarter_hour_after_thirty_days() -> None:
    station = make_station(1)
    add_hour(station, hour_at(35), steady)

    thin_readings(NOW)

    assert kept(station, hour_at(35)) == first_and_every(hour_at(35), timedelta(minutes=15))


def test_it_keeps_every_change_of_state_or_plug() -> None:
    start_charging = hour_at(5) + timedelta(minutes=20, seconds=10)
    blip = hour_at(5) + timedelta(minutes=40, seconds=20)
    unplug = hour_at(5) + timedelta(minutes=50, seconds=30)

    def session(at: datetime) -> Status:
        if at >= unplug:
            return READY, 3
        if at == blip:
            return INTERRUPTED, 7
        return (CHARGING if at >= start_charging else READY), 7

    station = make_station(1)
    add_hour(station, hour_at(5), session)

    thin_readings(NOW)

    changes = [start_charging, blip, blip + STEP, unplug]
    expected = sorted(first_and_every(hour_at(5), timedelta(minutes=1)) + changes)
    assert kept(station, hour_at(5)) == expected


def test_it_keeps_changes_in_coarse_buckets_too() -> None:
    start_charging = hour_at(35) + timedelta(minutes=7, seconds=5)
    station = make_station(1)
    add_hour(station, hour_at(35), lambda at: (CHARGING if at >= start_charging else READY, 7))

    thin_readings(NOW)

    expected = sorted([*first_and_every(hour_at(35), timedelta(minutes=15)), start_charging])
    assert kept(station, hour_at(35)) == expected


def test_it_deletes_nothing_more_the_second_time() -> None:
    station = make_station(1)
    for days_ago in (0, 5, 35):
        add_hour(station, hour_at(days_ago), lambda at: (READY + at.minute // 25, 7))
    thin_readings(NOW)
    remaining = Reading.objects.count()

    assert thin_readings(NOW) == 0
    assert Reading.objects.count() == remaining


def test_it_leaves_other_stations_alone() -> None:
    first, second = make_station(1), make_station(2)
    add_hour(first, hour_at(5), steady)
    # Already one a minute, written between the first station's readings.
    Reading.objects.bulk_create(
        Reading(station=second, at=at - timedelta(seconds=32), state=READY, plug=1)
        for at in every(hour_at(5), timedelta(minutes=1))
    )
    before = list(second.readings.values_list("pk", flat=True))

    thin_readings(NOW)

    assert kept(first, hour_at(5)) == first_and_every(hour_at(5), timedelta(minutes=1))
    assert list(second.readings.values_list("pk", flat=True)) == before


def test_it_follows_changes_per_station() -> None:
    first, second = make_station(1), make_station(2)
    add_hour(first, hour_at(5), steady)
    # The second station switches state at the start of every minute.
    add_hour(second, hour_at(5), lambda at: (READY + at.minute % 2, 7))

    thin_readings(NOW)

    minutes = every(hour_at(5), timedelta(minutes=1))
    assert kept(first, hour_at(5)) == [hour_at(5), *minutes]
    switches = [hour_at(5) + timedelta(minutes=n) for n in range(60)]
    assert kept(second, hour_at(5)) == sorted(minutes + switches)


def test_it_has_a_daily_schedule_after_migrating() -> None:
    schedule = Schedule.objects.get(name="Thin old readings")

    assert schedule.func == "chargers.tasks.thin_readings_task"
    assert schedule.schedule_type == Schedule.DAILY
    assert schedule.next_run.astimezone(UTC).time().isoformat() == "03:30:00"


def test_it_reports_what_the_task_deleted() -> None:
    station = make_station(1)
    add_hour(station, hour_at(5), steady)

    with time_machine.travel(NOW, tick=False):
        task_id = async_task("chargers.tasks.thin_readings_task", sync=True)

    assert result(task_id) == "Thinned old readings: deleted 659; old keep-alive commands: 0."


def test_it_walks_only_what_became_old_since_the_last_run() -> None:
    station = make_station(1)
    add_hour(station, hour_at(5), steady)
    thin_readings(NOW)
    progress = RetentionProgress.objects.get()
    add_hour(station, hour_at(2) + timedelta(days=1), steady)  # old only a day later

    assert thin_readings(NOW) == 0  # not old yet
    later = NOW + timedelta(days=1)
    assert thin_readings(later) == 720 - 60
    assert kept(station, hour_at(2) + timedelta(days=1)) == every(
        hour_at(2) + timedelta(days=1), timedelta(minutes=1)
    )
    assert progress.minute_done_until is not None
    assert RetentionProgress.objects.get().minute_done_until == later - timedelta(days=2)


def test_it_walks_everything_again_when_the_settings_change(settings: Any) -> None:
    station = make_station(1)
    add_hour(station, hour_at(35), steady)
    thin_readings(NOW)
    settings.READINGS_COARSE_MINUTES = 30

    thin_readings(NOW)

    assert kept(station, hour_at(35)) == first_and_every(hour_at(35), timedelta(minutes=30))


# Keep-alive commands


def written(station: Station, at: datetime, action: Action) -> Command:
    with time_machine.travel(at, tick=False):
        write_commands(station.pk, 1.0, lambda recent: [action])
    return Command.objects.filter(station=station).latest("created_at")


def write_keep_alive(station: Station, at: datetime, status: str) -> Command:
    """The row the gateway writes to feed an armed failsafe, as it writes it."""
    status_seen = Report2(enabled_user=True, timer_current_a=16.0)
    abilities = Abilities(current_timer=True, energy_limit=True)
    action = keep_alive(status_seen, abilities, DesiredState(), FallbackSpec(60, 6))
    command = written(station, at, action)
    command.status = status
    command.save()
    return command


def test_keep_alives_that_went_through_go_after_two_days_and_others_stay() -> None:
    station = make_station(1)
    old = NOW - timedelta(days=3)
    fed = write_keep_alive(station, old, Command.Status.VERIFIED)
    acknowledged = write_keep_alive(station, old, Command.Status.ACKNOWLEDGED)
    refused = write_keep_alive(station, old, Command.Status.REFUSED)
    recent = write_keep_alive(station, NOW - timedelta(days=1), Command.Status.VERIFIED)
    limit = written(station, old, Action(Aspect.CURRENT, "currtime 10000 1", "rule “Day”"))
    user = Command.objects.create(
        station=station, wire="curr 10000", requested_by="admin", status="verified", created_at=old
    )

    deleted = forget_keep_alives(NOW)

    assert deleted == 2
    remaining = set(Command.objects.values_list("pk", flat=True))
    assert fed.pk not in remaining and acknowledged.pk not in remaining
    assert {refused.pk, recent.pk, limit.pk, user.pk} <= remaining
