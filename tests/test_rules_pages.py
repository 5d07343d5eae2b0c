"""Rule pages: members list, create, edit, pause and delete rules; bad input is
explained next to its field and nothing is stored; each station shows its week."""

import zoneinfo
from datetime import datetime, time

import pytest
import time_machine
from django.test import Client
from django_q.models import Schedule
from pytest_django.fixtures import Settings

from chargers.models import Fallback, Override, Rule, Session, Site, Station
from chargers.rules import explain_now
from tests.people import person
from tests.query_counts import queries_at_sizes

pytestmark = pytest.mark.django_db

VIENNA = zoneinfo.ZoneInfo("Europe/Vienna")


@pytest.fixture(autouse=True)
def _household_time_zone(settings: Settings) -> None:
    settings.TIME_ZONE = "Europe/Vienna"


@pytest.fixture
def garage() -> Station:
    return Station.objects.create(name="Garage", address="192.0.2.10", poll_interval_s=10)


@pytest.fixture
def member(client: Client) -> Client:
    client.force_login(person("member"))
    return client


def day_limit(station: Station, **changes: object) -> dict[str, object]:
    form: dict[str, object] = {
        "name": "Slow by day",
        "kind": "current",
        "stations": [station.pk],
        "weekdays": ["0", "1", "2", "3", "4"],
        "starts_at": "07:00",
        "ends_at": "22:00",
        "current_a": "10",
        "priority": "0",
    }
    return form | changes


def errors_of(response: object, field: str) -> list[str]:
    form = response.context["form"]  # type: ignore[attr-defined]
    return list(form.errors.get(field, []))


def test_a_member_creates_a_rule_and_sees_it_listed(member: Client, garage: Station) -> None:
    response = member.post("/rules/new/", day_limit(garage))
    assert response.status_code == 302
    rule = Rule.objects.get()
    assert list(rule.stations.all()) == [garage] and rule.weekdays == [0, 1, 2, 3, 4]
    page = member.get("/rules/").content.decode()
    assert "Slow by day" in page and "10 A" in page and "07:00-22:00" in page
    assert Schedule.objects.filter(name=f"Rule boundary: rule #{rule.pk}").exists()


def test_the_same_form_posted_twice_stores_one_rule(member: Client, garage: Station) -> None:
    member.post("/rules/new/", day_limit(garage))
    again = member.post("/rules/new/", day_limit(garage))
    assert again.status_code == 200 and Rule.objects.count() == 1
    assert "same priority" in errors_of(again, "priority")[0]


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"ends_at": "07:00"}, "ends_at", "the end equals the start"),
        ({"current_a": "40"}, "current_a", "from 6 to 32 A"),
        ({"current_a": "4"}, "current_a", "from 6 to 32 A"),
        ({"kind": "session cap", "energy_kwh": "0"}, "energy_kwh", "a cap of 0 kWh"),
        ({"stations": []}, "stations", "choose at least one station"),
        ({"kind": "window", "ends_at": ""}, "ends_at", "needs a start and an end"),
    ],
)
def test_bad_input_is_explained_next_to_its_field_and_nothing_is_stored(
    member: Client, garage: Station, changes: dict[str, object], field: str, says: str
) -> None:
    response = member.post("/rules/new/", day_limit(garage, **changes))
    assert response.status_code == 200
    assert any(says in error for error in errors_of(response, field))
    assert says in response.content.decode()
    assert not Rule.objects.exists()


def test_overlapping_rules_of_equal_priority_on_one_station_are_refused(
    member: Client, garage: Station
) -> None:
    member.post("/rules/new/", day_limit(garage))
    evening = day_limit(garage, name="Evening", starts_at="20:00", ends_at="23:00")
    refused = member.post("/rules/new/", evening)
    assert "overlaps Slow by day" in errors_of(refused, "priority")[0]
    higher = member.post("/rules/new/", evening | {"priority": "1"})
    weekend = member.post("/rules/new/", evening | {"name": "Weekend", "weekdays": ["5", "6"]})
    assert higher.status_code == weekend.status_code == 302
    assert Rule.objects.count() == 3


