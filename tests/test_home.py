"""The home page: every station's latest status, rendered on the server."""

from datetime import datetime, timedelta
from ipaddress import IPv4Address
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from chargers.demo import Demo
from chargers.models import Session, Station
from tests.emulated import station_address, wait_for
from tests.people import person

pytestmark = pytest.mark.django_db


def test_it_says_no_stations_are_configured(client: Client) -> None:
    client.force_login(person("viewer"))
    response = client.get("/")
    assert response.status_code == 200
    assert b"No stations are configured yet" in response.content


def test_it_shows_each_station_with_its_latest_status(client: Client) -> None:
    now = timezone.now()
    garage = Station.objects.create(
        name="Garage",
        address="192.0.2.10",
        model_label="P30 c-series",
        is_online=True,
        state=3,
        power_w=11040.0,
        session_energy_kwh=4.25,
        last_contact=now,
    )
    Station.objects.create(name="Carport", address="192.0.2.11", is_online=False)
    client.force_login(person("viewer"))
    Session.objects.create(
        station=garage, keba_session_id=7, started_at=now - timedelta(hours=1), energy_kwh=4.25
    )
    page = client.get("/").content.decode()
    assert "Garage" in page and "P30 c-series" in page
    assert "charging" in page and "11.0 kW" in page and "4.25 kWh" in page
    assert "Carport" in page and "offline" in page
    assert "No stations are configured yet" not in page


@pytest.mark.parametrize("hour", [3, 9, 15, 21])
async def test_the_demo_starts_with_two_cars_charging_at_any_hour(hour: int) -> None:
    zone = ZoneInfo("Europe/Vienna")
    with time_machine.travel(datetime(2025, 3, 4, hour, 30, tzinfo=zone)):
        demo = Demo(IPv4Address(station_address(2)), speed=1, seed=1, time_zone=str(zone))
        try:
            await demo.start()
            await wait_for(
                lambda: (
                    {s.serial for s in demo.stations if s.state() == 3}
                    == {"900000001", "900000003"}
                )  # the P30 c and the P30 x
            )
        finally:
            await demo.stop()
