"""Admin lists over tables that grow for years: dated ranges and a count that stops early."""

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from chargers import admin_lists
from chargers.models import Command, Event, Reading, Session, Station
from tests.emulated import station_address

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