def test_a_member_edits_pauses_resumes_and_deletes_a_rule(member: Client, garage: Station) -> None:
    member.post("/rules/new/", day_limit(garage))
    rule = Rule.objects.get()
    member.post(f"/rules/{rule.pk}/", day_limit(garage, current_a="12"))
    member.post(f"/rules/{rule.pk}/pause/", {"action": "pause"})
    member.post(f"/rules/{rule.pk}/pause/", {"action": "pause"})  # twice: still paused
    rule.refresh_from_db()
    assert rule.current_a == 12 and rule.paused
    assert not Schedule.objects.filter(name__startswith="Rule boundary").exists()
    member.post(f"/rules/{rule.pk}/pause/", {"action": "resume"})
    rule.refresh_from_db()
    assert not rule.paused
    assert member.post(f"/rules/{rule.pk}/delete/").status_code == 302
    twice = member.post(f"/rules/{rule.pk}/delete/", follow=True)
    assert "already deleted" in twice.content.decode() and not Rule.objects.exists()


def test_viewers_cannot_change_rules(client: Client, garage: Station) -> None:
    client.force_login(person("viewer"))
    assert client.post("/rules/new/", day_limit(garage)).status_code == 403
    assert client.get("/rules/").status_code == 403
    assert not Rule.objects.exists()


def test_the_station_page_previews_the_week_from_the_same_rules(
    member: Client, garage: Station
) -> None:
    member.post("/rules/new/", day_limit(garage))
    member.post(
        "/rules/new/",
        {
            "name": "Off-peak",
            "kind": "window",
            "stations": [garage.pk],
            "starts_at": "22:00",
            "ends_at": "06:00",
            "priority": "0",
        },
    )
    with time_machine.travel(datetime(2025, 6, 4, 12, 0, tzinfo=VIENNA), tick=False):
        page = member.get(f"/rules/station/{garage.pk}/").content.decode()
        said = explain_now(garage)
    assert "Charging off" in said and "outside the charging window 22:00-06:00" in said
    assert "until 22:00" in said and said in page
    assert "<svg" in page and page.count("<rect") >= 7
    assert "Wed 4 Jun 22:00" in page  # the window opens tonight


def test_the_dashboard_sentence_names_the_rule_and_when_it_ends(garage: Station) -> None:
    rule = Rule.objects.create(
        name="Slow by day", kind="current", starts_at=time(7), ends_at=time(22), current_a=10
    )
    rule.stations.add(garage)
    with time_machine.travel(datetime(2025, 6, 4, 12, 0, tzinfo=VIENNA), tick=False):
        assert explain_now(garage) == (
            "At most 10 A: rule “Slow by day”: at most 10 A, 07:00-22:00, until 22:00."
        )
    with time_machine.travel(datetime(2025, 6, 4, 23, 0, tzinfo=VIENNA), tick=False):
        assert explain_now(garage) == "No rule limits this station now."


def test_an_override_until_unplugged_needs_a_car(member: Client, garage: Station) -> None:
    refused = member.post(f"/rules/station/{garage.pk}/override/", {"kind": "full speed"})
    assert refused.status_code == 400 and "no car is plugged in" in refused.content.decode()
    garage.plug = 7
    garage.save()
    session = Session.objects.create(station=garage, keba_session_id=1)
    member.post(f"/rules/station/{garage.pk}/override/", {"kind": "full speed"})
    override = Override.objects.get()
    assert override.session == session and override.until is None
    page = member.get(f"/rules/station/{garage.pk}/").content.decode()
    assert "until the car is unplugged" in page


def test_the_safe_fallback_is_explained_and_checked(member: Client, garage: Station) -> None:
    url = f"/rules/station/{garage.pk}/fallback/"
    short = member.post(url, {"enabled": "on", "timeout_s": "20", "current_a": "6"})
    assert short.status_code == 400 and "at least 30 s" in short.content.decode()
    wrong = member.post(url, {"enabled": "on", "timeout_s": "60", "current_a": "3"})
    assert "0 (stop charging) or 6 to 32 A" in wrong.content.decode()
    assert not Fallback.objects.exists()
    member.post(url, {"enabled": "on", "timeout_s": "60", "current_a": "6"})
    member.post(url, {"enabled": "on", "timeout_s": "60", "current_a": "6"})  # twice: one row
    assert Fallback.objects.count() == 1
    page = member.get(f"/rules/station/{garage.pk}/").content.decode()
    assert "for 60 s" in page and "falls back to 6 A by itself" in page


