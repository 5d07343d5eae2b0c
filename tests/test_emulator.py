"""The emulated station behaves as a real one does, seen through our client."""

import asyncio

import pytest

from chargers.kecontact import commands
from chargers.kecontact.client import KebaClient, Stranger
from chargers.kecontact.codec import (
    ChargingState,
    EndReason,
    Message,
    Report1,
    Report2,
    Report3,
    SessionReport,
    Started,
)
from chargers.kecontact.emulator import Car
from chargers.kecontact.errors import Refused
from tests.emulated import fleet_and_client, station_address, wait_for

HOST = station_address(2)


async def _status(client: object, host: str = HOST) -> Report2:
    report = await client.report(host, 2)  # type: ignore[attr-defined]
    assert isinstance(report, Report2)
    return report


async def _session(client: object, report_id: int = 100) -> SessionReport:
    report = await client.report(HOST, report_id)  # type: ignore[attr-defined]
    assert isinstance(report, SessionReport)
    return report


async def test_it_logs_a_finished_session_in_report_101() -> None:
    async with fleet_and_client(speed=200) as (fleet, client):
        station = await fleet.add(HOST, "p30c")
        station.plug_in(Car(max_current_a=16))
        await wait_for(lambda: station.total_energy >= 5000)
        station.unplug()
        running_then_finished = await _session(client, 100)
        nothing_before = await _session(client, 101)
        station.plug_in(Car(needed_kwh=0))  # a full car: the new session stays at 0 kWh
        finished = await _session(client, 101)
        meter = await client.report(HOST, 3)
    assert running_then_finished.reason == EndReason.UNPLUGGED
    assert running_then_finished.session_energy_kwh is not None
    assert running_then_finished.session_energy_kwh >= 0.5
    assert nothing_before.is_empty
    assert finished.session_id == 1
    assert finished.ended_at() is not None and finished.started_at() is not None
    assert isinstance(meter, Report3)
    assert meter.session_energy_kwh == 0  # E pres resets when the next session starts


async def test_it_stops_and_disables_when_the_energy_cap_is_reached() -> None:
    async with fleet_and_client(speed=500) as (fleet, client):
        station = await fleet.add(HOST, "p30c")
        station.plug_in(Car(max_current_a=32))
        await client.send(HOST, commands.set_energy(0.5))
        await wait_for(lambda: not station.enabled_user)
        status = await _status(client)
        session = await _session(client)
    assert status.state is ChargingState.INTERRUPTED
    assert status.enabled_user is False
    assert session.session_energy_kwh == pytest.approx(0.5, abs=0.0002)


async def test_it_applies_a_timed_current_after_its_delay() -> None:
    async with fleet_and_client(speed=100) as (fleet, client):
        station = await fleet.add(HOST, "p30c")
        station.plug_in(Car(max_current_a=32))
        await client.send(HOST, commands.set_current_timed(8, 300))
        pending = await _status(client)
        await wait_for(lambda: station.timer_current_ma == 8000, timeout_s=20)
        applied = await _status(client)
        station.unplug()
        after_unplug = await _status(client)
    assert pending.offered_current_a == 32 and pending.timer_current_a == 8
    assert pending.timer_seconds_left is not None and 0 < pending.timer_seconds_left <= 300
    assert applied.offered_current_a == 8
    assert after_unplug.timer_current_a == 0  # currtime lasts one session


async def test_it_falls_back_to_the_failsafe_current_when_nobody_controls_it() -> None:
    async with fleet_and_client(speed=100) as (fleet, client):
        station = await fleet.add(HOST, "p30c")
        station.plug_in(Car(max_current_a=32))
        await client.send(HOST, commands.failsafe(10, 6))
        await wait_for(lambda: station.offered_ma() == 6000, timeout_s=20)
        await client.send(HOST, commands.set_current_timed(16, 0))
        controlled = await _status(client)
    assert controlled.offered_current_a == 16


