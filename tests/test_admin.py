"""The admin against a real gateway and emulated stations on the run's loopback range.

Django's test client is synchronous: it runs in a thread (sync_to_async), and the
admin's call to the gateway hops back onto this test's loop, where the gateway runs.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from chargers.gateway import Gateway, GatewaySettings
from chargers.kecontact.client import KebaClient
from chargers.kecontact.emulator import Car, Fleet
from chargers.kecontact.timing import Clock, Timing
from chargers.models import Command, Event, Reading, Session, Site, Station, Tag
from tests.emulated import BROADCAST, GATEWAY_HOST, NETWORK, station_address, until_stored

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db(transaction=True)

FAST = GatewaySettings(scan_interval_s=0.2, search_interval_s=0, heartbeat_s=60)
ADD_URL = "/admin/chargers/station/add/"
CHANGELIST_URL = "/admin/chargers/station/"
DISCOVER_URL = "/admin/chargers/station/discover/"
SMALL_RANGE = f"{NETWORK.network_address}/29"


@asynccontextmanager
async def fleet_and_gateway(
    reply_timeout_s: float = 0.5, retries: int = 2, start_gateway: bool = True
) -> AsyncIterator[tuple[Fleet, KebaClient]]:
    clock, timing = Clock(50), Timing()
    client = KebaClient(
        GATEWAY_HOST, clock=clock, timing=timing, reply_timeout_s=reply_timeout_s, retries=retries
    )
    async with Fleet(clock, timing, broadcast=BROADCAST) as fleet, client:
        if not start_gateway:
            yield fleet, client
            return
        async with running(client):
            yield fleet, client


@asynccontextmanager
async def running(client: KebaClient) -> AsyncIterator[Gateway]:
    gateway = Gateway(client, settings=FAST, broadcast=BROADCAST)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        # The admin's questions reach the gateway once it listens on the channel layer.
        await asyncio.wait_for(gateway.listening.wait(), 10)
        yield gateway
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def admin_client() -> Client:
    user = User.objects.create_superuser("admin", "admin@example.com", "secret")
    client = Client()
    client.force_login(user)
    return client


async def post(client: Client, url: str, data: dict[str, Any]) -> "Response":
    response: Response = await sync_to_async(client.post)(url, data)
    return response


async def get(client: Client, url: str) -> "Response":
    response: Response = await sync_to_async(client.get)(url)
    return response


def form_errors(response: "Response", field: str) -> list[str]:
    context: Any = response.context
    return list(context["adminform"].form.errors.get(field, []))


def shown_messages(response: "Response") -> list[str]:
    context: Any = response.context
    return [str(m) for m in context["messages"]]


def stations() -> list[Station]:
    return list(Station.objects.all())


# Adding a station by its address


async def test_it_identifies_a_station_added_by_address() -> None:
    async with fleet_and_gateway() as (fleet, _):
        await fleet.add(station_address(2), "p30c", serial="22054282")
        client = await sync_to_async(admin_client)()
        response = await post(client, ADD_URL, {"name": "", "address": station_address(2)})
    assert response.status_code == 302 and response["Location"] == CHANGELIST_URL
    (station,) = await sync_to_async(stations)()
    assert station.serial == "22054282" and station.product == "KC-P30-EC240422-E00"
    assert station.name == "P30 c-series" and station.model_label == "P30 c-series"
    assert "session_log" in station.capabilities and station.firmware.startswith("P30 v 3.10")


async def test_it_shows_why_nothing_answers_and_stores_nothing() -> None:
    async with fleet_and_gateway(reply_timeout_s=0.2, retries=1):
        client = await sync_to_async(admin_client)()
        response = await post(client, ADD_URL, {"name": "Garage", "address": station_address(3)})
    assert response.status_code == 200
    (error,) = form_errors(response, "address")
    assert f"no reply from {station_address(3)}" in error and "DSW1.3" in error
    assert await sync_to_async(stations)() == []


async def test_it_says_to_switch_udp_on_for_a_station_with_udp_disabled() -> None:
    async with fleet_and_gateway() as (fleet, _):
        await fleet.add(station_address(4), "p30c", udp_enabled=False)
        client = await sync_to_async(admin_client)()
        response = await post(client, ADD_URL, {"name": "Garage", "address": station_address(4)})
    (error,) = form_errors(response, "address")
    assert "UDP interface is switched off" in error and "DSW1.3 to ON" in error
    assert await sync_to_async(stations)() == []


async def test_it_refuses_to_add_the_same_station_twice() -> None:
    async with fleet_and_gateway() as (fleet, _):
        await fleet.add(station_address(2), "p30c", serial="22054282")
        client = await sync_to_async(admin_client)()
        first = await post(client, ADD_URL, {"name": "Garage", "address": station_address(2)})
        second = await post(client, ADD_URL, {"name": "Again", "address": station_address(2)})
    assert first.status_code == 302 and second.status_code == 200
    (error,) = form_errors(second, "address")
    assert (
        "serial 22054282" in error
        and f"already registered as Garage ({station_address(2)})" in error
    )
    assert [s.name for s in await sync_to_async(stations)()] == ["Garage"]


# Discovering stations


async def test_it_discovers_a_station_in_a_network_and_adds_it_from_the_list() -> None:
    async with fleet_and_gateway() as (fleet, _):
        await fleet.add(station_address(2), "p30x", serial="31234567")
        client = await sync_to_async(admin_client)()
        found = await post(client, DISCOVER_URL, {"network": SMALL_RANGE})
        added = await post(client, DISCOVER_URL, {"name": "Carport", "address": station_address(2)})
        again = await post(client, DISCOVER_URL, {"network": SMALL_RANGE})
    page = found.content.decode()
    assert station_address(2) in page and "31234567" in page and "P30 x-series" in page
    assert 'value="Add"' in page
    assert added.status_code == 302 and added["Location"] == CHANGELIST_URL
    (station,) = await sync_to_async(stations)()
    assert station.name == "Carport" and station.serial == "31234567"
    assert f"Carport ({station_address(2)})" in again.content.decode()
    assert 'value="Add"' not in again.content.decode()


async def test_it_shows_a_bad_network_as_a_message() -> None:
    client = await sync_to_async(admin_client)()
    response = await post(client, DISCOVER_URL, {"network": "192.168.1.0/33"})
    assert response.status_code == 200
    (message,) = shown_messages(response)
    assert "'192.168.1.0/33' is not an IPv4 network" in message


# The station's page


async def test_it_shows_the_latest_status_and_recent_events_after_a_poll() -> None:
    async with fleet_and_gateway() as (fleet, _):
        emulated = await fleet.add(station_address(2), "p30c")
        station = await sync_to_async(Station.objects.create)(
            name="Garage", address=station_address(2)
        )
        emulated.plug_in(Car(max_current_a=16))
        await until_stored(lambda: Station.objects.get(pk=station.pk).state == 3)
        client = await sync_to_async(admin_client)()
        response = await get(client, f"/admin/chargers/station/{station.pk}/change/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "charging" in page and "car connected locked" in page
    assert f"{16 * 230 * 3}" in page  # power (W)
    events = await sync_to_async(lambda: [e.message for e in Event.objects.all()])()
    assert events and all(escape(message) in page for message in events)
    assert "session log" in page and "current timer" in page  # capabilities


def test_it_renders_a_station_page_without_the_gateway_and_only_the_newest_events() -> None:
    station = Station.objects.create(name="Garage", address=station_address(2))
    for n in range(25):
        Event.objects.create(station=station, kind="state", message=f"event number {n:02}")
    command = Command.objects.create(station=station, wire="curr 10000", requested_by="rule")
    response = admin_client().get(f"/admin/chargers/station/{station.pk}/change/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "event number 24" in page and "event number 05" in page
    assert "event number 04" not in page
    assert f'href="/admin/chargers/command/{command.pk}/change/">curr 10000</a>' in page
    assert "unknown" in page  # no status read yet


def test_it_saves_name_and_site_while_new_events_arrive() -> None:
    station = Station.objects.create(name="Garage", address=station_address(2))
    site = Site.objects.create(name="Home")
    for n in range(22):
        Event.objects.create(station=station, kind="state", message=f"event number {n}")
    client = admin_client()
    url = f"/admin/chargers/station/{station.pk}/change/"
    data = change_form_data(client.get(url))
    Event.objects.create(station=station, kind="online", message="answers again")
    data |= {"name": "Carport", "site": site.pk, "poll_interval_s": "20"}
    response = client.post(url, data)
    assert response.status_code == 302
    station.refresh_from_db()
    assert (station.name, station.site, station.poll_interval_s) == ("Carport", site, 20)


def change_form_data(response: "Response") -> dict[str, Any]:
    """What a browser posts back from a station's page."""
    context: Any = response.context
    form = context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields}
    data = {name: "" if value is None else value for name, value in data.items()}
    data["enabled"] = "on" if data["enabled"] else ""
    return data


