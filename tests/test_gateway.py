"""The gateway against emulated stations over real UDP and a real database."""

import asyncio
import socket
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.core.management.base import CommandError

from chargers import live, services
from chargers.gateway import Gateway, GatewaySettings, core
from chargers.kecontact.emulator import Car, Faults, Fleet
from chargers.models import Command, Event, Reading, Session, Site, Station
from tests.emulated import (
    BROADCAST,
    GATEWAY_HOST,
    fleet_and_client,
    station_address,
    until_stored,
    wait_for,
)
from tests.gateways import FAST, running

pytestmark = pytest.mark.django_db(transaction=True)


def add_station(address: str, name: str = "Garage") -> Station:
    return Station.objects.create(name=name, address=address, poll_interval_s=5)


async def charge_one_session(fleet: Fleet, host: str, kwh: float) -> None:
    station = fleet[host]
    station.plug_in(Car(max_current_a=32, needed_kwh=kwh))
    async with asyncio.timeout(20):
        while not (station.car and station.car.full):
            await asyncio.sleep(0.02)
    station.unplug()


async def test_it_records_readings_and_a_live_session_during_a_charge() -> None:
    async with fleet_and_client(speed=50) as (fleet, client):
        emulated = await fleet.add(station_address(2), "p30c", serial="22054282")
        station = await sync_to_async(add_station)(station_address(2))
        async with running(client):
            await until_stored(lambda: Station.objects.get(pk=station.pk).is_online)
            emulated.plug_in(Car(max_current_a=16))
            await until_stored(lambda: Session.objects.filter(energy_kwh__gt=0.1).exists())
    await station.arefresh_from_db()
    session = await sync_to_async(Session.objects.get)()
    assert station.serial == "22054282" and station.model_label == "P30 c-series"
    assert station.state == 3 and station.power_w == pytest.approx(16 * 230 * 3)
    assert session.keba_session_id == 1 and session.ended_at is None
    assert await sync_to_async(Reading.objects.filter(station=station, state=3).exists)()


async def test_it_backfills_sessions_after_downtime_exactly_once() -> None:
    async with fleet_and_client(speed=500) as (fleet, client):
        emulated = await fleet.add(station_address(2), "p30c")
        for kwh in (1.0, 2.0, 3.0):
            await charge_one_session(fleet, station_address(2), kwh)
        await sync_to_async(add_station)(station_address(2))
        async with running(client):
            await until_stored(lambda: Session.objects.count() == 3)
        log_reads = emulated.received.count("report 100")
        async with running(client):  # a restart reads the log again
            await wait_for(lambda: emulated.received.count("report 100") > log_reads)
            await until_stored(lambda: Reading.objects.count() >= 2)
    sessions = await sync_to_async(lambda: list(Session.objects.order_by("keba_session_id")))()
    assert [s.keba_session_id for s in sessions] == [1, 2, 3]
    assert [round(s.energy_kwh, 1) for s in sessions] == [1.0, 2.0, 3.0]
    assert all(s.source == "log" and s.ended_at is not None for s in sessions)


async def test_it_executes_and_verifies_a_command() -> None:
    async with fleet_and_client(speed=50) as (fleet, client):
        emulated = await fleet.add(station_address(2), "p30c")
        station = await sync_to_async(add_station)(station_address(2))
        row = await sync_to_async(Command.objects.create)(station=station, wire="curr 10000")
        async with running(client):
            await until_stored(lambda: Command.objects.get(pk=row.pk).status == "verified")
    assert emulated.user_current_ma == 10000


async def test_it_refuses_a_command_the_model_cannot_do_without_sending_it() -> None:
    async with fleet_and_client(speed=50) as (fleet, client):
        emulated = await fleet.add(station_address(3), "p20")
        station = await sync_to_async(add_station)(station_address(3))
        row = await sync_to_async(Command.objects.create)(station=station, wire="currtime 10000 1")
        async with running(client):
            await until_stored(lambda: Command.objects.get(pk=row.pk).status == "refused")
    await row.arefresh_from_db()
    assert "P20" in row.reason and "nothing was sent" in row.reason
    assert not any(text.startswith("currtime") for text in emulated.received)