def test_staff_see_rules_and_their_schedules_in_the_admin(client: Client, garage: Station) -> None:
    rule = Rule.objects.create(
        name="Slow by day", kind="current", starts_at=time(7), ends_at=time(22), current_a=10
    )
    rule.stations.add(garage)
    admin = person("staff", "admin")
    admin.is_superuser = True
    admin.save()
    client.force_login(admin)
    assert "Slow by day" in client.get("/admin/chargers/rule/").content.decode()
    schedules = client.get("/admin/django_q/schedule/").content.decode()
    assert f"Rule boundary: rule #{rule.pk}" in schedules


# A car park: hundreds of stations


def car_park(count: int = 40) -> list[Station]:
    sites = [Site.objects.create(name="Level 1"), Site.objects.create(name="Level 2")]
    return Station.objects.bulk_create(
        Station(name=f"Bay {n:02}", address=f"192.0.2.{100 + n}", site=sites[n % 2])
        for n in range(count)
    )


def superuser(client: Client) -> Client:
    admin = person("staff", "admin")
    admin.is_superuser = True
    admin.save()
    client.force_login(admin)
    return client


def test_a_car_park_finds_the_station_to_preview_by_name(member: Client) -> None:
    car_park()
    listing = member.get("/rules/").content.decode()
    found = member.get("/rules/?station=bay 07").content.decode()
    assert listing.count('href="/rules/station/') == 0 and 'name="station"' in listing
    assert found.count('href="/rules/station/') == 1 and ">Bay 07</a>" in found


def test_a_household_sees_a_link_per_station_to_preview(member: Client, garage: Station) -> None:
    listing = member.get("/rules/").content.decode()
    assert f'href="/rules/station/{garage.pk}/">Garage</a>' in listing
    assert 'name="station"' not in listing


def test_the_rule_form_folds_a_car_parks_stations_by_site_and_opens_the_chosen(
    member: Client,
) -> None:
    bays = car_park()
    empty = " ".join(member.get("/rules/new/").content.decode().split())
    assert "<details><summary>Level 1 (20 stations)</summary>" in empty
    assert empty.count('type="checkbox" name="stations"') == 40
    member.post("/rules/new/", day_limit(bays[3]))
    rule = Rule.objects.get()
    editing = " ".join(member.get(f"/rules/{rule.pk}/").content.decode().split())
    assert "<details open><summary>Level 2 (20 stations, 1 chosen)</summary>" in editing
    assert f'value="{bays[3].pk}" checked> Bay 03 (192.0.2.103)' in editing
    assert list(rule.stations.all()) == [bays[3]]


@pytest.mark.parametrize("url", ["/rules/", "/rules/new/", "/rules/?station=Bay"])
def test_the_rule_pages_cost_the_same_queries_for_4_and_40_stations(
    member: Client, url: str
) -> None:
    counts = queries_at_sizes(member, url, car_park)
    assert counts[0] == counts[1]


def test_staff_choose_a_rules_stations_in_the_admin_with_a_search_box(client: Client) -> None:
    bays = car_park()
    superuser(client)
    page = client.get("/admin/chargers/rule/add/").content.decode()
    assert "admin-autocomplete" in page and "Bay 07" not in page
    found = client.get(
        "/admin/autocomplete/",
        {"term": "Bay 07", "app_label": "chargers", "model_name": "rule", "field_name": "stations"},
    ).json()
    assert [r["text"] for r in found["results"]] == ["Bay 07 (192.0.2.107)"]
    data = day_limit(bays[7]) | {"stations": [bays[7].pk, bays[8].pk]}
    assert client.post("/admin/chargers/rule/add/", data).status_code == 302
    assert set(Rule.objects.get().stations.all()) == {bays[7], bays[8]}


@pytest.mark.parametrize(
    ("model", "data"),
    [
        ("override", {"kind": "full speed", "created_at_0": "2025-06-04", "created_at_1": "12:00"}),
        ("fallback", {"enabled": "on", "timeout_s": "60", "current_a": "6"}),
    ],
)
def test_staff_choose_the_station_of_an_override_or_fallback_with_a_search_box(
    client: Client, model: str, data: dict[str, str]
) -> None:
    bays = car_park()
    superuser(client)
    page = client.get(f"/admin/chargers/{model}/add/").content.decode()
    assert "admin-autocomplete" in page and "Bay 07" not in page
    saved = client.post(f"/admin/chargers/{model}/add/", data | {"station": bays[7].pk})
    assert saved.status_code == 302
    stored = Override.objects.get() if model == "override" else Fallback.objects.get()
    assert stored.station == bays[7]
