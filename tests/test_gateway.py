"""The gateway against emulated stations over real UDP and a real database."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from asgiref.sync import sync_to_async

from chargers.gateway import Gateway, GatewaySettings
from chargers.kecontact.client import KebaClient
from chargers.kecontact.emulator import Car, Fleet
from chargers.models import Command, Event, Reading, Session, Station
from tests.emulated import fleet_and_client

pytestmark = pytest.mark.django_db(transaction=True)

FAST = GatewaySettings(scan_interval_s=0.2, search_interval_s=0, heartbeat_s=60)


@asynccontextmanager
async def running(client: KebaClient) -> AsyncIterator[Gateway]:
    gateway = Gateway(client, settings=FAST, broadcast="127.255.255.255")
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        yield gateway
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def until(query: Callable[[], object], timeout_s: float = 20.0) -> None:
    """Wait for a database outcome, re-checking it as the gateway works."""
    check = sync_to_async(query)
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(0.05)


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
        emulated = await fleet.add("127.0.0.2", "p30c", serial="22054282")
        station = await sync_to_async(add_station)("127.0.0.2")
        async with running(client):
            await until(lambda: Station.objects.get(pk=station.pk).is_online)
            emulated.plug_in(Car(max_current_a=16))
            await until(lambda: Session.objects.filter(energy_kwh__gt=0.1).exists())
    await station.arefresh_from_db()
    session = await sync_to_async(Session.objects.get)()
    assert station.serial == "22054282" and station.model_label == "P30 c-series"
    assert station.state == 3 and station.power_w == pytest.approx(16 * 230 * 3)
    assert session.keba_session_id == 1 and session.ended_at is None
    assert await sync_to_async(Reading.objects.filter(station=station, state=3).exists)()


async def test_it_backfills_sessions_after_downtime_exactly_once() -> None:
    async with fleet_and_client(speed=500) as (fleet, client):
        await fleet.add("127.0.0.2", "p30c")
        for kwh in (1.0, 2.0, 3.0):
            await charge_one_session(fleet, "127.0.0.2", kwh)
        await sync_to_async(add_station)("127.0.0.2")
        async with running(client):
            await until(lambda: Session.objects.count() == 3)
        async with running(client):  # a restart reads the log again
            await until(lambda: Event.objects.filter(kind="online").count() >= 1)
            await until(lambda: Reading.objects.count() >= 2)
    sessions = await sync_to_async(lambda: list(Session.objects.order_by("keba_session_id")))()
    assert [s.keba_session_id for s in sessions] == [1, 2, 3]
    assert [round(s.energy_kwh, 1) for s in sessions] == [1.0, 2.0, 3.0]
    assert all(s.source == "log" and s.ended_at is not None for s in sessions)


async def test_it_executes_and_verifies_a_command() -> None:
    async with fleet_and_client(speed=50) as (fleet, client):
        emulated = await fleet.add("127.0.0.2", "p30c")
        station = await sync_to_async(add_station)("127.0.0.2")
        row = await sync_to_async(Command.objects.create)(station=station, wire="curr 10000")
        async with running(client):
            await until(lambda: Command.objects.get(pk=row.pk).status == "verified")
    assert emulated.user_current_ma == 10000


async def test_it_refuses_a_command_the_model_cannot_do_without_sending_it() -> None:
    async with fleet_and_client(speed=50) as (fleet, client):
        emulated = await fleet.add("127.0.0.3", "p20")
        station = await sync_to_async(add_station)("127.0.0.3")
        row = await sync_to_async(Command.objects.create)(station=station, wire="currtime 10000 1")
        async with running(client):
            await until(lambda: Command.objects.get(pk=row.pk).status == "refused")
    await row.arefresh_from_db()
    assert "P20" in row.reason and "nothing was sent" in row.reason
    assert not any(text.startswith("currtime") for text in emulated.received)


async def test_it_marks_a_silent_station_offline_and_logs_its_return() -> None:
    async with fleet_and_client(speed=200, reply_timeout_s=0.1, retries=0) as (fleet, client):
        emulated = await fleet.add("127.0.0.4", "p30c")
        station = await sync_to_async(add_station)("127.0.0.4")
        async with running(client):
            await until(lambda: Station.objects.get(pk=station.pk).is_online)
            emulated.faults.loss = 1.0  # the station stops answering
            await until(lambda: not Station.objects.get(pk=station.pk).is_online)
            emulated.faults.loss = 0.0
            await until(lambda: Event.objects.filter(kind="online").count() == 2)
    kinds = await sync_to_async(lambda: [e.kind for e in Event.objects.order_by("id")])()
    assert [k for k in kinds if k in ("online", "offline")] == ["online", "offline", "online"]


async def test_it_follows_a_station_to_its_new_address() -> None:
    async with fleet_and_client(speed=200, reply_timeout_s=0.1, retries=0) as (fleet, client):
        await fleet.add("127.0.0.2", "p30c", serial="12345678")
        station = await sync_to_async(add_station)("127.0.0.2")
        async with running(client):
            await until(lambda: Station.objects.get(pk=station.pk).serial == "12345678")
            await fleet.move("127.0.0.2", "127.0.0.22")
            await until(lambda: Station.objects.get(pk=station.pk).address == "127.0.0.22")
    assert await sync_to_async(Event.objects.filter(kind="moved").exists)()


async def test_it_closes_the_running_session_when_the_station_reboots() -> None:
    async with fleet_and_client(speed=50) as (fleet, client):
        emulated = await fleet.add("127.0.0.2", "p30c")
        await sync_to_async(add_station)("127.0.0.2")
        emulated.plug_in(Car())
        async with running(client):
            await until(lambda: Session.objects.filter(energy_kwh__gt=0).exists())
            emulated.reboot()
            await until(lambda: Event.objects.filter(kind="reboot").exists())
            await until(lambda: Session.objects.count() == 2)
    first = await sync_to_async(Session.objects.get)(keba_session_id=1)
    assert first.ended_at is not None
