"""An override made on the dashboard beats a rule at a real gateway and an emulated
station over real UDP, and the card and its live frames say so."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.test import Client
from pytest_django.fixtures import Settings

from chargers import live
from chargers.kecontact.emulator import Car
from chargers.models import Override, Session, Station
from tests.emulated import station_address, until_stored, wait_for
from tests.people import person
from tests.test_rules_gateway import (
    VIENNA,
    add_rule,
    add_station,
    running,
    verified,
    world,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _household_time_zone(settings: Settings) -> None:
    settings.TIME_ZONE = "Europe/Vienna"


@asynccontextmanager
async def frames(station: Station) -> AsyncIterator[Callable[..., Any]]:
    """What a dashboard's socket hears about `station`: wait for a frame that fits."""
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    await layer.group_add(live.ALL_STATIONS_GROUP, channel)

    async def next_where(fits: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(30):
            while True:
                message = await layer.receive(channel)
                ours = message["type"] == "station.status" and message["station"] == station.pk
                if ours and fits(message["status"]):
                    return dict(message["status"])

    try:
        yield next_where
    finally:
        await layer.group_discard(live.ALL_STATIONS_GROUP, channel)


def member_client() -> Client:
    client = Client()
    client.force_login(person("member"))
    return client


async def test_an_override_from_the_dashboard_beats_the_rule_and_the_card_says_so() -> None:
    # The clock starts now: the dashboard dates the override with the real time.
    now = datetime.now(VIENNA).replace(tzinfo=None, microsecond=0).isoformat()
    async with world(now, speed=20) as (fleet, client, _clock):
        emulated = await fleet.add(station_address(2), "p30c")
        emulated.plug_in(Car(max_current_a=32))
        station = await sync_to_async(add_station)(2)
        await sync_to_async(add_rule)(station, kind="current", current_a=10)  # all day
        browser = await sync_to_async(member_client)()
        async with running(client), frames(station) as next_frame:
            await until_stored(verified("currtime 10000 1"))
            ruled = await next_frame(lambda f: f.get("limit_a") == 10)
            assert ruled["limit_source"].startswith("rule “Day”: at most 10 A")
            await until_stored(
                lambda: Session.objects.filter(station=station, ended_at=None).exists()
            )

            posted = await sync_to_async(browser.post)(
                f"/stations/{station.pk}/override/full-speed/", headers={"HX-Request": "true"}
            )
            assert "Override set" in posted.content.decode()
            await until_stored(verified("currtime 63000 1"))  # full speed, by the override
            await wait_for(lambda: emulated.offered_ma() == 32000, 30)
            overridden = await next_frame(lambda f: bool(f.get("override_text")))
            assert overridden["override_text"].startswith("Override “full speed” by member")
            assert overridden["rule_text"] == ""
            # The card as a page load renders it, once the gateway stored the plugged car.
            shown = "Override “full speed” by member, until the car is unplugged."
            await until_stored(lambda: shown in browser.get("/").content.decode())

            await sync_to_async(browser.post)(f"/stations/{station.pk}/override/end/")
            await until_stored(verified("currtime 10000 1", 2))  # the rule holds again
            await wait_for(lambda: emulated.offered_ma() == 10000, 30)
            back = await next_frame(lambda f: f.get("override_text") == "")
            assert back["rule_text"].startswith("At most 10 A: rule “Day”")
    override = await sync_to_async(Override.objects.get)()
    assert override.ended_at is not None and override.session_id is not None
