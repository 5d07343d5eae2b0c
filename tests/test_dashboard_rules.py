"""The dashboard card meets the rules: which rule limits a station and until when, and
overrides made from the card (issue 11), as each role sees them."""

import zoneinfo
from collections.abc import Iterator
from datetime import datetime, time

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.fixtures import Settings

from chargers import live
from chargers.models import Override, Rule, Session, Site, Station
from tests.people import person
from tests.test_dashboard import P30C_CAPABILITIES, p30c
from tests.test_live import frame, socket

pytestmark = pytest.mark.django_db

VIENNA = zoneinfo.ZoneInfo("Europe/Vienna")
NOON = datetime(2025, 6, 4, 12, 0, tzinfo=VIENNA)  # a Wednesday


@pytest.fixture(autouse=True)
def _household_at_noon(settings: Settings) -> Iterator[None]:
    settings.TIME_ZONE = "Europe/Vienna"
    with time_machine.travel(NOON, tick=False):
        yield


def day_rule(station: Station, **fields: object) -> Rule:
    defaults: dict[str, object] = {
        "name": "Day",
        "kind": "current",
        "starts_at": time(7),
        "ends_at": time(22),
        "current_a": 10,
    }
    rule = Rule.objects.create(**(defaults | fields))
    rule.stations.add(station)
    return rule


def charging(name: str = "Garage", address: str = "192.0.2.10", timer_a: float = 10.0) -> Station:
    """A station charging a car at the limit the gateway set (`Curr timer`)."""
    live_status = {
        "state": 3,
        "plug": 7,
        "enabled_user": True,
        "hardware_current_a": 16.0,
        "timer_current_a": timer_a,
    }
    return p30c(name, address=address, state=3, plug=7, live_status=live_status)


def member(client: Client) -> Client:
    client.force_login(person("member"))
    return client


