"""Edge inputs on the sessions page, its CSV exports and the rule form: each bad
value is explained next to its field (or, for a file, in a 400 that names it),
never a 500 and never a download that does not end."""

import html
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.test import Client
from pytest_django.fixtures import Settings

from chargers import export_views, exports
from chargers.models import Rule, Session, Station
from kebaweb.asgi import application
from tests.people import person

HUGE = "99999999999999999999"  # beyond 64 bits
OUT_OF_RANGE = "choose a date from 0002-01-01 to 9998-12-31"
# East of UTC (0001-01-01 local midnight is year 0 in UTC), west of it, the
# farthest east and west today, and the zones that were over 15 h off in year 2.
ZONES = [
    "UTC",
    "Europe/Vienna",
    "America/St_Johns",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "Asia/Manila",
    "America/Metlakatla",
]
WAIT_S = 10


@pytest.fixture
def vienna(settings: Settings) -> None:
    settings.TIME_ZONE = "Europe/Vienna"


@pytest.fixture
def staff(client: Client) -> Client:
    client.force_login(person("staff"))
    return client


@pytest.fixture
def garage() -> Station:
    return Station.objects.create(name="Garage", address="192.0.2.10")


def shown_next_to(page: str, element_id: str) -> str:
    """The error in the form row (class "field") holding the input or select with this id."""
    (row,) = [row for row in page.split('class="field"')[1:] if f'id="{element_id}"' in row]
    found = re.search(r'role="alert">([^<]*)<', row.split("<button")[0])
    return html.unescape(found.group(1)) if found else ""


def filtered(client: Client, query: str) -> str:
    response = client.get(f"/sessions/?{query}")
    assert response.status_code == 200
    return response.content.decode()


# The sessions page


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ZONES)
def test_it_refuses_a_start_before_its_first_day_in_every_zone(
    staff: Client, settings: Settings, zone: str
) -> None:
    settings.TIME_ZONE = zone
    assert shown_next_to(filtered(staff, "from=0001-01-01"), "f-from") == OUT_OF_RANGE
    assert shown_next_to(filtered(staff, "from=0002-01-01"), "f-from") == ""


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ZONES)
def test_it_refuses_an_end_after_its_last_day_in_every_zone(
    staff: Client, settings: Settings, zone: str
) -> None:
    settings.TIME_ZONE = zone
    assert shown_next_to(filtered(staff, "to=9999-12-31"), "f-to") == OUT_OF_RANGE
    assert shown_next_to(filtered(staff, "to=9998-12-31"), "f-to") == ""


@pytest.mark.django_db
@pytest.mark.usefixtures("vienna")
@pytest.mark.parametrize(
    ("query", "element_id", "says"),
    [
        (f"station={HUGE}", "f-station", f"there is no station {HUGE}: choose one from the list"),
        ("station=abc", "f-station", "there is no station abc: choose one from the list"),
        ("station=123456", "f-station", "there is no station 123456: choose one from the list"),
        (f"owner={HUGE}", "f-owner", f"there is no user {HUGE}: choose one from the list"),
        (
            "from=2024-03-02&to=2024-03-01",
            "f-to",
            "the end date is before the start date: choose 2024-03-02 or later",
        ),
    ],
)
def test_it_explains_a_bad_filter_next_to_its_field(
    staff: Client, query: str, element_id: str, says: str
) -> None:
    assert shown_next_to(filtered(staff, query), element_id) == says


@pytest.mark.django_db
@pytest.mark.usefixtures("vienna")
def test_the_other_filters_still_apply_beside_a_bad_one(staff: Client, garage: Station) -> None:
    for day in (1, 2):
        Session.objects.create(
            station=garage, keba_session_id=day, started_at=datetime(2024, 3, day, 12, tzinfo=UTC)
        )
    page = filtered(staff, "from=2024-03-02&to=9999-12-31")
    assert shown_next_to(page, "f-to") == OUT_OF_RANGE
    assert "<strong>1</strong> session," in page
    assert 'value="9999-12-31"' in page


# The CSV exports: the same form, a 400 in plain text


@pytest.mark.django_db
@pytest.mark.usefixtures("vienna")
@pytest.mark.parametrize("path", ["/sessions/export.csv", "/sessions/totals.csv"])
@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("to=9999-12-31", f"to: {OUT_OF_RANGE}"),
        ("from=0001-01-01", f"from: {OUT_OF_RANGE}"),
        (f"station={HUGE}", f"station: there is no station {HUGE}: choose one from the list"),
    ],
)
def test_an_export_answers_400_naming_the_field_to_fix(
    staff: Client, garage: Station, path: str, query: str, says: str
) -> None:
    response = staff.get(f"{path}?{query}")
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == says


