"""Rules made true by the gateway, against emulated stations over real UDP, with the
protocol clock started at a chosen local time and running sped up."""

import asyncio
import zoneinfo
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, time, timedelta

import pytest
import time_machine
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from pytest_django.fixtures import Settings

from chargers.kecontact.client import KebaClient
from chargers.kecontact.commands import parse_command
from chargers.kecontact.emulator import Car, EmulatedStation, Fleet
from chargers.kecontact.timing import Clock, Timing
from chargers.models import Command, Fallback, Override, Rule, Session, Station, Tag
from tests.emulated import BROADCAST, GATEWAY_HOST, station_address, until_stored, wait_for
from tests.gateways import running

pytestmark = pytest.mark.django_db(transaction=True)

VIENNA = zoneinfo.ZoneInfo("Europe/Vienna")


@pytest.fixture(autouse=True)
def _household_time_zone(settings: Settings) -> None:
    settings.TIME_ZONE = "Europe/Vienna"


@asynccontextmanager
async def world(
    local_start: str, speed: float = 20.0
) -> AsyncIterator[tuple[Fleet, KebaClient, Clock]]:
    """Emulated stations and a client whose shared clock reads `local_start` (Vienna) now."""
    moment = datetime.fromisoformat(local_start).replace(tzinfo=VIENNA)
    with time_machine.travel(moment, tick=False):
        clock = Clock(speed)  # only its wall origin comes from the travelled time
    timing = Timing()
    client = KebaClient(GATEWAY_HOST, clock=clock, timing=timing, reply_timeout_s=0.5, retries=2)
    async with Fleet(clock, timing, broadcast=BROADCAST) as fleet, client:
        yield fleet, client, clock


def add_station(n: int, name: str = "Garage") -> Station:
    return Station.objects.create(name=name, address=station_address(n), poll_interval_s=5)


def add_rule(station: Station | None, **fields: object) -> Rule:
    fields.setdefault("name", "Day")
    rule = Rule.objects.create(**fields)
    if station is not None:
        rule.stations.add(station)
    return rule


def rows(wire: str) -> list[Command]:
    return list(Command.objects.filter(wire=wire).order_by("id"))


def verified(wire: str, count: int = 1) -> Callable[[], bool]:
    return lambda: Command.objects.filter(wire=wire, status="verified").count() >= count


async def charging_under_day_limit(fleet: Fleet) -> tuple[EmulatedStation, Station, Rule]:
    """A P30 with a car charging at up to 32 A, and the rule "07:00-22:00 at most 10 A"."""
    emulated = await fleet.add(station_address(2), "p30c")
    emulated.plug_in(Car(max_current_a=32))
    station = await sync_to_async(add_station)(2)
    rule = await sync_to_async(add_rule)(
        station, kind="current", starts_at=time(7), ends_at=time(22), current_a=10
    )
    return emulated, station, rule


def at_the_station(station: EmulatedStation, wire: str) -> None:
    """Someone changes a setting at the station itself (another app, the installer)."""
    station._execute(parse_command(wire))


def local(clock: Clock) -> datetime:
    return clock.now().astimezone(VIENNA)


async def test_a_window_starts_and_its_limit_reaches_the_station() -> None:
    async with world("2025-06-04T06:59:00") as (fleet, client, clock):
        emulated, _, rule = await charging_under_day_limit(fleet)
        async with running(client):
            await wait_for(lambda: emulated.offered_ma() == 10000, 30)
            reached_at = local(clock)
            await until_stored(verified("currtime 10000 1"))
    (row,) = await sync_to_async(rows)("currtime 10000 1")
    assert row.rule_id == rule.pk and "Day" in row.requested_by
    assert time(7) <= reached_at.time() < time(7, 1)  # within a minute of station time


async def test_a_replugged_car_inside_the_window_gets_the_limit_again() -> None:
    async with world("2025-06-04T12:00:00") as (fleet, client, _clock):
        emulated, _, _ = await charging_under_day_limit(fleet)
        async with running(client):
            await until_stored(verified("currtime 10000 1"))
            emulated.unplug()  # the station forgets currtime
            emulated.plug_in(Car(max_current_a=32))
            assert emulated.offered_ma() == 32000
            await until_stored(verified("currtime 10000 1", 2))
            await wait_for(lambda: emulated.offered_ma() == 10000)  # once its 1 s delay is over


async def test_the_limit_returns_after_the_station_reboots() -> None:
    async with world("2025-06-04T12:00:00") as (fleet, client, _clock):
        emulated, _, _ = await charging_under_day_limit(fleet)
        async with running(client):
            await until_stored(verified("currtime 10000 1"))
            emulated.reboot()
            assert emulated.offered_ma() == 32000
            await until_stored(verified("currtime 10000 1", 2))
            await wait_for(lambda: emulated.offered_ma() == 10000)