def htmx(client: Client, path: str, data: dict[str, str] | None = None) -> str:
    response = client.post(path, data or {}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    return response.content.decode()


def test_the_card_names_the_rule_that_limits_the_station_and_until_when(client: Client) -> None:
    station = charging()
    day_rule(station)
    page = member(client).get("/").content.decode()
    # The station's 10 A is the rule's, not a manual setting, and the card says until when.
    assert "rule “Day”: at most 10 A, 07:00-22:00, until 22:00" in page
    assert "manual setting" not in page
    assert "At most 10 A: rule “Day”" in page


def test_a_closed_charging_window_says_charging_is_off_until_it_opens(client: Client) -> None:
    station = p30c(live_status={"state": 5, "plug": 7, "enabled_user": False})
    day_rule(station, name="Off-peak", kind="window", starts_at=time(22), ends_at=time(6))
    page = member(client).get("/").content.decode()
    assert "Charging off: rule “Off-peak”: outside the charging window 22:00-06:00" in page
    assert "until 22:00" in page and "charging disabled by a manual setting" not in page


def test_a_station_without_rules_keeps_its_manual_setting(client: Client) -> None:
    charging()
    page = member(client).get("/").content.decode()
    assert "manual setting" in page and "rule “" not in page


def test_a_member_sets_full_speed_until_unplugged_from_the_card(client: Client) -> None:
    station = charging()
    day_rule(station)
    running = Session.objects.create(station=station, keba_session_id=1, started_at=timezone.now())
    reply = htmx(member(client), f"/stations/{station.pk}/override/full-speed/")
    override = Override.objects.get()
    assert (override.kind, override.until, override.session) == ("full speed", None, running)
    assert "Override set" in reply and 'hx-swap-oob="true"' in reply  # the card's line too
    page = client.get("/").content.decode()
    assert "Override “full speed” by member, until the car is unplugged." in page
    assert "End override" in page
    # Beaten by the override, the rule no longer explains the card.
    assert "At most 10 A: rule “Day”" not in page


def test_an_override_posted_twice_is_one_override(client: Client) -> None:
    station = charging()
    day_rule(station)
    Session.objects.create(station=station, keba_session_id=1, started_at=timezone.now())
    member(client)
    for _ in range(2):
        htmx(
            client,
            f"/stations/{station.pk}/override/pause/",
            {f"s{station.pk}-override-pause-until": "06:00"},
        )
    assert Override.objects.filter(ended_at=None).count() == 1


def test_pause_until_a_time_lasts_until_that_time_tomorrow(client: Client) -> None:
    station = charging()
    day_rule(station)
    member(client)
    htmx(
        client,
        f"/stations/{station.pk}/override/pause/",
        {f"s{station.pk}-override-pause-until": "06:00"},
    )
    override = Override.objects.get()
    assert override.until == datetime(2025, 6, 5, 6, 0, tzinfo=VIENNA)
    assert "Override “paused” by member, until Thu 06:00." in client.get("/").content.decode()


def test_a_new_override_ends_the_one_before(client: Client) -> None:
    station = charging()
    day_rule(station)
    Session.objects.create(station=station, keba_session_id=1, started_at=timezone.now())
    member(client)
    htmx(client, f"/stations/{station.pk}/override/full-speed/")
    htmx(
        client,
        f"/stations/{station.pk}/override/current/",
        {f"s{station.pk}-override-current-current_a": "12"},
    )
    in_force = Override.objects.get(ended_at=None)
    assert (in_force.kind, in_force.current_a) == ("current", 12)
    assert "Override “12 A” by member" in client.get("/").content.decode()


def test_bad_override_input_is_refused_next_to_the_field(client: Client) -> None:
    station = charging()
    day_rule(station)
    member(client)
    no_car = htmx(client, f"/stations/{station.pk}/override/full-speed/")
    too_much = htmx(
        client,
        f"/stations/{station.pk}/override/current/",
        {
            f"s{station.pk}-override-current-current_a": "40",
            f"s{station.pk}-override-current-until": "06:00",
        },
    )
    assert "no car is plugged in, so nothing marks its end" in no_car
    assert f'id="id_s{station.pk}-override-current-current_a-error"' in too_much
    assert "enter whole amperes from 6 to 32 A" in too_much
    assert not Override.objects.exists()


def test_ending_the_override_hands_the_station_back_to_the_rules(client: Client) -> None:
    station = charging()
    day_rule(station)
    Session.objects.create(station=station, keba_session_id=1, started_at=timezone.now())
    member(client)
    htmx(client, f"/stations/{station.pk}/override/full-speed/")
    row = htmx(client, f"/stations/{station.pk}/override/end/")
    assert "hidden" in row and "full speed" not in row
    assert Override.objects.get().ended_at is not None
    htmx(client, f"/stations/{station.pk}/override/end/")  # posted twice: nothing more happens
    page = client.get("/").content.decode()
    assert "At most 10 A: rule “Day”" in page and "Override “" not in page


def test_a_ruled_station_offers_overrides_in_place_of_plain_settings(client: Client) -> None:
    ruled, free = charging("Garage"), charging("Carport", "192.0.2.11")
    day_rule(ruled)
    member(client)
    ruled_controls = client.get(f"/stations/{ruled.pk}/controls/").content.decode()
    free_controls = client.get(f"/stations/{free.pk}/controls/").content.decode()
    assert "Full speed until unplugged" in ruled_controls and "Pause charging" in ruled_controls
    assert f"/stations/{ruled.pk}/control/current/" not in ruled_controls
    assert f"/stations/{ruled.pk}/control/enable/" not in ruled_controls
    assert f"/stations/{ruled.pk}/control/display/" in ruled_controls  # the rest stays
    assert f"/stations/{free.pk}/control/current/" in free_controls
    assert "override/" not in free_controls


def test_a_viewer_may_neither_set_nor_end_an_override(client: Client) -> None:
    station = charging()
    day_rule(station)
    Session.objects.create(station=station, keba_session_id=1, started_at=timezone.now())
    client.force_login(person("viewer"))
    assert client.post(f"/stations/{station.pk}/override/full-speed/").status_code == 403
    assert client.post(f"/stations/{station.pk}/override/end/").status_code == 403
    assert not Override.objects.exists()


def test_kiosk_mode_shows_nothing_of_an_override(client: Client, settings: Settings) -> None:
    settings.PUBLIC_DASHBOARD = True
    station = charging()
    day_rule(station)
    who = person("member", "anna")
    Override.objects.create(
        station=station, kind="full speed", until=timezone.now().replace(hour=23), created_by=who
    )
    page = client.get("/").content.decode()
    assert "Garage" in page
    for secret in ("anna", "Override", "full speed"):
        assert secret not in page


@pytest.mark.django_db(transaction=True)
async def test_kiosk_sockets_get_no_override(settings: Settings) -> None:
    settings.PUBLIC_DASHBOARD = True
    async with socket(None) as (connected, ws):
        assert connected
        await live.publish_status(
            7, {"rule_text": "", "override_id": 3, "override_text": "by anna"}
        )
        assert await frame(ws) == {"type": "status", "station": 7, "rule_text": ""}


def test_the_dashboard_with_rules_costs_the_same_queries_for_10_and_200_stations(
    client: Client,
) -> None:
    site = Site.objects.create(name="Home")
    owner = person("member", "anna")
    Rule.objects.create(
        name="Day", kind="current", site=site, starts_at=time(7), ends_at=time(22), current_a=10
    )
    Rule.objects.create(name="Daily", kind="daily cap", site=site, energy_kwh=20)
    Rule.objects.create(name="Anna's week", kind="weekly cap", card_owner=owner, energy_kwh=60)
    member(client)
    counts = []
    for total in (10, 200):
        added = Station.objects.bulk_create(
            Station(
                name=f"S{total}-{n}",
                capabilities=P30C_CAPABILITIES,
                is_online=True,
                site=site,
                plug=7,
                session_energy_kwh=1.5,
            )
            for n in range(total - Station.objects.count())
        )
        for n, station in enumerate(added):
            session = Session.objects.create(
                station=station, keba_session_id=1, started_at=timezone.now(), owner=owner
            )
            if n % 2:
                Override.objects.create(station=station, kind="full speed", session=session)
        with CaptureQueriesContext(connection) as queries:
            page = client.get("/").content.decode()
        counts.append(len(queries))
        assert "Override “full speed”" in page and "rule “Day”" in page
    assert counts[0] == counts[1]