async def test_it_marks_a_silent_station_offline_and_logs_its_return() -> None:
    async with fleet_and_client(speed=200, reply_timeout_s=0.1, retries=0) as (fleet, client):
        emulated = await fleet.add(station_address(4), "p30c")
        station = await sync_to_async(add_station)(station_address(4))
        async with running(client):
            await until_stored(lambda: Station.objects.get(pk=station.pk).is_online)
            emulated.faults.loss = 1.0  # the station stops answering
            await until_stored(lambda: not Station.objects.get(pk=station.pk).is_online)
            emulated.faults.loss = 0.0
            await until_stored(lambda: Event.objects.filter(kind="online").count() == 2)
    kinds = await sync_to_async(lambda: [e.kind for e in Event.objects.order_by("id")])()
    assert [k for k in kinds if k in ("online", "offline")] == ["online", "offline", "online"]


async def test_it_follows_a_station_to_its_new_address() -> None:
    async with fleet_and_client(speed=200, reply_timeout_s=0.1, retries=0) as (fleet, client):
        await fleet.add(station_address(2), "p30c", serial="12345678")
        station = await sync_to_async(add_station)(station_address(2))
        async with running(client):
            await until_stored(lambda: Station.objects.get(pk=station.pk).serial == "12345678")
            await fleet.move(station_address(2), station_address(22))
            await until_stored(
                lambda: Station.objects.get(pk=station.pk).address == station_address(22)
            )
    assert await sync_to_async(Event.objects.filter(kind="moved").exists)()


async def test_forgers_at_many_addresses_leave_a_bounded_number_of_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(core, "STRANGER_EVENTS_PER_HOUR", 3)
    forged = b'{"ID": "2", "State": 3, "Plug": 7, "Serial": "12345678", "Sec": 1}'
    async with fleet_and_client(speed=50) as (fleet, client):
        await fleet.add(station_address(2), "p30c", serial="12345678")
        station = await sync_to_async(add_station)(station_address(2))
        async with running(client):
            await until_stored(lambda: Station.objects.get(pk=station.pk).serial == "12345678")
            for n in range(100, 106):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forger:
                    forger.bind((station_address(n), 7090))
                    forger.sendto(forged, (GATEWAY_HOST, 7090))
            await wait_for(lambda: client.stats.unknown_sender >= 6)
            await until_stored(lambda: Event.objects.filter(kind="stranger").count() >= 3)
    messages = await sync_to_async(
        lambda: list(Event.objects.filter(kind="stranger").values_list("message", flat=True))
    )()
    assert len(messages) == 3
    assert sum("ignored without an event until the hour is over" in m for m in messages) == 1
    await station.arefresh_from_db()
    assert station.address == station_address(2)  # no forger took its place


