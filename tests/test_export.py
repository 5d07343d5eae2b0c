"""Sessions as CSV: parsed back with the csv module as a spreadsheet would read them."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.http import StreamingHttpResponse
from django.test import Client, override_settings

from chargers.models import Session, Station, Tag
from chargers.roles import MEMBERS, VIEWERS
from tests.emulated import station_address

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vienna")]


@pytest.fixture
def vienna() -> object:
    with override_settings(TIME_ZONE="Europe/Vienna"):
        yield


def person(name: str, group: str | None = MEMBERS, staff: bool = False) -> User:
    user = User.objects.create_user(name, password="secret", first_name=name.title())
    user.is_staff = user.is_superuser = staff
    user.save()
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def charge(
    station: Station, card: Tag | None, start: datetime, kwh: float, **extra: object
) -> Session:
    return Session.objects.create(
        station=station,
        keba_session_id=Session.objects.filter(station=station).count() + 1,
        started_at=start,
        ended_at=start + timedelta(hours=2),
        energy_kwh=kwh,
        start_counter_kwh=1000.0,
        end_reason=1,
        tag=card,
        owner=card.owner if card else None,
        **extra,
    )


def rows(response: Any, separator: str = ",") -> list[dict[str, str]]:
    assert isinstance(response, StreamingHttpResponse)
    text = b"".join(response.streaming_content).decode("utf-8")  # type: ignore[arg-type]
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:]), delimiter=separator))


@pytest.fixture
def garage() -> Station:
    return Station.objects.create(name="Garage", address=station_address(2))


def test_it_exports_one_row_per_session_with_local_times_and_offsets(garage: Station) -> None:
    anna = person("anna", staff=True)
    card = Tag.objects.create(tag="04A1B2C3D4E5F607", label="Anna's card", owner=anna)
    # 27 Oct 2024: clocks in Vienna go back at 03:00 CEST to 02:00 CET.
    charge(
        garage,
        card,
        datetime(2024, 10, 27, 0, 30, tzinfo=UTC),
        7.5,
        cost=Decimal("2.25"),
        currency="EUR",
    )
    (row,) = rows(logged_in(anna).get("/sessions/export.csv"))
    assert row["station"] == "Garage" and row["KEBA session id"] == "1"
    assert row["start"] == "2024-10-27 02:30:00+02:00"
    assert row["end"] == "2024-10-27 03:30:00+01:00"
    assert row["duration"] == "2:00:00"
    assert (row["energy kWh"], row["meter at start kWh"], row["meter at end kWh"]) == (
        "7.500",
        "1000.000",
        "1007.500",
    )
    assert (row["card"], row["card label"], row["owner"]) == (
        "04A1B2C3D4E5F607",
        "Anna's card",
        "Anna",
    )
    assert (row["end reason"], row["cost"], row["currency"]) == ("car unplugged", "2.25", "EUR")


def test_it_writes_semicolons_and_decimal_commas_for_german_excel(garage: Station) -> None:
    charge(garage, None, datetime(2024, 3, 5, 9, tzinfo=UTC), 7.5)
    response = logged_in(person("admin", staff=True)).get(
        "/sessions/export.csv?sep=;&decimal=comma"
    )
    (row,) = rows(response, separator=";")
    assert row["energy kWh"] == "7,500"


def test_it_neutralises_labels_that_look_like_formulas(garage: Station) -> None:
    admin = person("admin", staff=True)
    for n, label in enumerate(['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)"]):
        card = Tag.objects.create(tag=f"0{n}A1B2C3D4E5F607", label=label)
        charge(garage, card, datetime(2024, 3, 5 + n, 9, tzinfo=UTC), 1)
    labels = [row["card label"] for row in rows(logged_in(admin).get("/sessions/export.csv"))]
    assert labels == ['\'=HYPERLINK("http://x")', "'+1", "'-2", "'@SUM(A1)"]


def test_it_applies_the_sessions_page_filters(garage: Station) -> None:
    carport = Station.objects.create(name="Carport", address=station_address(3))
    for day in (1, 2, 3):
        charge(garage, None, datetime(2024, 3, day, 12, tzinfo=UTC), day)
    charge(carport, None, datetime(2024, 3, 2, 12, tzinfo=UTC), 9)
    url = f"/sessions/export.csv?station={garage.pk}&from=2024-03-02&to=2024-03-02"
    (row,) = rows(logged_in(person("admin", staff=True)).get(url))
    assert (row["station"], row["energy kWh"]) == ("Garage", "2.000")


def test_it_says_what_is_wrong_with_a_filter_instead_of_exporting() -> None:
    response = logged_in(person("admin", staff=True)).get(
        "/sessions/export.csv?from=5.3.2024&sep=pipe"
    )
    text = response.content.decode()
    assert response.status_code == 400
    assert (
        "from: enter a date as YYYY-MM-DD" in text and "sep must be comma, semicolon or tab" in text
    )


def test_a_member_exports_only_the_sessions_of_their_own_cards(garage: Station) -> None:
    anna, ben = person("anna"), person("ben")
    charge(
        garage,
        Tag.objects.create(tag="04A1B2C3D4E5F607", owner=anna),
        datetime(2024, 3, 1, tzinfo=UTC),
        1,
    )
    charge(
        garage,
        Tag.objects.create(tag="05A1B2C3D4E5F607", owner=ben),
        datetime(2024, 3, 2, tzinfo=UTC),
        2,
    )
    client = logged_in(anna)
    assert [row["owner"] for row in rows(client.get("/sessions/export.csv"))] == ["Anna"]
    assert rows(client.get(f"/sessions/export.csv?owner={ben.pk}")) == []


def test_a_viewer_exports_nothing_and_a_stranger_is_sent_to_log_in() -> None:
    assert logged_in(person("vera", group=VIEWERS)).get("/sessions/export.csv").status_code == 403
    response = Client().get("/sessions/export.csv?from=2024-03-01")
    assert response.status_code == 302 and "login" in response["Location"]
    assert "next=/sessions/export.csv" in response["Location"]


def test_a_card_given_to_someone_else_keeps_its_past_sessions_with_their_owner(
    garage: Station,
) -> None:
    anna, ben = person("anna"), person("ben")
    card = Tag.objects.create(tag="04A1B2C3D4E5F607", owner=anna)
    charge(garage, card, datetime(2024, 3, 1, tzinfo=UTC), 1)
    card.owner = ben
    card.save()
    assert [row["owner"] for row in rows(logged_in(anna).get("/sessions/export.csv"))] == ["Anna"]
    assert rows(logged_in(ben).get("/sessions/export.csv")) == []


def test_it_totals_energy_and_cost_per_owner_per_local_month(garage: Station) -> None:
    anna, ben = person("anna"), person("ben")
    annas = Tag.objects.create(tag="04A1B2C3D4E5F607", owner=anna)
    bens = Tag.objects.create(tag="05A1B2C3D4E5F607", owner=ben)
    # 31 March 23:30 UTC is already 1 April in Vienna.
    charge(
        garage,
        annas,
        datetime(2024, 3, 31, 23, 30, tzinfo=UTC),
        10,
        cost=Decimal("3.00"),
        currency="EUR",
    )
    charge(
        garage,
        annas,
        datetime(2024, 4, 10, 12, tzinfo=UTC),
        5,
        cost=Decimal("1.50"),
        currency="EUR",
    )
    charge(
        garage, bens, datetime(2024, 3, 10, 12, tzinfo=UTC), 2, cost=Decimal("0.60"), currency="EUR"
    )
    charge(garage, bens, datetime(2024, 3, 11, 12, tzinfo=UTC), 1)  # not priced: no tariff
    totals = rows(logged_in(person("admin", staff=True)).get("/sessions/totals.csv"))
    found = {(row["owner"], row["month"], row["currency"]): row for row in totals}
    april = found[("Anna", "2024-04", "EUR")]
    assert (april["sessions"], april["energy kWh"], april["cost"]) == ("2", "15.000", "4.50")
    assert found[("Ben", "2024-03", "EUR")]["cost"] == "0.60"
    assert found[("Ben", "2024-03", "")]["unpriced sessions"] == "1"
    assert len(totals) == 3


def test_the_admin_action_gives_the_same_file(garage: Station) -> None:
    admin = logged_in(person("admin", staff=True))
    session = charge(garage, None, datetime(2024, 3, 5, 9, tzinfo=UTC), 7.5)
    from_admin = admin.post(
        "/admin/chargers/session/", {"action": "export_csv", "_selected_action": [session.pk]}
    )
    assert rows(from_admin) == rows(admin.get("/sessions/export.csv"))
