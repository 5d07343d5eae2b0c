"""The live socket /ws/live/, through the real ASGI application and Channels' auth."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client
from pytest_django.fixtures import Settings

from chargers import live, services
from chargers.gateway import GatewaySettings, commands
from chargers.kecontact.emulator import Car
from chargers.models import Command, Station
from kebaweb.asgi import application
from tests.emulated import fleet_and_client, station_address
from tests.gateways import running
from tests.people import person

pytestmark = pytest.mark.django_db(transaction=True)

LIVE = GatewaySettings(scan_interval_s=0.2, search_interval_s=0)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def session_cookie(role: str) -> bytes:
    client = Client()
    client.force_login(person(role))
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


@asynccontextmanager
async def socket(
    role: str | None, origin: tuple[bytes, bytes] = ORIGIN
) -> AsyncIterator[tuple[bool, WebsocketCommunicator]]:
    headers = [origin, (b"host", b"127.0.0.1:8000")]
    if role is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(role)))
    communicator = WebsocketCommunicator(application, "/ws/live/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    try:
        yield connected, communicator
    finally:
        await communicator.disconnect()


async def frame(communicator: WebsocketCommunicator) -> dict[str, Any]:
    result: dict[str, Any] = await communicator.receive_json_from(timeout=10)
    return result


async def test_it_sends_a_published_status_to_a_viewer() -> None:
    async with socket("viewer") as (connected, ws):
        assert connected
        await live.publish_status(7, {"power_w": 11000.0, "activity": "charging"})
        assert await frame(ws) == {
            "type": "status",
            "station": 7,
            "power_w": 11000.0,
            "activity": "charging",
        }


async def test_it_refuses_an_anonymous_socket() -> None:
    async with socket(None) as (connected, _):
        assert not connected


async def test_it_refuses_a_user_without_a_role() -> None:
    async with socket("none") as (connected, _):
        assert not connected


async def test_it_refuses_a_foreign_origin() -> None:
    async with socket("member", origin=(b"origin", b"http://evil.example")) as (connected, _):
        assert not connected


async def test_kiosk_sockets_get_a_redacted_stream_without_commands(settings: Settings) -> None:
    settings.PUBLIC_DASHBOARD = True
    async with socket(None) as (connected, ws):
        assert connected
        await live.publish_command(7, 1, "pending", "")
        await live.publish_status(7, {"power_w": 1.0, "session_id": 3})
        assert await frame(ws) == {"type": "status", "station": 7, "power_w": 1.0}


async def test_a_command_outcome_reaches_the_socket() -> None:
    station = await Station.objects.acreate(name="Garage", address="192.0.2.10")
    async with socket("member") as (connected, ws):
        assert connected
        row = await sync_to_async(services.queue_command)(station, "currtime 10000 1", "member")
        assert await frame(ws) == {
            "type": "command",
            "id": row.pk,
            "station": station.pk,
            "status": "pending",
            "reason": "",
        }
        await sync_to_async(commands.claim)(row, "test-gateway")
        assert (await frame(ws))["status"] == "sent"
        await sync_to_async(commands.finish)(row, Command.Status.VERIFIED, "report 2 shows it")
        assert await frame(ws) == {
            "type": "command",
            "id": row.pk,
            "station": station.pk,
            "status": "verified",
            "reason": "report 2 shows it",
        }


async def test_the_socket_ignores_what_a_browser_sends() -> None:
    async with socket("member") as (connected, ws):
        assert connected
        await ws.send_json_to({"type": "command", "wire": "unlock"})
        assert await ws.receive_nothing(timeout=0.2)
        assert not await Command.objects.aexists()


async def test_a_car_plugged_into_an_emulated_station_reaches_the_socket_as_charging() -> None:
    async with fleet_and_client(speed=50) as (fleet, client):
        emulated = await fleet.add(station_address(2), "p30c", serial="22054282")
        station = await Station.objects.acreate(
            name="Garage", address=station_address(2), poll_interval_s=5
        )
        async with running(client, LIVE), socket("viewer") as (connected, ws):
            assert connected
            emulated.plug_in(Car(max_current_a=16))
            # The status message comes first, with the last poll's meter (nothing drawn
            # yet); the poll that follows it brings the currents.
            async with asyncio.timeout(30):
                while not (
                    (seen := await frame(ws)).get("activity") == "charging" and seen["power_w"]
                ):
                    pass
    assert seen["station"] == station.pk and seen["activity_text"] == "charging"
    assert seen["current_1_a"] == pytest.approx(16)  # what the car draws
    assert seen["limit_a"] == pytest.approx(32) and seen["limit_source"].startswith("hardware")
    assert seen["power_w"] == pytest.approx(16 * 230 * 3)


async def test_a_status_message_reaches_the_socket_without_waiting_for_a_poll() -> None:
    async with fleet_and_client(speed=50) as (fleet, client):
        emulated = await fleet.add(station_address(2), "p30c")
        station = await Station.objects.acreate(
            name="Garage", address=station_address(2), poll_interval_s=5
        )
        async with running(client, LIVE), socket("viewer") as (connected, ws):
            assert connected
            while not (await frame(ws)).get("is_online"):
                pass  # polled once: the station now tells the gateway what changes
            # From now on no report is answered: only the station's own status
            # message can tell the page that a car arrived.
            emulated.faults.unanswered = {"report"}
            emulated.plug_in(Car(max_current_a=16))
            async with asyncio.timeout(30):
                while not (seen := await frame(ws)).get("car_connected"):
                    pass
    assert seen["station"] == station.pk and seen["plug"] == 7


async def test_a_browser_that_connects_late_still_gets_each_stations_status() -> None:
    async with fleet_and_client(speed=50) as (fleet, client):
        await fleet.add(station_address(2), "p30c")
        station = await Station.objects.acreate(
            name="Garage", address=station_address(2), poll_interval_s=5
        )
        async with running(client, LIVE) as gateway:
            await gateway.listening.wait()
            async with asyncio.timeout(30):
                while not any(w.last is not None for w in gateway.workers.values()):
                    await asyncio.sleep(0.05)
            # Nothing changes at the station from now on: only a resend can reach us.
            async with socket("viewer") as (connected, ws):
                assert connected
                seen = await frame(ws)
    assert seen["type"] == "status" and seen["station"] == station.pk
    assert seen["is_online"] is True and seen["activity"]
