"""RFID cards in the admin: spellings, owners, start/stop, and a blocked card's session stopped."""

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chargers.gateway import Gateway, GatewaySettings
from chargers.kecontact.client import KebaClient
from chargers.kecontact.emulator import Car
from chargers.models import Command, Event, Session, Station, Tag
from tests.emulated import BROADCAST, fleet_and_client, station_address, until_stored
from tests.query_counts import queries_for

CARDS = "/admin/chargers/tag/"


def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "secret"))
    return client


def add_card(client: Client, tag: str, label: str = "") -> Any:
    return client.post(f"{CARDS}add/", {"tag": tag, "label": label, "active": "on"}, follow=True)


def errors(response: Any, field: str) -> list[str]:
    return list(response.context["adminform"].form.errors.get(field, []))


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.mark.django_db
def test_it_accepts_cards_typed_with_spaces_colons_or_lower_case() -> None:
    client = admin_client()
    for typed in ("04 a1 b2 c3 d4 e5 f6 07", "05:A1:B2:C3:D4:E5:F6:07", "06a1b2c3d4e5f607"):
        add_card(client, typed)
    assert sorted(Tag.objects.values_list("tag", flat=True)) == [
        "04A1B2C3D4E5F607",
        "05A1B2C3D4E5F607",
        "06A1B2C3D4E5F607",
    ]


@pytest.mark.django_db
def test_phone_order_of_a_card_the_station_reported_finds_that_card() -> None:
    Tag.objects.create(tag="06A1B2C3D4E5F607", first_seen=datetime.now(UTC))
    response = add_card(admin_client(), "07 f6 e5 d4 c3 b2 a1 06", "Phone order")
    (error,) = errors(response, "tag")
    assert "byte-reversed" in error and "already registered" in error
    assert Tag.objects.count() == 1


@pytest.mark.django_db
def test_it_reads_phone_order_as_the_card_the_station_reported() -> None:
    Tag.objects.create(tag="06A1B2C3D4E5F607")
    spelling = Tag.understand("07 f6 e5 d4 c3 b2 a1 06")
    assert spelling.tag == "06A1B2C3D4E5F607" and "byte-reversed" in spelling.note


@pytest.mark.django_db
def test_it_says_what_it_understood_when_a_card_is_added() -> None:
    response = add_card(admin_client(), "04 a1 b2 c3 d4 e5 f6 07")
    assert "read '04 a1 b2 c3 d4 e5 f6 07' as 04A1B2C3D4E5F607" in messages_of(response)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("04 a1 b2 c3 d4 e5 f6", "8 bytes (16 hex digits), got 7 bytes"),
        ("card of Anna", "must be hexadecimal"),
    ],
)
def test_it_refuses_a_card_number_that_is_not_8_bytes_of_hex(typed: str, says: str) -> None:
    response = add_card(admin_client(), typed, "Anna's card")
    (error,) = errors(response, "tag")
    assert says in error and not Tag.objects.exists()


@pytest.mark.django_db
def test_it_refuses_a_card_already_registered_in_another_spelling() -> None:
    Tag.objects.create(tag="04A1B2C3D4E5F607", label="Anna's card")
    response = add_card(admin_client(), "04:a1:b2:c3:d4:e5:f6:07", "Ben's card")
    (error,) = errors(response, "tag")
    assert 'already registered as "Anna\'s card": edit it instead' in error
    assert Tag.objects.get().label == "Anna's card"


@pytest.mark.django_db
def test_unknown_cards_are_assigned_to_an_owner_at_once_with_their_sessions() -> None:
    client = admin_client()
    anna = User.objects.create_user("anna", first_name="Anna")
    station = Station.objects.create(name="Garage", address=station_address(2))
    seen = [
        Tag.objects.create(tag=f"0{n}A1B2C3D4E5F607", first_seen=datetime.now(UTC)) for n in (1, 2)
    ]
    Session.objects.create(
        station=station, keba_session_id=1, tag=seen[0], started_at=datetime.now(UTC)
    )
    listing = client.get(f"{CARDS}?owner=none")
    assert all(card.tag in listing.content.decode() for card in seen)
    selected = {"action": "assign_owner", "_selected_action": [card.pk for card in seen]}
    asked = client.post(CARDS, selected)
    assert "Assign" in asked.content.decode() and not Tag.objects.exclude(owner=None).exists()
    done = client.post(CARDS, selected | {"apply": "1", "owner": anna.pk}, follow=True)
    assert "2 card(s) now belong to anna." in messages_of(done)
    assert set(Tag.objects.values_list("owner__username", flat=True)) == {"anna"}
    assert Session.objects.get().owner == anna


