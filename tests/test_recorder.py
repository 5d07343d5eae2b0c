"""Batched writes of what polls observe."""

from datetime import UTC, datetime, timedelta

import pytest

from chargers import recorder
from chargers.kecontact.codec import ChargingState, PlugState, Report2, Report3
from chargers.models import Reading, Session, Station
from tests.emulated import station_address

pytestmark = pytest.mark.django_db

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CHARGING = Report2(state=ChargingState.CHARGING, plug=PlugState.CAR_CONNECTED_LOCKED)
METER = Report3(power_w=11040.0, session_energy_kwh=1.5, total_energy_kwh=100.0)


def station(name: str, address: str) -> Station:
    return Station.objects.create(name=name, address=address)


def test_it_stores_a_reading_on_change_and_at_the_heartbeat_only() -> None:
    garage = station("Garage", station_address(2))
    keeper = recorder.Recorder(heartbeat_s=300)
    for seconds in range(0, 600, 5):  # ten minutes of the same status
        keeper.observe(garage.pk, CHARGING, METER, AT + timedelta(seconds=seconds))
    recorder.write(keeper.take())
    times = list(Reading.objects.order_by("at").values_list("at", flat=True))
    assert times == [AT, AT + timedelta(seconds=300)]
    garage.refresh_from_db()
    assert garage.last_contact == AT + timedelta(seconds=595)
    assert garage.state == 3 and garage.power_w == 11040.0


def test_only_the_running_session_takes_the_meters_energy() -> None:
    garage = station("Garage", station_address(2))
    stale = Session.objects.create(station=garage, keba_session_id=1, started_at=AT, energy_kwh=4.0)
    running = Session.objects.create(
        station=garage, keba_session_id=2, started_at=AT + timedelta(hours=1)
    )
    keeper = recorder.Recorder(heartbeat_s=300)
    keeper.observe(garage.pk, CHARGING, METER, AT + timedelta(hours=2), running.pk)
    recorder.write(keeper.take())
    stale.refresh_from_db()
    running.refresh_from_db()
    assert (stale.energy_kwh, running.energy_kwh) == (4.0, 1.5)


def test_it_keeps_a_batch_it_could_not_write_for_the_next_flush() -> None:
    garage = station("Garage", station_address(2))
    keeper = recorder.Recorder(heartbeat_s=300)
    keeper.observe(garage.pk, CHARGING, METER, AT)
    failed = keeper.take()
    keeper.observe(garage.pk, Report2(state=ChargingState.READY), METER, AT + timedelta(minutes=1))
    keeper.put_back(failed)
    recorder.write(keeper.take())
    states = list(Reading.objects.order_by("at").values_list("state", flat=True))
    assert states == [3, 2]
    garage.refresh_from_db()
    assert garage.state == 2  # the newer observation wins


def test_a_deleted_station_does_not_block_the_others() -> None:
    garage, carport = station("Garage", station_address(2)), station("Carport", station_address(3))
    keeper = recorder.Recorder(heartbeat_s=300)
    keeper.observe(garage.pk, CHARGING, METER, AT)
    keeper.observe(carport.pk, CHARGING, METER, AT)
    carport.delete()
    recorder.write(keeper.take())
    assert list(Reading.objects.values_list("station__name", flat=True)) == ["Garage"]


def test_one_flush_stores_each_stations_own_status_and_session_energy() -> None:
    stations = [station(f"Bay {n}", station_address(2 + n)) for n in range(3)]
    running = [
        Session.objects.create(station=s, keba_session_id=1, started_at=AT) for s in stations
    ]
    keeper = recorder.Recorder(heartbeat_s=300)
    for n, (bay, session) in enumerate(zip(stations, running, strict=True)):
        meter = Report3(power_w=1000.0 * (n + 1), session_energy_kwh=n + 0.5, total_energy_kwh=9)
        keeper.observe(bay.pk, CHARGING, meter, AT + timedelta(seconds=n), session.pk)
    recorder.write(keeper.take())
    stored = Station.objects.filter(pk__in=[s.pk for s in stations]).order_by("name")
    assert [(s.power_w, s.last_contact) for s in stored] == [
        (1000.0, AT),
        (2000.0, AT + timedelta(seconds=1)),
        (3000.0, AT + timedelta(seconds=2)),
    ]
    energies = Session.objects.order_by("station__name").values_list("energy_kwh", flat=True)
    assert list(energies) == [0.5, 1.5, 2.5]
