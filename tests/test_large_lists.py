"""Admin lists over tables that grow for years (dated ranges and a count that stops early)
and over a car park's many stations (a sidebar that stays short, a search by name)."""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from chargers import admin_lists
from chargers.models import Command, Event, Reading, Session, Site, Station
from tests.emulated import station_address
from tests.query_counts import queries_at_sizes

pytestmark = pytest.mark.django_db


def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.org", "pw"))
    return client


def garage() -> Station:
    return Station.objects.create(name="Garage", address=station_address(2))


def test_it_says_more_than_the_cap_instead_of_counting_every_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admin_lists, "COUNT_CAP", 3)
    station, now = garage(), timezone.now()
    Reading.objects.bulk_create(
        Reading(station=station, at=now - timedelta(minutes=n), power_w=n) for n in range(5)
    )
    page = admin_client().get("/admin/chargers/reading/").content.decode()
    assert "more than 3 readings" in page
    assert "5 readings" not in page


def test_it_counts_exactly_below_the_cap() -> None:
    station, now = garage(), timezone.now()
    Reading.objects.bulk_create(Reading(station=station, at=now, power_w=n) for n in range(2))
    response = admin_client().get("/admin/chargers/reading/")
    assert "2 readings" in response.content.decode()


@pytest.mark.parametrize(
    ("model", "field"),
    [("reading", "at"), ("event", "at"), ("session", "started_at"), ("command", "created_at")],
)
def test_it_narrows_a_list_to_the_last_seven_days(model: str, field: str) -> None:
    station, now = garage(), timezone.now()
    for age_days, label in ((1, "recent"), (40, "old")):
        at = now - timedelta(days=age_days)
        power = 1.0 if label == "recent" else 2.0
        Reading.objects.create(station=station, at=at, power_w=power)
        Event.objects.create(station=station, at=at, kind="state", message=label)
        Session.objects.create(station=station, keba_session_id=age_days, started_at=at)
        Command.objects.create(station=station, wire="curr 10000", created_at=at)
    client = admin_client()
    listing = client.get(f"/admin/chargers/{model}/")
    # The filter's own link, as a person clicks it.
    context: Any = listing.context
    specs = context["cl"].filter_specs
    (dated,) = [f for f in specs if getattr(f, "field_path", None) == field]
    week = next(c for c in dated.choices(context["cl"]) if c["display"] == "Past 7 days")
    assert week["query_string"] in listing.content.decode().replace("&amp;", "&")
    narrowed: Any = client.get(f"/admin/chargers/{model}/{week['query_string']}")
    assert context["cl"].result_count == 2
    assert narrowed.status_code == 200
    assert narrowed.context["cl"].result_count == 1


# A car park's many stations


def car_park(count: int) -> list[Station]:
    """`count` bays on two levels, each with one row of every kind."""
    levels = [Site.objects.create(name="Level 1"), Site.objects.create(name="Level 2")]
    bays = Station.objects.bulk_create(
        Station(name=f"Bay {n:02}", address=f"192.0.2.{100 + n}", site=levels[n % 2])
        for n in range(count)
    )
    now = timezone.now()
    for bay in bays:
        Reading.objects.create(station=bay, at=now, power_w=0)
        Event.objects.create(station=bay, at=now, kind="state", message=f"{bay.name} charging")
        Session.objects.create(station=bay, keba_session_id=1, started_at=now)
        Command.objects.create(station=bay, wire="curr 10000", created_at=now)
    return bays


def station_links(page: str) -> int:
    return page.count("station__id__exact=")


MODELS = ["reading", "event", "session", "command"]


@pytest.mark.parametrize("model", MODELS)
def test_the_sidebar_lists_a_households_stations(model: str) -> None:
    car_park(3)
    page = admin_client().get(f"/admin/chargers/{model}/").content.decode()
    assert station_links(page) == 3 and "Bay 02 (192.0.2.102)" in page
    assert "Too many stations to list" not in page


@pytest.mark.parametrize("model", MODELS)
def test_a_car_parks_sidebar_offers_the_site_and_the_search_box_instead_of_40_stations(
    model: str,
) -> None:
    car_park(40)
    page = admin_client().get(f"/admin/chargers/{model}/").content.decode()
    assert station_links(page) == 0 and "Too many stations to list" in page
    assert "station__site__id__exact=" in page and ">Level 2</a>" in page
    assert 'id="searchbar"' in page


@pytest.mark.parametrize("model", MODELS)
def test_a_link_to_one_stations_rows_still_narrows_the_list_and_names_it(model: str) -> None:
    bays = car_park(40)
    response: Any = admin_client().get(f"/admin/chargers/{model}/?station__id__exact={bays[7].pk}")
    page = response.content.decode()
    assert response.context["cl"].result_count == 1
    chosen = rf'<li class="selected">\s*<a href="\?station__id__exact={bays[7].pk}">Bay 07'
    assert re.search(chosen, page) and "Bay 08" not in page


@pytest.mark.parametrize("model", MODELS)
def test_the_search_box_and_the_site_filter_find_a_car_parks_rows(model: str) -> None:
    bays = car_park(40)
    client = admin_client()
    named: Any = client.get(f"/admin/chargers/{model}/", {"q": "bay 07"})
    nobody: Any = client.get(f"/admin/chargers/{model}/", {"q": "Bay 99"})
    level: Any = client.get(f"/admin/chargers/{model}/?station__site__id__exact={bays[1].site_id}")
    assert [row.station for row in named.context["cl"].result_list] == [bays[7]]
    assert nobody.context["cl"].result_count == 0
    assert level.context["cl"].result_count == 20


def test_the_event_search_still_finds_words_of_a_message() -> None:
    (bay, *_) = car_park(3)
    Event.objects.create(station=bay, kind="online", message="answers again")
    found: Any = admin_client().get("/admin/chargers/event/", {"q": "answers again"})
    assert [e.message for e in found.context["cl"].result_list] == ["answers again"]


@pytest.mark.parametrize("model", MODELS)
def test_a_list_takes_as_many_queries_for_40_stations_as_for_4(model: str) -> None:
    counts = queries_at_sizes(admin_client(), f"/admin/chargers/{model}/", car_park)
    assert counts[0] == counts[1]