@pytest.mark.django_db
def test_start_and_stop_with_a_card_become_command_rows() -> None:
    client = admin_client()
    station = Station.objects.create(
        name="Garage", address=station_address(2), capabilities=["remote_start"]
    )
    card = Tag.objects.create(tag="04A1B2C3D4E5F607")
    selected = {"action": "start_charging", "_selected_action": [card.pk]}
    client.post(CARDS, selected | {"apply": "1", "station": station.pk})
    nothing_running = client.post(
        CARDS, {"action": "stop_charging", "_selected_action": [card.pk]}, follow=True
    )
    assert "no session started with card 04A1B2C3D4E5F607 is running" in messages_of(
        nothing_running
    )
    Session.objects.create(
        station=station, keba_session_id=1, tag=card, started_at=datetime.now(UTC)
    )
    client.post(CARDS, {"action": "stop_charging", "_selected_action": [card.pk]})
    assert list(Command.objects.values_list("wire", flat=True)) == [
        f"start 04A1B2C3D4E5F607 {'0' * 20}",
        "stop 04A1B2C3D4E5F607",
    ]


@pytest.mark.django_db
def test_start_is_refused_on_a_station_that_cannot_do_it() -> None:
    client = admin_client()
    p20 = Station.objects.create(name="Old box", address=station_address(3), model_label="P20")
    card = Tag.objects.create(tag="04A1B2C3D4E5F607")
    response = client.post(
        CARDS,
        {
            "action": "start_charging",
            "_selected_action": [card.pk],
            "apply": "1",
            "station": p20.pk,
        },
    )
    assert "cannot start charging with a card" in response.content.decode()
    assert not Command.objects.exists()


def card_rows(page: str) -> list[tuple[str, str, str]]:
    """Each listed card as (label, sessions, energy kWh), in the order shown."""
    return re.findall(
        r'<th class="field-tag"><a [^>]*>[0-9A-F]+</a></th><td class="field-label">([^<]*)</td>'
        r'.*?<td class="field-session_count">(\d+)</td><td class="field-energy">([\d.]+)</td>',
        page,
    )


@pytest.mark.django_db
def test_the_card_list_shows_sessions_and_energy_per_card_and_sorts_by_them() -> None:
    station = Station.objects.create(name="Garage", address=station_address(2))
    cards = {
        label: Tag.objects.create(tag=f"0{n}A1B2C3D4E5F607", label=label)
        for n, label in enumerate(("Anna", "Ben", "Spare"), start=1)
    }
    for number, (label, kwh) in enumerate((("Anna", 3.5), ("Anna", 1.5), ("Ben", 7.25))):
        Session.objects.create(
            station=station, keba_session_id=number, tag=cards[label], energy_kwh=kwh
        )
    client = admin_client()
    listing = client.get(CARDS).content.decode()
    by_sessions = client.get(f"{CARDS}?o=-7").content.decode()  # the "sessions" header's link
    assert sorted(card_rows(listing)) == [
        ("Anna", "2", "5.000"),
        ("Ben", "1", "7.250"),
        ("Spare", "0", "0.000"),
    ]
    assert [label for label, _, _ in card_rows(by_sessions)] == ["Anna", "Ben", "Spare"]


@pytest.mark.django_db
def test_the_card_list_takes_as_many_queries_for_many_cards_and_sessions_as_for_one() -> None:
    station = Station.objects.create(name="Garage", address=station_address(2))
    client = admin_client()

    Tag.objects.create(tag="FF00000000000000", owner=User.objects.create_user("owner0"))
    one = queries_for(client, CARDS)
    for n in range(1, 30):
        card = Tag.objects.create(
            tag=f"{n:02X}00000000000000", owner=User.objects.create_user(f"owner{n}")
        )
        Session.objects.create(station=station, keba_session_id=n, tag=card, energy_kwh=n)
    assert queries_for(client, CARDS) == one


# A blocked card against an emulated station, over real UDP, with a real gateway.


@asynccontextmanager
async def running(client: KebaClient) -> AsyncIterator[None]:
    settings = GatewaySettings(scan_interval_s=0.2, search_interval_s=0, heartbeat_s=60)
    gateway = Gateway(client, settings=settings, broadcast=BROADCAST)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.mark.django_db(transaction=True)
async def test_a_session_started_with_a_blocked_card_is_stopped_and_the_event_says_why() -> None:
    async with fleet_and_client(speed=50) as (fleet, client):
        emulated = await fleet.add(station_address(2), "p30c")
        station = await Station.objects.acreate(
            name="Garage", address=station_address(2), poll_interval_s=5
        )
        await Tag.objects.acreate(tag="04A1B2C3D4E5F607", label="Lost card", active=False)
        async with running(client):
            await until_stored(lambda: Station.objects.get(pk=station.pk).is_online)
            emulated.plug_in(Car(max_current_a=16))
            assert emulated.present_tag("04A1B2C3D4E5F607")  # the station's own list allows it
            await until_stored(lambda: Session.objects.filter(end_reason=10).exists())
    assert emulated.session is None and emulated.history[-1].reason == 10
    stop = await Command.objects.aget(wire="stop 04A1B2C3D4E5F607")
    assert stop.requested_by == "blocked card" and stop.status in ("acknowledged", "verified")
    event = await Event.objects.aget(kind=Event.Kind.BLOCKED_CARD)
    assert "04A1B2C3D4E5F607 (Lost card) is blocked" in event.message