async def test_a_current_changed_at_the_station_is_corrected_once() -> None:
    async with world("2025-06-04T12:00:00", speed=50) as (fleet, client, _clock):
        emulated, _, _ = await charging_under_day_limit(fleet)
        async with running(client):
            await until_stored(verified("currtime 10000 1"))
            at_the_station(emulated, "currtime 16000 0")
            await until_stored(verified("currtime 10000 1", 2))
            # Several more polls: nothing else to correct, so nothing more is sent.
            polls = emulated.received.count("report 2")
            await wait_for(lambda: emulated.received.count("report 2") >= polls + 4, 30)
    assert [r.status for r in await sync_to_async(rows)("currtime 10000 1")] == ["verified"] * 2
    assert emulated.offered_ma() == 10000


def reboot(station: EmulatedStation) -> None:
    station.reboot()


def replug(station: EmulatedStation) -> None:
    station.unplug()
    station.plug_in(Car(max_current_a=32))


def full_speed_at_the_station(station: EmulatedStation) -> None:
    at_the_station(station, "currtime 32000 0")


@pytest.mark.parametrize("undo", [reboot, replug, full_speed_at_the_station])
async def test_a_limit_the_station_lost_is_sent_again_within_two_polls(
    undo: Callable[[EmulatedStation], None],
) -> None:
    """Right after the limit went through, the station loses it: the car must not
    charge above the limit until a quiet time for flapping commands is over."""
    async with world("2025-06-04T12:00:00") as (fleet, client, _clock):
        emulated, _, _ = await charging_under_day_limit(fleet)
        async with running(client):
            await until_stored(verified("currtime 10000 1"))
            since = len(emulated.received)
            undo(emulated)
            assert emulated.offered_ma() == 32000
            await wait_for(lambda: "currtime 10000 1" in emulated.received[since:], 30)
    heard = emulated.received[since:]
    polls = heard[: heard.index("currtime 10000 1")].count("report 3")
    assert polls <= 2


async def test_a_session_cap_stops_the_session_at_the_cap() -> None:
    async with world("2025-06-04T12:00:00", speed=200) as (fleet, client, _clock):
        emulated = await fleet.add(station_address(2), "p30c")
        station = await sync_to_async(add_station)(2)
        rule = await sync_to_async(add_rule)(station, name="Cap", kind="session cap", energy_kwh=2)
        async with running(client):
            emulated.plug_in(Car(max_current_a=16, needed_kwh=20))
            await until_stored(verified("setenergy 20000"))
            await wait_for(lambda: not emulated.enabled_user, 60)
    assert emulated.session_log[0].energy == pytest.approx(20000, abs=2)  # 2 kWh in 0.1 Wh
    assert emulated.car is not None and not emulated.car.full
    (row,) = await sync_to_async(rows)("setenergy 20000")
    assert row.rule_id == rule.pk


async def charge(emulated: EmulatedStation, kwh: float, tag: str | None = None) -> None:
    """A car that needs `kwh` comes, charges until it is full or stopped, and leaves."""
    emulated.plug_in(Car(max_current_a=16, needed_kwh=kwh))
    if tag:
        emulated.present_tag(tag)
    async with asyncio.timeout(60):
        while emulated.car is not None and not emulated.car.full and emulated.enabled_user:
            await asyncio.sleep(0.02)


async def test_a_daily_cap_holds_across_two_sessions() -> None:
    async with world("2025-06-04T08:00:00", speed=200) as (fleet, client, _clock):
        emulated = await fleet.add(station_address(2), "p30c")
        station = await sync_to_async(add_station)(2)
        await sync_to_async(add_rule)(station, name="Daily", kind="daily cap", energy_kwh=3)
        async with running(client):
            await until_stored(lambda: Station.objects.get(pk=station.pk).is_online)
            await charge(emulated, 2.0)
            emulated.unplug()
            await until_stored(lambda: Session.objects.filter(ended_at__isnull=False).count() == 1)
            emulated.plug_in(Car(max_current_a=16, needed_kwh=10))
            await until_stored(verified("setenergy 10000"))  # 1 kWh left today
            await wait_for(lambda: not emulated.enabled_user, 60)
    energies = [s.energy for s in emulated.history]
    assert sum(energies) == pytest.approx(30000, abs=4)