async def test_it_authorises_only_whitelisted_cards() -> None:
    tag = "04A1B2C3D4E5F600"
    async with fleet_and_client() as (fleet, client):
        station = await fleet.add(HOST, "p30x", auth_on=True, whitelist={tag})
        station.plug_in(Car())
        waiting = await _status(client)
        rejected = station.present_tag("DEADBEEF00000000")
        accepted = station.present_tag(tag)
        charging = await _status(client)
        with pytest.raises(Refused, match="did not start"):
            await client.send(HOST, commands.stop("1111111111111111"))
        await client.send(HOST, commands.stop(tag))
        stopped = await _session(client)
    assert waiting.state is ChargingState.NOT_READY and waiting.auth_required
    assert (rejected, accepted) == (False, True)
    assert charging.state is ChargingState.CHARGING
    assert stopped.reason == EndReason.DEAUTHORIZED and stopped.rfid_tag == tag


async def test_it_starts_a_session_with_a_remote_start() -> None:
    async with fleet_and_client() as (fleet, client):
        station = await fleet.add(HOST, "bmw", auth_on=True)
        station.plug_in(Car())
        await client.send(HOST, commands.start("04a1b2c3"))
        status = await _status(client)
        session = await _session(client)
    assert status.state is ChargingState.CHARGING
    assert session.rfid_tag == "04A1B2C300000000"


async def test_it_refuses_a_phase_switch_within_the_cool_down() -> None:
    async with fleet_and_client() as (fleet, first):
        station = await fleet.add(HOST, "p30c")
        await first.send(HOST, commands.set_phase_switch_source(4))
        await first.send(HOST, commands.switch_phases(False))
        # Another program knows nothing of the last switch; the station does.
        await fleet.clock.sleep(fleet.timing.min_gap_s)  # the station's pacing holds for all
        async with KebaClient(
            station_address(100), clock=fleet.clock, reply_timeout_s=0.5
        ) as other:
            with pytest.raises(Refused, match="X2 : not allowed now"):
                await other.send(HOST, commands.switch_phases(True))
    assert station.x2_three_phases is False


async def test_it_forgets_settings_and_its_log_on_reboot() -> None:
    async with fleet_and_client(speed=100) as (fleet, client):
        station = await fleet.add(HOST, "p30c")
        messages: asyncio.Queue[Message | Stranger] = asyncio.Queue()
        client.subscribe(lambda _h, m: messages.put_nowait(m))
        await client.send(HOST, commands.set_current(10))
        station.plug_in(Car())
        await wait_for(lambda: station.uptime_s > 50)
        station.reboot()
        boot_line = await asyncio.wait_for(_next_of(messages, Started), 10)
        status = await _status(client)
        identity = await client.identify(HOST)
        log = await _session(client, 101)
    assert boot_line.text.startswith("started")
    assert status.user_current_a == 63
    assert identity.uptime_s is not None and identity.uptime_s < 50
    assert log.is_empty


async def _next_of(queue: "asyncio.Queue[Message | Stranger]", kind: type) -> Started:
    while True:
        message = await queue.get()
        if isinstance(message, kind):
            assert isinstance(message, Started)
            return message


@pytest.mark.parametrize(
    ("model", "label", "has_auth_fields", "meter"),
    [
        ("p20", "P20 c-series", False, True),
        ("p30c", "P30 c-series", True, True),
        ("p30x", "P30 x-series", True, True),
        ("p30de", "P30 c-series (German edition)", True, False),
        ("bmw", "BMW Wallbox", True, True),
    ],
)
async def test_each_model_reports_its_own_fields(
    model: str, label: str, has_auth_fields: bool, meter: bool
) -> None:
    async with fleet_and_client(speed=100) as (fleet, client):
        station = await fleet.add(HOST, model)
        station.plug_in(Car())
        identity = await client.identify(HOST)
        await wait_for(lambda: station.total_energy > 0)
        status = await _status(client)
        metered = await client.report(HOST, 3)
    assert isinstance(identity, Report1) and identity.product_info is not None
    assert identity.product_info.label.startswith(label)
    assert (status.auth_on is not None) is has_auth_fields
    assert isinstance(metered, Report3)
    assert (metered.power_w or 0) > 0 if meter else metered.power_w == 0


async def test_old_firmware_dirty_json_still_decodes() -> None:
    async with fleet_and_client() as (fleet, client):
        await fleet.add(HOST, "p30c", dirty_json=True)
        identity = await client.identify(HOST)
        status = await _status(client)
    assert identity.product == "KC-P30-EC240422-E00"
    assert status.state is not None