async def test_two_stations_that_swap_addresses_keep_their_history_and_are_polled_again() -> None:
    # A long back-off: only being found again may bring a station back quickly.
    slow_search = GatewaySettings(scan_interval_s=0.2, search_interval_s=0, max_backoff_s=3600)
    async with fleet_and_client(speed=50, reply_timeout_s=0.2, retries=0) as (fleet, client):
        first = await fleet.add(station_address(2), "p30c", serial="11111111")
        second = await fleet.add(station_address(3), "p30c", serial="22222222")
        garage = await sync_to_async(add_station)(station_address(2), "Garage")
        carport = await sync_to_async(add_station)(station_address(3), "Carport")
        for emulated, kwh in ((first, 1.0), (second, 2.0)):
            await charge_one_session(fleet, emulated.host, kwh)
        gateway = Gateway(client, settings=slow_search, broadcast=BROADCAST)
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            await until_stored(lambda: Session.objects.filter(ended_at__isnull=False).count() == 2)
            # A DHCP lease swap.
            await fleet.move(station_address(2), station_address(12))
            await fleet.move(station_address(3), station_address(2))
            await fleet.move(station_address(12), station_address(3))
            swapped = {garage.pk: station_address(3), carport.pk: station_address(2)}
            await until_stored(
                lambda: all(
                    Station.objects.filter(pk=pk, address=address, is_online=True).exists()
                    for pk, address in swapped.items()
                )
            )
            first.plug_in(Car())  # the garage's next session, at its new address
            await until_stored(
                lambda: Session.objects.filter(station=garage, ended_at=None).exists()
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    energies = await sync_to_async(
        lambda: {
            s.station_id: round(s.energy_kwh, 1) for s in Session.objects.filter(keba_session_id=1)
        }
    )()
    assert energies == {garage.pk: 1.0, carport.pk: 2.0}
    assert await sync_to_async(Station.objects.count)() == 2
    assert await sync_to_async(Event.objects.filter(kind="looking").exists)()


async def test_it_closes_the_running_session_when_the_station_reboots() -> None:
    async with fleet_and_client(speed=50) as (fleet, client):
        emulated = await fleet.add(station_address(2), "p30c")
        await sync_to_async(add_station)(station_address(2))
        emulated.plug_in(Car())
        async with running(client):
            await until_stored(lambda: Session.objects.filter(energy_kwh__gt=0).exists())
            emulated.reboot()
            await until_stored(lambda: Event.objects.filter(kind="reboot").exists())
            await until_stored(lambda: Session.objects.count() == 2)
    first = await sync_to_async(Session.objects.get)(keba_session_id=1)
    assert first.ended_at is not None
    reboot = await sync_to_async(Event.objects.get)(kind="reboot")
    assert "a running session was closed" in reboot.message


@pytest.mark.parametrize(
    ("model", "restart_before"),
    [("p30c", "report 3"), ("p30c", "report 100"), ("p20", "report 3")],
)
async def test_a_restart_in_the_middle_of_a_poll_ends_the_session_at_the_boot(
    model: str, restart_before: str
) -> None:
    # Report 2 comes from the old run, the next report from the new one: read as
    # one poll, the new session's energy would pass for the old session's.
    # At 10 times real speed the 3 s allowed below hold 0.3 s of a loaded machine.
    async with fleet_and_client(speed=10) as (fleet, client):
        emulated = await fleet.add(station_address(2), model)
        await sync_to_async(add_station)(station_address(2))
        async with running(client):
            await until_stored(lambda: Event.objects.filter(kind="online").exists())
            emulated.plug_in(Car(needed_kwh=50))  # watched from its start
            await until_stored(lambda: Session.objects.filter(energy_kwh__gt=0.05).exists())
            emulated.faults.reboot_before = restart_before
            await wait_for(lambda: emulated.faults.reboot_before is None, 30)
            await until_stored(lambda: Event.objects.filter(kind="reboot").exists())
            polls = emulated.received.count("report 3")
            await wait_for(lambda: emulated.received.count("report 3") >= polls + 5, 30)
            emulated.unplug()
            await until_stored(
                lambda: (
                    Session.objects.count() == 2
                    and not Session.objects.filter(ended_at=None).exists()
                )
            )
    cut, after = emulated.history  # the car stayed: a new session began at the boot
    rows = await sync_to_async(lambda: list(Session.objects.order_by("started_at")))()
    assert len(rows) == 2  # none invented
    first, second = rows
    assert cut.cut_by_reboot and cut.ended_wall is not None
    assert first.ended_at is not None
    assert abs(first.ended_at.timestamp() - cut.ended_wall) < 3  # at the boot
    assert not first.incomplete_reason
    assert 0.05 < first.energy_kwh <= cut.energy / 10000 + 1e-4  # the last it reported
    assert second.started_at is not None
    assert abs(second.started_at.timestamp() - after.started_wall) < 3
    assert second.energy_kwh > 0.05


async def test_a_reboot_without_a_car_is_noted_without_claiming_a_closed_session() -> None:
    async with fleet_and_client(speed=50) as (fleet, client):
        emulated = await fleet.add(station_address(2), "p30c")
        await sync_to_async(add_station)(station_address(2))
        async with running(client):
            await until_stored(lambda: Event.objects.filter(kind="online").exists())
            emulated.reboot()
            await until_stored(lambda: Event.objects.filter(kind="reboot").exists())
    reboot = await sync_to_async(Event.objects.get)(kind="reboot")
    assert reboot.message.startswith("the station restarted at ")
    assert "session" not in reboot.message
    assert not await Session.objects.aexists()


async def test_a_queued_command_wakes_the_gateway_at_once() -> None:
    async with fleet_and_client(speed=1) as (fleet, client):
        emulated = await fleet.add(station_address(2), "p30c")
        station = await sync_to_async(Station.objects.create)(
            name="Slow", address=station_address(2), poll_interval_s=3600
        )
        async with running(client):
            await until_stored(lambda: Station.objects.get(pk=station.pk).is_online)
            row = await sync_to_async(services.queue_command)(station, "curr 12000", "test")
            # The next poll is an hour away: only the wake-up can get this verified.
            await until_stored(lambda: Command.objects.get(pk=row.pk).status == "verified")
    assert emulated.user_current_ma == 12000


async def test_it_expires_a_command_that_waited_too_long_without_sending_it() -> None:
    async with fleet_and_client(speed=50) as (fleet, client):
        emulated = await fleet.add(station_address(2), "p30c")
        station = await sync_to_async(add_station)(station_address(2))
        row = await sync_to_async(services.queue_command)(
            station, "curr 10000", "test", lifetime=timedelta(seconds=-1)
        )
        async with running(client):
            await until_stored(lambda: Command.objects.get(pk=row.pk).status == "expired")
    assert "curr 10000" not in emulated.received


async def test_it_retries_a_command_the_station_did_not_answer() -> None:
    async with fleet_and_client(speed=50, reply_timeout_s=0.2, retries=0) as (fleet, client):
        emulated = await fleet.add(station_address(2), "p30c")
        station = await sync_to_async(add_station)(station_address(2))
        async with running(client):
            await until_stored(lambda: Station.objects.get(pk=station.pk).is_online)
            emulated.faults.unanswered = {"ena"}  # the first `ena 0` is lost
            row = await sync_to_async(services.queue_command)(station, "ena 0", "test")
            # Only once the station has swallowed the first try may it answer again.
            await wait_for(lambda: "ena 0" in emulated.received)
            emulated.faults.unanswered = set()
            await until_stored(lambda: Command.objects.get(pk=row.pk).status == "verified")
    await row.arefresh_from_db()
    assert row.attempts >= 2
    assert emulated.enabled_user is False


async def test_it_gives_up_on_a_command_after_bounded_attempts() -> None:
    async with fleet_and_client(speed=200, reply_timeout_s=0.2, retries=0) as (fleet, client):
        emulated = await fleet.add(station_address(2), "p30c")
        station = await sync_to_async(add_station)(station_address(2))
        async with running(client):
            await until_stored(lambda: Station.objects.get(pk=station.pk).is_online)
            emulated.faults.unanswered = {"curr"}
            row = await sync_to_async(services.queue_command)(station, "curr 8000", "test")
            await until_stored(lambda: Command.objects.get(pk=row.pk).status == "failed", 30)
    await row.arefresh_from_db()
    assert row.attempts == FAST.command_attempts
    assert "gave up after 3 attempts" in row.reason and "no reply" in row.reason


async def test_it_converges_under_30_percent_packet_loss() -> None:
    async with fleet_and_client(speed=100, reply_timeout_s=0.1, retries=3) as (fleet, client):
        emulated = await fleet.add(station_address(2), "p30c", faults=Faults(loss=0.3), seed=11)
        for kwh in (1.0, 2.0):
            await charge_one_session(fleet, station_address(2), kwh)
        station = await sync_to_async(add_station)(station_address(2))
        row = await sync_to_async(services.queue_command)(station, "curr 14000", "test")
        async with running(client):
            emulated.plug_in(Car())
            await until_stored(lambda: Command.objects.get(pk=row.pk).status == "verified", 60)
            await until_stored(lambda: Session.objects.count() == 3, 60)
            await until_stored(
                lambda: Session.objects.filter(keba_session_id=3, energy_kwh__gt=0).exists(), 60
            )
    sessions = await sync_to_async(lambda: list(Session.objects.order_by("keba_session_id")))()
    assert [round(s.energy_kwh, 1) for s in sessions[:2]] == [1.0, 2.0]
    assert sessions[2].ended_at is None


async def test_it_publishes_each_status_change_to_the_station_groups() -> None:
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    await layer.group_add(live.ALL_STATIONS_GROUP, channel)
    async with fleet_and_client(speed=50) as (fleet, client):
        emulated = await fleet.add(station_address(2), "p30c")
        station = await sync_to_async(add_station)(station_address(2))
        emulated.plug_in(Car())
        async with running(client):
            message = await asyncio.wait_for(layer.receive(channel), 20)
            while message["status"]["state"] != 3:
                message = await asyncio.wait_for(layer.receive(channel), 20)
    assert message["type"] == "station.status"
    assert message["station"] == station.pk
    assert message["status"]["state_label"] == "charging"


def test_a_second_gateway_on_the_same_address_is_refused_with_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
        first.bind((GATEWAY_HOST, 7090))
        with pytest.raises(CommandError, match="already in use by another program"):
            call_command("gateway", "--bind", GATEWAY_HOST)


async def test_a_stop_stores_what_was_observed_and_a_restart_continues() -> None:
    async with fleet_and_client(speed=50) as (fleet, client):
        emulated = await fleet.add(station_address(2), "p30c")
        await sync_to_async(add_station)(station_address(2))
        emulated.plug_in(Car())
        slow_writes = GatewaySettings(scan_interval_s=0.2, flush_interval_s=3600)
        gateway = Gateway(client, settings=slow_writes, broadcast=BROADCAST)
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        await until_stored(lambda: Session.objects.exists())  # the log import is written at once
        await wait_for(lambda: "report 3" in emulated.received)
        stop.set()  # the exchange in flight finishes, and what it saw is written
        await asyncio.wait_for(task, 10)
        stored_at_stop = await sync_to_async(Reading.objects.count)()
        async with running(client):
            await until_stored(lambda: Reading.objects.count() > stored_at_stop)
    assert stored_at_stop >= 1  # nothing was flushed before the stop: the stop wrote it
    assert await sync_to_async(Session.objects.count)() == 1


async def test_a_gateway_for_one_site_leaves_other_sites_stations_alone() -> None:
    async with fleet_and_client(speed=50) as (fleet, client):
        await fleet.add(station_address(2), "p30c")
        other = await fleet.add(station_address(3), "p30c")

        def two_sites() -> tuple[Station, Station]:
            here, there = Site.objects.create(name="Garage"), Site.objects.create(name="Office")
            return (
                Station.objects.create(name="A", address=station_address(2), site=here),
                Station.objects.create(name="B", address=station_address(3), site=there),
            )

        mine, theirs = await sync_to_async(two_sites)()
        gateway = Gateway(client, settings=FAST, broadcast=BROADCAST, site="Garage")
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        await until_stored(lambda: Station.objects.get(pk=mine.pk).is_online)
        stop.set()
        await asyncio.wait_for(task, 10)
    await theirs.arefresh_from_db()
    assert not theirs.is_online and other.received == []