async def test_a_weekly_cap_per_card_owner_holds_across_two_stations() -> None:
    def setup() -> tuple[Station, Station]:
        owner = User.objects.create_user("company")
        Tag.objects.create(tag="04A1B2C3D4E5F607", owner=owner)
        first, second = add_station(2, "Left"), add_station(3, "Right")
        Rule.objects.create(name="Company card", kind="weekly cap", energy_kwh=3, card_owner=owner)
        return first, second

    async with world("2025-06-04T08:00:00", speed=200) as (fleet, client, _clock):
        left = await fleet.add(station_address(2), "p30c")
        right = await fleet.add(station_address(3), "p30c")
        await sync_to_async(setup)()
        async with running(client):
            await until_stored(lambda: Station.objects.filter(is_online=True).count() == 2)
            await charge(left, 2.0, tag="04A1B2C3D4E5F607")
            left.unplug()
            await until_stored(
                lambda: Session.objects.filter(owner__username="company").count() == 1
            )
            await until_stored(lambda: Session.objects.filter(ended_at__isnull=False).count() == 1)
            right.plug_in(Car(max_current_a=16, needed_kwh=10))
            right.present_tag("04A1B2C3D4E5F607")
            await wait_for(lambda: not right.enabled_user, 60)
    assert right.history[-1].energy == pytest.approx(10000, abs=4)  # what was left this week


async def test_an_override_beats_a_rule_and_expires() -> None:
    async with world("2025-06-04T12:00:00", speed=50) as (fleet, client, clock):
        emulated, station, _ = await charging_under_day_limit(fleet)
        async with running(client):
            await until_stored(verified("currtime 10000 1"))
            await sync_to_async(Override.objects.create)(
                station=station,
                kind="full speed",
                created_at=clock.now(),
                until=clock.now() + timedelta(minutes=2),
            )
            await until_stored(verified("currtime 63000 1"))  # full speed, by the override
            await until_stored(verified("currtime 10000 1", 2))  # the rule holds again afterwards
            back_at = clock.now()
            await wait_for(lambda: emulated.offered_ma() == 10000)
    override = await sync_to_async(Override.objects.get)()
    assert override.until is not None and back_at >= override.until


async def test_the_failsafe_is_armed_and_the_station_falls_back_when_the_gateway_stops() -> None:
    async with world("2025-06-04T12:00:00", speed=20) as (fleet, client, clock):
        emulated = await fleet.add(station_address(2), "p30c")
        emulated.plug_in(Car(max_current_a=32))
        station = await sync_to_async(add_station)(2)
        await sync_to_async(Fallback.objects.create)(station=station, timeout_s=30, current_a=6)
        async with running(client):
            await until_stored(verified("failsafe 30 6000 0"))
            armed_at = clock.monotonic()
            # Kept alive: well past the timeout, the station still offers everything.
            await wait_for(lambda: clock.monotonic() > armed_at + 90, 30)
            assert emulated.offered_ma() == 32000
            stopped_at = clock.monotonic()
        await wait_for(lambda: emulated.offered_ma() == 6000, 30)
        fell_back_after = clock.monotonic() - stopped_at
    assert fell_back_after <= 30 + 5  # T after the last command, give or take a poll


async def test_on_the_spring_forward_night_a_window_opens_when_the_clocks_jump() -> None:
    async with world("2025-03-30T01:59:40", speed=20) as (fleet, client, clock):
        emulated = await fleet.add(station_address(2), "p30c")
        emulated.plug_in(Car(max_current_a=32))
        station = await sync_to_async(add_station)(2)
        await sync_to_async(add_rule)(
            station, kind="current", starts_at=time(3), ends_at=time(5), current_a=8
        )
        async with running(client):
            await wait_for(lambda: emulated.offered_ma() == 8000, 30)
            opened = local(clock)
    assert opened.utcoffset() == timedelta(hours=2) and time(3) <= opened.time() < time(3, 1)


async def test_on_the_fall_back_night_a_window_in_the_repeated_hour_is_applied_once() -> None:
    async with world("2025-10-26T01:59:40", speed=400) as (fleet, client, clock):
        emulated = await fleet.add(station_address(2), "p30c")
        emulated.plug_in(Car(max_current_a=32))
        station = await sync_to_async(add_station)(2)
        await sync_to_async(add_rule)(
            station, kind="current", starts_at=time(2, 30), ends_at=time(2, 45), current_a=8
        )
        async with running(client):
            await wait_for(lambda: emulated.offered_ma() == 8000, 30)
            # Past the first 02:45 (CEST) and through the repeated hour to 02:50 CET.
            end = datetime(2025, 10, 26, 2, 50, tzinfo=VIENNA).replace(fold=1)
            await wait_for(lambda: clock.now() >= end, 60)
    limits = [w for w, _ in emulated.executed if w == "currtime 8000 1"]
    assert limits == ["currtime 8000 1"]  # applied once, not again in the repeated hour
    assert emulated.offered_ma() == 32000


async def test_a_boundary_missed_while_everything_was_down_is_made_true_at_start() -> None:
    # No task cluster and no gateway at 07:00: the gateway started at 09:00 still applies it.
    async with world("2025-06-04T09:00:00") as (fleet, client, _clock):
        emulated, _, _ = await charging_under_day_limit(fleet)
        async with running(client):
            await until_stored(verified("currtime 10000 1"))
            await wait_for(lambda: emulated.offered_ma() == 10000)
