"""A client nobody here wrote, keba-kecontact from PyPI, drives our emulator."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from keba_kecontact.connection import KebaKeContact

from chargers.kecontact.emulator import Car, EmulatedStation, Fleet
from chargers.kecontact.timing import Clock
from tests.emulated import GATEWAY_HOST, station_address, wait_for

HOST = station_address(2)


@asynccontextmanager
async def peer_and_station(model: str = "p30c") -> AsyncIterator[tuple[Any, EmulatedStation]]:
    """keba-kecontact's charging-station object for one emulated station."""
    KebaKeContact._instance = None  # the library keeps a process-wide singleton
    async with Fleet(Clock(speed=10)) as fleet:
        station = await fleet.add(HOST, model)
        keba = KebaKeContact(asyncio.get_running_loop(), timeout=3)
        await keba.init_socket(GATEWAY_HOST)
        try:
            peer = await keba.setup_charging_station(HOST, periodic_request=False)
            yield peer, station
        finally:
            keba.close()
            KebaKeContact._instance = None


async def test_it_is_set_up_by_keba_kecontact_from_report_1() -> None:
    async with peer_and_station() as (peer, station):
        info = peer.device_info
    assert (info.manufacturer, info.model, info.device_id) == ("KEBA", "P30", station.serial)
    assert info.is_meter_integrated() and info.is_data_logger_integrated()
    assert info.has_display()


async def test_keba_kecontact_reads_reports_2_3_and_100() -> None:
    async with peer_and_station() as (peer, station):
        station.plug_in(Car(max_current_a=16))
        await peer.request_data()
        await wait_for(lambda: peer.get_value("Session ID") is not None)
        await wait_for(lambda: peer.get_value("E total") is not None)
    assert peer.get_value("State") == 3
    assert peer.get_value("Plug") == 7
    assert peer.get_value("Max curr") == 32.0  # keba-kecontact converts mA to A itself
    assert peer.get_value("Session ID") == 1


async def test_keba_kecontact_sets_current_energy_and_failsafe() -> None:
    async with peer_and_station() as (peer, station):
        station.plug_in(Car())
        await peer.set_current(10, delay=0)
        await peer.set_energy(12.5)
        await peer.set_failsafe(timeout=30, fallback_value=6, persist=False)
        await wait_for(lambda: station.failsafe_timeout_s == 30)
    assert station.offered_ma() == 10000
    assert station.energy_limit == 125000
    assert station.failsafe_ma == 6000


async def test_keba_kecontact_disables_and_enables() -> None:
    async with peer_and_station() as (peer, station):
        station.plug_in(Car())
        await peer.disable()
        await wait_for(lambda: not station.enabled_user)
        disabled_state = station.state()
        await peer.enable()
        await wait_for(lambda: station.enabled_user)
    assert disabled_state == 5
    assert station.state() == 3
    assert station.pacing_violations == 0


async def test_keba_kecontact_starts_and_stops_with_a_tag_and_writes_the_display() -> None:
    tag = "04A1B2C3D4E5F600"
    async with peer_and_station("p30x") as (peer, station):
        station.auth_on = True
        station.plug_in(Car())
        await peer.start(tag)
        await wait_for(lambda: station.authorized_tag == tag)
        charging = station.state()
        await peer.stop(tag)
        await wait_for(lambda: station.session is None)
        await peer.display("Hello", 2, 10)
        await wait_for(lambda: station.display_text == "Hello")
    assert charging == 3
    assert station.session_log[0].reason == 10


async def test_keba_kecontact_switches_phases() -> None:
    async with peer_and_station() as (peer, station):
        await peer.x2src(4)
        await peer.x2(False)
        await wait_for(lambda: station.x2_three_phases is False)
    assert station.x2_source == 4