# Through the ASGI application, as daphne serves it


def _staff_cookie() -> bytes:
    client = Client()
    client.force_login(person("staff"))
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def through_daphne(path: str) -> tuple[int, list[bytes]]:
    """What the app hands daphne for a staff user's GET: the status and every
    body message, up to the one that ends the response."""
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver"), (b"cookie", await sync_to_async(_staff_cookie)())],
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(WAIT_S)
    assert start["type"] == "http.response.start"
    bodies = []
    while True:
        message = await communicator.receive_output(WAIT_S)
        bodies.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    await communicator.wait(WAIT_S)
    return start["status"], bodies


def _sessions(count: int) -> None:
    station = Station.objects.create(name="Garage", address="192.0.2.10")
    Session.objects.bulk_create(
        Session(
            station=station,
            keba_session_id=n + 1,
            started_at=datetime(2024, 3, 1 + n, 12, tzinfo=UTC),
            energy_kwh=1.0,
        )
        for n in range(count)
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("vienna")
async def test_a_download_of_a_day_out_of_range_ends_with_a_400() -> None:
    status, bodies = await through_daphne("/sessions/export.csv?from=0001-01-01")
    assert status == 400
    assert b"".join(bodies).decode() == f"from: {OUT_OF_RANGE}"


@pytest.mark.django_db(transaction=True)
async def test_a_download_that_breaks_off_ends_with_a_line_saying_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await sync_to_async(_sessions)(3)
    row = exports.session_row

    def broken_at_the_third(session: dict[str, Any], fmt: exports.CsvFormat) -> list[str]:
        if session["keba_session_id"] == 3:
            raise ConnectionError("the database went away")
        return row(session, fmt)

    monkeypatch.setattr(exports, "session_row", broken_at_the_third)
    status, bodies = await through_daphne("/sessions/export.csv")
    lines = b"".join(bodies).decode().splitlines()
    assert status == 200
    assert len(lines) == 4  # the header, two sessions, and the last word
    assert lines[-1] == export_views.BROKEN_OFF.strip()


@pytest.mark.django_db(transaction=True)
async def test_a_download_is_sent_as_it_is_read(
    monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    await sync_to_async(_sessions)(5)
    monkeypatch.setattr(export_views, "LINES_PER_BATCH", 2, raising=False)
    status, bodies = await through_daphne("/sessions/export.csv")
    assert status == 200
    # The header and five sessions in three batches, then the closing message;
    # not a line each after reading the whole file into a list first.
    assert [body.count(b"\r\n") for body in bodies] == [2, 2, 2, 0]
    assert not [w for w in recwarn if "must consume synchronous iterators" in str(w.message)]


# The rule form


def new_rule(station_ids: list[str]) -> dict[str, object]:
    return {
        "name": "Slow",
        "kind": "current",
        "stations": station_ids,
        "current_a": "10",
        "priority": "0",
    }


@pytest.mark.django_db
@pytest.mark.usefixtures("vienna")
@pytest.mark.parametrize("station_id", [HUGE, "abc", "123456", "-1"])
def test_a_new_rule_for_a_station_no_one_has_is_refused_next_to_the_stations(
    client: Client, garage: Station, station_id: str
) -> None:
    client.force_login(person("member"))
    response = client.post("/rules/new/", new_rule([str(garage.pk), station_id]))
    assert response.status_code == 200
    page = response.content.decode()
    says = f"there is no station {station_id}: tick stations from the list"
    assert shown_next_to(page, "id_stations") == says
    assert not Rule.objects.exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("vienna")
def test_an_edited_rule_for_a_station_beyond_64_bits_is_refused_next_to_the_stations(
    client: Client, garage: Station
) -> None:
    client.force_login(person("member"))
    client.post("/rules/new/", new_rule([str(garage.pk)]))
    rule = Rule.objects.get()
    response = client.post(f"/rules/{rule.pk}/", new_rule([HUGE]))
    assert response.status_code == 200
    says = f"there is no station {HUGE}: tick stations from the list"
    assert shown_next_to(response.content.decode(), "id_stations") == says
    assert list(rule.stations.all()) == [garage]
