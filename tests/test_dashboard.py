"""The dashboard's pages and controls, as each role meets them."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.fixtures import Settings

from chargers import charts
from chargers.models import Command, Reading, Session, Site, Station, Tag
from tests.people import PASSWORD, person
from tests.query_counts import queries_for

pytestmark = pytest.mark.django_db

P30C_CAPABILITIES = [
    "meter",
    "rfid",
    "display",
    "session_log",
    "current_timer",
    "energy_limit",
    "remote_start",
    "clock",
]


def p30c(name: str = "Garage", **fields: object) -> Station:
    defaults: dict[str, object] = {
        "address": "192.0.2.10",
        "model_label": "P30 c-series",
        "capabilities": P30C_CAPABILITIES,
        "is_online": True,
        "state": 2,
        "plug": 7,
        "live_status": {"hardware_current_a": 16.0, "state": 2, "plug": 7},
    }
    return Station.objects.create(name=name, **(defaults | fields))


def logged_in(client: Client, role: str) -> Client:
    if role != "anonymous":
        client.force_login(person(role))
    return client


# Every URL pattern as anonymous, viewer, member and staff.

LOGIN = 302
WALK = {
    # path: expected status for (anonymous, none, viewer, member, staff)
    "/": (LOGIN, 403, 200, 200, 200),
    "/stations/{pk}/": (LOGIN, 403, 200, 200, 200),
    "/stations/{pk}/session/": (LOGIN, 403, 200, 200, 200),
    "/stations/{pk}/controls/": (LOGIN, 403, 403, 200, 200),
    "/stations/{pk}/control/unlock/": (LOGIN, 403, 403, 405, 405),
    "/sessions/": (LOGIN, 403, 403, 200, 200),
    "/login/": (200, 302, 302, 302, 302),
    "/admin/": (LOGIN, LOGIN, LOGIN, LOGIN, 200),
}
ROLES = ("anonymous", "none", "viewer", "member", "staff")


@pytest.mark.parametrize("role", ROLES)
def test_it_answers_every_page_as_the_role_allows(client: Client, role: str) -> None:
    station = p30c()
    logged_in(client, role)
    got = {path: client.get(path.format(pk=station.pk)).status_code for path in WALK}
    assert got == {path: codes[ROLES.index(role)] for path, codes in WALK.items()}


@pytest.mark.parametrize(
    ("role", "expected"), [("anonymous", 302), ("none", 403), ("viewer", 403), ("staff", 200)]
)
def test_only_members_and_staff_may_use_a_control(client: Client, role: str, expected: int) -> None:
    station = p30c()
    logged_in(client, role)
    response = client.post(
        f"/stations/{station.pk}/control/current/",
        {f"s{station.pk}-current-amps": "10"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == expected
    assert Command.objects.exists() == (expected == 200)


def test_the_login_page_remembers_only_when_asked(client: Client) -> None:
    person("member", "anna")
    client.post("/login/", {"username": "anna", "password": PASSWORD})
    assert client.session.get_expire_at_browser_close()
    client.post("/logout/")
    client.post("/login/", {"username": "anna", "password": PASSWORD, "remember_me": "on"})
    assert not client.session.get_expire_at_browser_close()
    assert client.get("/").status_code == 200


def test_a_wrong_password_is_said_next_to_the_form(client: Client) -> None:
    person("member", "anna")
    page = client.post("/login/", {"username": "anna", "password": "nope"}).content.decode()
    assert "Please enter a correct username and password" in page
    assert 'value="anna"' in page  # what was typed stays


def test_logging_out_takes_a_post(client: Client) -> None:
    logged_in(client, "member")
    assert client.get("/logout/").status_code == 405
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


# Controls


def control(client: Client, station: Station, name: str, **values: str) -> str:
    prefix = f"s{station.pk}-{name}-"
    data = {prefix + key: value for key, value in values.items()}
    return client.post(
        f"/stations/{station.pk}/control/{name}/", data, headers={"HX-Request": "true"}
    ).content.decode()


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        ("current", {"amps": "7.5"}, "enter whole amperes from 6 to 16 A"),
        ("current", {"amps": "20"}, "enter whole amperes from 6 to 16 A"),
        ("current", {"amps": "5"}, "enter whole amperes from 6 to 16 A"),
        ("current", {"amps": "ten"}, "Enter a number."),
        ("energy", {"kwh": "0"}, "enter more than 0"),
        ("display", {"text": "x" * 40}, "at most 23 characters"),
        ("display", {"text": "Grüße"}, "printable ASCII"),
    ],
)
def test_it_refuses_bad_input_next_to_the_field_and_sends_nothing(
    client: Client, name: str, values: dict[str, str], message: str
) -> None:
    station = p30c()
    logged_in(client, "member")
    page = control(client, station, name, **values)
    assert message in page and 'class="field-error"' in page
    assert next(iter(values.values())) in page  # what was typed stays in the field
    assert not Command.objects.exists()


def test_a_current_is_queued_as_currtime_and_shown_pending(client: Client) -> None:
    station = p30c()
    logged_in(client, "member")
    page = control(client, station, "current", amps="10")
    command = Command.objects.get()
    assert command.wire == "currtime 10000 1" and command.requested_by == "member"
    assert f'data-command="{command.pk}"' in page and "pending" in page


def test_a_p20_gets_curr_and_only_the_controls_it_has(client: Client) -> None:
    station = p30c("Carport", model_label="P20", capabilities=["meter"], address="192.0.2.11")
    logged_in(client, "member")
    control(client, station, "current", amps="10")
    assert Command.objects.get().wire == "curr 10000"
    page = client.get(f"/stations/{station.pk}/controls/").content.decode()
    assert "Current (A)" in page and "Text on the display" not in page
    assert "Energy cap for this session" not in page
    response = client.post(f"/stations/{station.pk}/control/display/", {})
    assert response.status_code == 404


def test_a_control_posted_twice_queues_one_command(client: Client) -> None:
    station = p30c()
    logged_in(client, "member")
    control(client, station, "unlock")
    control(client, station, "unlock")
    assert Command.objects.filter(wire="unlock").count() == 1


def test_a_member_starts_only_with_their_own_card(client: Client) -> None:
    station = p30c()
    member = person("member", "anna")
    other = person("member", "ben")
    own = Tag.objects.create(tag="04A1B2C3D4E5F607", label="Anna's card", owner=member)
    theirs = Tag.objects.create(tag="0011223344556677", label="Ben's card", owner=other)
    client.force_login(member)
    page = control(client, station, "authorise", card=str(theirs.pk))
    assert "Select a valid choice" in page and not Command.objects.exists()
    control(client, station, "authorise", card=str(own.pk))
    assert Command.objects.get().wire.startswith("start 04A1B2C3D4E5F607")


def test_a_phase_switch_waits_for_the_cool_down(client: Client) -> None:
    station = p30c(capabilities=[*P30C_CAPABILITIES, "phase_switch"])
    Command.objects.create(
        station=station, wire="x2 1", status=Command.Status.VERIFIED, sent_at=timezone.now()
    )
    logged_in(client, "member")
    page = control(client, station, "phases", phases="1")
    assert "one phase switch every 5 minutes" in page
    assert Command.objects.count() == 1


def test_a_viewer_sees_no_controls(client: Client) -> None:
    station = p30c()
    logged_in(client, "viewer")
    page = (
        client.get("/").content.decode() + client.get(f"/stations/{station.pk}/").content.decode()
    )
    assert "Garage" in page and "Controls" not in page and '<form class="control"' not in page


# Kiosk mode


def test_kiosk_mode_shows_the_dashboard_without_names_numbers_or_controls(
    client: Client, settings: Settings
) -> None:
    settings.PUBLIC_DASHBOARD = True
    station = p30c()
    owner = person("member", "anna")
    owner.first_name, owner.last_name = "Anna", "Berger"
    owner.save()
    tag = Tag.objects.create(tag="04A1B2C3D4E5F607", label="Anna's card", owner=owner)
    Session.objects.create(
        station=station, keba_session_id=1, started_at=timezone.now(), tag=tag, owner=owner
    )
    page = client.get("/").content.decode()
    session = client.get(f"/stations/{station.pk}/session/").content.decode()
    assert "Garage" in page and "Session since" in page
    for secret in ("192.0.2.10", "04A1B2C3D4E5F607", "Anna", "Controls"):
        assert secret not in page and secret not in session
    assert client.get(f"/stations/{station.pk}/").status_code == 302
    assert client.get("/sessions/").status_code == 302


def test_a_member_sees_the_card_and_owner_of_the_running_session(client: Client) -> None:
    station = p30c()
    owner = person("member", "anna")
    tag = Tag.objects.create(tag="04A1B2C3D4E5F607", label="Anna's card", owner=owner)
    Session.objects.create(
        station=station, keba_session_id=1, started_at=timezone.now(), tag=tag, owner=owner
    )
    client.force_login(owner)
    page = client.get("/").content.decode()
    assert "Anna&#x27;s card" in page and "anna" in page


# Cost


def test_the_dashboard_costs_the_same_queries_for_10_and_200_stations(client: Client) -> None:
    logged_in(client, "member")
    counts = []
    for total in (10, 200):
        Station.objects.bulk_create(
            Station(name=f"S{total}-{n}", capabilities=P30C_CAPABILITIES, is_online=True)
            for n in range(total - Station.objects.count())
        )
        counts.append(queries_for(client, "/"))
    assert counts[0] == counts[1]


def page_text(client: Client, url: str) -> str:
    """The page with its white space folded, as a reader sees the words."""
    return " ".join(client.get(url).content.decode().split())


def test_a_car_park_sees_its_counts_and_the_cards_a_page_at_a_time(client: Client) -> None:
    logged_in(client, "viewer")
    Station.objects.bulk_create(
        Station(
            name=f"Bay {n:02}",
            capabilities=P30C_CAPABILITIES,
            is_online=n < 28,
            state=3 if n < 5 else 2,
        )
        for n in range(30)
    )
    first, second = (page_text(client, url) for url in ("/", "/?page=2"))
    assert "30 stations: 5 charging, 28 online, 2 offline" in first
    assert first.count("<article class=") == 24 and "Bay 23" in first and "Bay 24" not in first
    assert second.count("<article class=") == 6 and "Bay 29" in second and "page 2 of 2" in second


def test_a_site_shows_only_its_own_stations(client: Client) -> None:
    logged_in(client, "viewer")
    garage, car_park = Site.objects.create(name="Garage"), Site.objects.create(name="Car park")
    p30c("Home box", site=garage)
    p30c("Bay 1", site=car_park, address="192.0.2.11")
    page = page_text(client, f"/?site={car_park.pk}")
    assert "Bay 1" in page and "Home box" not in page
    assert "1 station at Car park" in page


# Station page and sessions page


def test_the_station_page_draws_the_day_and_the_month(client: Client) -> None:
    station = p30c()
    now = timezone.now()
    Reading.objects.bulk_create(
        Reading(
            station=station,
            at=now - timedelta(minutes=10 * n),
            power_w=11000.0,
            current_1_a=16.0,
            current_2_a=16.0,
            current_3_a=15.5,
            total_energy_kwh=1000 - n * 1.8,
        )
        for n in range(12 * 6)
    )
    logged_in(client, "viewer")
    page = client.get(f"/stations/{station.pk}/").content.decode()
    assert page.count("<polyline") == 4  # power and three phases
    assert "Energy per day, last 30 days" in page
    assert "No readings in the last 24 hours" not in page


def test_members_see_their_own_sessions_with_totals(client: Client) -> None:
    station = p30c()
    anna, ben = person("member", "anna"), person("member", "ben")
    start = timezone.now() - timedelta(days=1)
    for n in range(30):
        Session.objects.create(
            station=station,
            keba_session_id=n + 1,
            started_at=start - timedelta(hours=n),
            ended_at=start - timedelta(hours=n) + timedelta(minutes=30),
            energy_kwh=2.0,
            owner=anna if n % 2 else ben,
        )
    client.force_login(anna)
    page = client.get("/sessions/").content.decode()
    assert "<strong>15</strong> sessions" in page and "30.00 kWh" in page
    assert "Page 1 of 1" in page
    bad = client.get("/sessions/?from=yesterday").content.decode()
    assert "enter a date as YYYY-MM-DD" in bad and 'value="yesterday"' in bad


def test_staff_see_all_sessions_on_pages(client: Client) -> None:
    station = p30c()
    start = timezone.now() - timedelta(days=1)
    Session.objects.bulk_create(
        Session(station=station, keba_session_id=n + 1, started_at=start - timedelta(hours=n))
        for n in range(30)
    )
    logged_in(client, "staff")
    first = client.get("/sessions/").content.decode()
    second = client.get("/sessions/?page=2").content.decode()
    assert "<strong>30</strong> sessions" in first and "Page 1 of 2" in first
    assert "Page 2 of 2" in second


def test_the_sessions_page_offers_the_stations_by_site_and_keeps_the_chosen_one(
    client: Client,
) -> None:
    garage, car_park = Site.objects.create(name="Garage"), Site.objects.create(name="Car park")
    home = p30c("Home box", site=garage)
    bay = p30c("Bay 1", site=car_park, address="192.0.2.11")
    p30c("Spare", address="192.0.2.12")
    Session.objects.create(station=bay, keba_session_id=1, started_at=timezone.now())
    logged_in(client, "staff")
    page = page_text(client, f"/sessions/?station={bay.pk}")
    assert '<optgroup label="Car park">' in page and '<optgroup label="No site">' in page
    assert f'<option value="{bay.pk}" selected>Bay 1</option>' in page
    assert f'<option value="{home.pk}">Home box</option>' in page
    assert "<strong>1</strong> session," in page


def test_a_member_is_offered_only_the_stations_of_their_own_sessions(client: Client) -> None:
    mine, other = p30c("Home box"), p30c("Neighbour", address="192.0.2.11")
    anna = person("member", "anna")
    Session.objects.create(station=mine, keba_session_id=1, owner=anna)
    Session.objects.create(station=other, keba_session_id=1)
    client.force_login(anna)
    page = client.get("/sessions/").content.decode()
    assert "Home box" in page and "Neighbour" not in page


def test_the_sessions_page_costs_the_same_queries_for_10_and_200_stations(client: Client) -> None:
    logged_in(client, "staff")
    counts = []
    for total in (10, 200):
        Station.objects.bulk_create(
            Station(name=f"S{total}-{n}") for n in range(total - Station.objects.count())
        )
        Session.objects.bulk_create(
            Session(station=station, keba_session_id=1, started_at=timezone.now())
            for station in Station.objects.filter(sessions=None)
        )
        with CaptureQueriesContext(connection) as queries:
            page = client.get("/sessions/").content.decode()
        assert f"<strong>{total}</strong> sessions" in page
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_roles_answer_for_anonymous_users() -> None:
    from chargers import roles

    nobody = AnonymousUser()
    assert not roles.can_view(nobody) and not roles.can_control(nobody)


def test_energy_per_day_is_the_meters_rise_over_each_local_day(settings: Settings) -> None:
    settings.TIME_ZONE = "Europe/Vienna"
    station = p30c()
    zone = ZoneInfo("Europe/Vienna")
    meter = [
        (datetime(2025, 3, 3, 10, 0, tzinfo=zone), 100.0),
        (datetime(2025, 3, 3, 20, 0, tzinfo=zone), 110.0),
        (datetime(2025, 3, 4, 0, 30, tzinfo=zone), 112.0),  # charged across midnight
        (datetime(2025, 3, 4, 11, 0, tzinfo=zone), 120.0),
    ]
    Reading.objects.bulk_create(
        Reading(station=station, at=at, total_energy_kwh=kwh) for at, kwh in meter
    )
    days = charts.energy_per_day(station.pk, now=datetime(2025, 3, 4, 12, 0, tzinfo=zone))
    assert [(d.day.isoformat(), d.energy_kwh) for d in days[-3:]] == [
        ("2025-03-02", 0.0),
        ("2025-03-03", 12.0),
        ("2025-03-04", 8.0),
    ]
    assert len(days) == 30


def test_the_last_day_chart_averages_readings_in_their_five_minute_slots() -> None:
    station = p30c()
    now = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
    readings = [
        (datetime(2025, 3, 4, 10, 0, 10, tzinfo=UTC), 10000.0),
        (datetime(2025, 3, 4, 10, 4, 50, tzinfo=UTC), 11000.0),  # the same slot
        (datetime(2025, 3, 4, 10, 5, 0, tzinfo=UTC), 4000.0),  # the next one
        (datetime(2025, 3, 4, 11, 59, 0, tzinfo=UTC), 7000.0),
        (datetime(2025, 3, 3, 11, 0, 0, tzinfo=UTC), 9000.0),  # over a day ago
    ]
    Reading.objects.bulk_create(
        Reading(station=station, at=at, power_w=watts, current_1_a=watts / 690)
        for at, watts in readings
    )

    power, currents = charts.last_day(station.pk, now=now)

    [(series, _)] = power.lines
    assert series.points == [
        (datetime(2025, 3, 4, 10, 0, tzinfo=UTC), 10.5),
        (datetime(2025, 3, 4, 10, 5, tzinfo=UTC), 4.0),
        (datetime(2025, 3, 4, 11, 55, tzinfo=UTC), 7.0),
    ]
    assert [round(amps, 1) for _, amps in currents.lines[0][0].points] == [15.2, 5.8, 10.1]


def test_the_last_day_chart_works_with_every_query_logged(settings: Settings) -> None:
    # DEBUG keeps each query's text, formatting it with its parameters.
    station = p30c()
    Reading.objects.create(station=station, at=timezone.now(), power_w=1000.0)
    connection.force_debug_cursor = True
    try:
        power, _ = charts.last_day(station.pk)
    finally:
        connection.force_debug_cursor = False
    assert len(power.lines[0][0].points) == 1