# Commands


def test_it_refuses_a_command_with_a_typo_and_says_why() -> None:
    station = Station.objects.create(name="Garage", address=station_address(2))
    response = admin_client().post(
        "/admin/chargers/command/add/", {"station": station.pk, "wire": "curr 100000"}
    )
    assert response.status_code == 200
    (error,) = form_errors(response, "wire")
    assert error == "current must be 6 to 63 A (6000-63000 mA), got 100 A"
    assert not Command.objects.exists()


async def test_it_queues_a_command_that_the_gateway_then_verifies() -> None:
    async with fleet_and_gateway(start_gateway=False) as (fleet, keba):
        emulated = await fleet.add(station_address(2), "p30c")
        station = await sync_to_async(Station.objects.create)(
            name="Garage", address=station_address(2)
        )
        client = await sync_to_async(admin_client)()
        response = await post(
            client, "/admin/chargers/command/add/", {"station": station.pk, "wire": "CURR  10000"}
        )
        row = await Command.objects.aget()
        assert response.status_code == 302
        assert (row.wire, row.status, row.requested_by) == ("curr 10000", "pending", "admin")
        async with running(keba):
            await until_stored(lambda: Command.objects.get(pk=row.pk).status == "verified")
    assert emulated.user_current_ma == 10000


def test_it_links_to_discovery_from_the_station_list() -> None:
    client = admin_client()
    listing = client.get(reverse("admin:chargers_station_changelist"))
    discover = client.get(DISCOVER_URL)
    assert f'href="{DISCOVER_URL}"' in listing.content.decode()
    assert discover.status_code == 200 and 'name="network"' in discover.content.decode()


# The other lists


def test_it_normalises_a_tag_typed_with_spaces() -> None:
    response = admin_client().post(
        "/admin/chargers/tag/add/",
        {"tag": "04 a1 b2 c3 d4 e5 f6 07", "label": "Anna's card", "active": "on"},
    )
    assert response.status_code == 302
    assert Tag.objects.get().tag == "04A1B2C3D4E5F607"


def test_it_refuses_a_tag_that_is_not_hexadecimal() -> None:
    response = admin_client().post("/admin/chargers/tag/add/", {"tag": "card of Anna"})
    (error,) = form_errors(response, "tag")
    assert "must be hexadecimal" in error and not Tag.objects.exists()


def test_it_corrects_who_charged_a_session_with_search_boxes_for_card_and_owner() -> None:
    station = Station.objects.create(name="Garage", address=station_address(2))
    cards = [Tag.objects.create(tag=f"04A1B2C3{n:08X}", label=f"card {n}") for n in range(40)]
    anna = User.objects.create_user("anna", first_name="Anna")
    session = Session.objects.create(station=station, keba_session_id=7, tag=cards[0])
    client = admin_client()
    url = f"/admin/chargers/session/{session.pk}/change/"
    page = client.get(url).content.decode()
    assert 'data-field-name="tag"' in page and 'data-field-name="owner"' in page
    assert "card 39" not in page  # not one option per card: they are searched for
    assert client.post(url, {"tag": cards[39].pk, "owner": anna.pk}).status_code == 302
    session.refresh_from_db()
    assert (session.tag, session.owner) == (cards[39], anna)


@pytest.mark.parametrize(
    "model", ["station", "command", "session", "tag", "event", "reading", "site"]
)
def test_it_lists_each_kind_of_row(model: str) -> None:
    site = Site.objects.create(name="Home")
    station = Station.objects.create(name="Garage", address=station_address(2), site=site, state=2)
    Command.objects.create(station=station, wire="curr 10000")
    Session.objects.create(station=station, keba_session_id=7, started_at=timezone.now())
    Tag.objects.create(tag="04A1B2C300000000", label="Anna's card")
    Event.objects.create(station=station, kind="online", message="answers")
    Reading.objects.create(station=station, at=timezone.now(), state=2, power_w=0)
    response = admin_client().get(f"/admin/chargers/{model}/")
    assert response.status_code == 200
    context: Any = response.context
    assert context["cl"].result_count == 1
