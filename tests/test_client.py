"""The client against emulated stations over real UDP on loopback."""

import asyncio
import re
import socket

import pytest

from chargers.kecontact import commands
from chargers.kecontact.client import KebaClient, Stranger
from chargers.kecontact.codec import (
    Ack,
    ChargingState,
    Message,
    PlugState,
    Report2,
    Report3,
    SessionReport,
    StatusUpdate,
)
from chargers.kecontact.emulator import Car, Faults
from chargers.kecontact.errors import PortBusy, Refused, Timeout, Unsupported, WrongStation
from tests.emulated import (
    BROADCAST,
    GATEWAY_HOST,
    NETWORK,
    fleet_and_client,
    station_address,
    wait_for,
)


async def test_it_identifies_a_p30_c_series() -> None:
    async with fleet_and_client() as (fleet, client):
        station = await fleet.add(station_address(2), "p30c", serial="22054282")
        identity = await client.identify(station_address(2))
    assert identity.serial == "22054282"
    assert identity.product_info is not None
    assert identity.product_info.label == "P30 c-series"
    assert identity.udp_enabled is True
    assert station.received == ["report 1"]


async def test_it_reads_state_meter_and_session_of_a_charging_car() -> None:
    async with fleet_and_client(speed=100) as (fleet, client):
        station = await fleet.add(station_address(2), "p30c")
        station.plug_in(Car(max_current_a=16, phases=3))
        await wait_for(lambda: station.total_energy > 1000)
        status = await client.report(station_address(2), 2)
        meter = await client.report(station_address(2), 3)
        session = await client.report(station_address(2), 100)
    assert isinstance(status, Report2) and isinstance(meter, Report3)
    assert isinstance(session, SessionReport)
    assert status.state is ChargingState.CHARGING
    assert status.plug is PlugState.CAR_CONNECTED_LOCKED
    assert status.offered_current_a == 32.0  # the station offers all it may; the car takes 16
    assert meter.power_w == pytest.approx(16 * 230 * 3)
    assert meter.session_energy_kwh is not None and meter.session_energy_kwh >= 0.1
    assert session.session_id == 1 and session.is_running


async def test_it_sends_write_commands_and_the_station_takes_them() -> None:
    async with fleet_and_client() as (fleet, client):
        station = await fleet.add(station_address(2), "p30c")
        host = station_address(2)
        await client.identify(host)
        for command in (
            commands.set_current(20),
            commands.set_current_timed(12, 0),
            commands.set_energy(7.5),
            commands.set_output(1),
            commands.failsafe(60, 8, persist=True),
            commands.display("Hello World", 2, 10),
            commands.set_datetime(1_700_000_000),
            commands.set_phase_switch_source(4),
            commands.switch_phases(False),
        ):
            assert isinstance(await client.send(host, command), Ack)
        status = await client.report(host, 2)
    assert isinstance(status, Report2)
    assert status.user_current_a == 20.0
    assert status.timer_current_a == 12.0
    assert status.energy_limit_kwh == 7.5
    assert status.output == 1
    assert (status.failsafe_timeout_s, status.failsafe_current_a) == (60, 8.0)
    assert status.x2_source == 4 and status.phases == 1
    assert station.display_text == "Hello World"


async def test_it_disables_and_enables_charging() -> None:
    async with fleet_and_client(speed=20) as (fleet, client):
        station = await fleet.add(station_address(2), "p30c")
        station.plug_in(Car())
        await client.send(station_address(2), commands.enable(False))
        disabled = await client.report(station_address(2), 2)
        await client.send(station_address(2), commands.enable(True))
        enabled = await client.report(station_address(2), 2)
    assert isinstance(disabled, Report2) and isinstance(enabled, Report2)
    assert disabled.enabled_user is False and disabled.offered_current_a == 0
    assert enabled.state is ChargingState.CHARGING
    # Both requests after `ena 0` waited the 2 s quiet time: the station saw no violation.
    assert station.pacing_violations == 0


async def test_it_keeps_the_gap_between_datagrams_to_one_station() -> None:
    async with fleet_and_client(speed=1) as (fleet, client):
        station = await fleet.add(station_address(2), "p30c")
        for report_id in (1, 2, 3, 100, 101, 2, 3):
            await client.report(station_address(2), report_id)
    assert len(station.received) == 7
    assert station.pacing_violations == 0


async def test_it_lets_the_station_notice_a_client_that_does_not_pace() -> None:
    # The check behind the test above can fail: two datagrams in a row are caught.
    async with fleet_and_client(speed=1) as (fleet, _client):
        station = await fleet.add(station_address(2), "p30c")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rude:
            rude.bind((station_address(40), 7090))
            rude.sendto(b"report 2", (station_address(2), 7090))
            rude.sendto(b"report 3", (station_address(2), 7090))
            await wait_for(lambda: len(station.received) == 2)
    assert station.pacing_violations == 1


async def test_it_polls_many_stations_in_parallel_and_each_caller_gets_its_answer() -> None:
    async with fleet_and_client() as (fleet, client):
        hosts = [station_address(n) for n in range(2, 22)]
        for n, host in enumerate(hosts, start=2):
            await fleet.add(host, "p30c", serial=str(90000000 + n))
        replies = await asyncio.gather(
            *(client.report(host, report_id) for host in hosts for report_id in (2, 3, 100))
        )
    expected = [(fleet_host, rid) for fleet_host in hosts for rid in (2, 3, 100)]
    got = [(station_address(int(r.serial or 0) - 90000000), r.report_id) for r in replies]
    assert got == expected


async def test_it_retries_idempotent_requests_under_packet_loss() -> None:
    async with fleet_and_client(reply_timeout_s=0.2, retries=5) as (fleet, client):
        await fleet.add(station_address(2), "p30c", faults=Faults(loss=0.3), seed=7)
        reports = [await client.report(station_address(2), 2) for _ in range(20)]
    assert all(isinstance(r, Report2) for r in reports)
    assert client.stats.retries > 0


async def test_it_times_out_with_a_message_that_says_what_to_check() -> None:
    async with fleet_and_client(reply_timeout_s=0.1, retries=1) as (_fleet, client):
        with pytest.raises(
            Timeout, match=rf"no reply from {re.escape(station_address(9))} to `report 2` after 2"
        ):
            await client.report(station_address(9), 2)


async def test_it_tells_the_user_when_udp_is_switched_off() -> None:
    async with fleet_and_client(reply_timeout_s=0.1, retries=0) as (fleet, client):
        await fleet.add(station_address(2), "p30c", udp_enabled=False)
        identity = await client.identify(station_address(2))
        with pytest.raises(Timeout, match=r"DSW1\.3"):
            await client.report(station_address(2), 2)
    assert identity.udp_enabled is False


async def test_it_refuses_what_the_model_cannot_do_without_sending_it() -> None:
    async with fleet_and_client() as (fleet, client):
        station = await fleet.add(station_address(3), "p20")
        await client.identify(station_address(3))
        with pytest.raises(Unsupported, match="P20"):
            await client.send(station_address(3), commands.set_current_timed(10, 1))
    assert station.received == ["report 1"]


async def test_it_reports_a_refusal_by_the_station() -> None:
    async with fleet_and_client() as (fleet, client):
        await fleet.add(station_address(2), "p30c")
        with pytest.raises(Refused, match="nothing to stop"):
            await client.send(station_address(2), commands.stop("04A1B2C3D4E5F600"))


async def test_it_refuses_a_second_phase_switch_within_the_cool_down() -> None:
    async with fleet_and_client() as (fleet, client):
        station = await fleet.add(station_address(2), "p30c")
        await client.send(station_address(2), commands.set_phase_switch_source(4))
        await client.send(station_address(2), commands.switch_phases(False))
        with pytest.raises(Refused, match="wait"):
            await client.send(station_address(2), commands.switch_phases(True))
    assert station.received.count("x2 1") == 0


async def test_it_delivers_status_messages_to_subscribers() -> None:
    async with fleet_and_client() as (fleet, client):
        station = await fleet.add(station_address(2), "p30c")
        updates: asyncio.Queue[tuple[str, Message | Stranger]] = asyncio.Queue()
        client.subscribe(lambda host, message: updates.put_nowait((host, message)))
        await client.report(station_address(2), 2)  # the station now knows whom to tell
        station.plug_in(Car())
        seen: list[StatusUpdate] = []
        async with asyncio.timeout(10):
            while not any(m.plug is PlugState.CAR_CONNECTED_LOCKED for m in seen):
                host, message = await updates.get()
                assert host == station_address(2)
                if isinstance(message, StatusUpdate):
                    seen.append(message)
    assert any(m.state is ChargingState.CHARGING for m in seen)


async def test_it_discovers_stations_by_broadcast() -> None:
    async with fleet_and_client() as (fleet, client):
        await fleet.add(station_address(2), "p30c")
        await fleet.add(station_address(3), "p20")
        found = await client.discover(BROADCAST, wait_s=0.5)
    assert [(f.host, f.report.product_info.model) for f in found if f.report.product_info] == [
        (station_address(2), "P30"),
        (station_address(3), "P20"),
    ]


async def test_it_discovers_stations_by_scanning_a_range() -> None:
    async with fleet_and_client() as (fleet, client):
        await fleet.add(station_address(5), "bmw")
        found = await client.scan(f"{NETWORK.network_address}/29", wait_s=0.5)
    assert [f.host for f in found] == [station_address(5)]
    assert found[0].report.udp_enabled is True


async def test_it_finds_a_station_that_changed_address_by_discovery() -> None:
    async with fleet_and_client() as (fleet, client):
        await fleet.add(station_address(2), "p30c", serial="12345678")
        await client.identify(station_address(2))
        await fleet.move(station_address(2), station_address(12))
        found = await client.discover(BROADCAST, wait_s=0.5)
    assert [(f.host, f.report.serial) for f in found] == [(station_address(12), "12345678")]


async def test_it_ignores_a_stranger_that_claims_a_known_serial() -> None:
    async with fleet_and_client() as (fleet, client):
        await fleet.add(station_address(2), "p30c", serial="12345678")
        await client.identify(station_address(2))
        strangers: list[Stranger] = []
        client.subscribe(lambda _h, m: strangers.append(m) if isinstance(m, Stranger) else None)
        forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        forger.bind((station_address(50), 7090))
        forged = b'{"ID": "2", "State": 3, "Plug": 7, "Serial": "12345678", "Sec": 1}'
        forger.sendto(forged, (GATEWAY_HOST, 7090))
        forger.close()
        await wait_for(lambda: bool(strangers))
        status = await client.report(station_address(2), 2)
        identity = client.identity_of(station_address(2))
    assert strangers == [Stranger(station_address(50), "12345678")]
    assert client.stats.unknown_sender == 1
    assert isinstance(status, Report2) and status.serial == "12345678"
    assert identity is not None and identity.serial == "12345678"
    assert client.identity_of(station_address(50)) is None


async def test_it_refuses_a_report_from_another_station_at_a_known_address() -> None:
    async with fleet_and_client() as (fleet, client):
        await fleet.add(station_address(2), "p30c", serial="11111111")
        await fleet.add(station_address(3), "p30c", serial="22222222")
        await client.identify(station_address(2))
        # A DHCP swap: the second station now has the first one's address.
        await fleet.move(station_address(2), station_address(12))
        await fleet.move(station_address(3), station_address(2))
        with pytest.raises(WrongStation, match="answered as station 22222222"):
            await client.report(station_address(2), 2)
        identity = await client.identify(station_address(2))
        status = await client.report(station_address(2), 2)
    assert identity.serial == "22222222"
    assert isinstance(status, Report2) and status.serial == "22222222"


async def test_it_refuses_to_share_the_port_with_another_program() -> None:
    async with fleet_and_client() as (_fleet, _client):
        second = KebaClient(GATEWAY_HOST)
        with pytest.raises(PortBusy, match="already in use by another program"):
            await second.start()


async def test_it_ignores_and_counts_datagrams_from_strangers_and_garbage() -> None:
    async with fleet_and_client() as (fleet, client):
        await fleet.add(station_address(2), "p30c")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.bind((station_address(50), 7090))
            stranger.sendto(b'{"State": 3}', (GATEWAY_HOST, 7090))
            stranger.sendto(b"\xff\x00garbage", (GATEWAY_HOST, 7090))
            await wait_for(lambda: client.stats.received >= 2)
        report = await client.report(station_address(2), 2)
    assert isinstance(report, Report2)
    assert client.stats.unknown_sender == 1
    assert client.stats.malformed == 1


async def test_it_survives_garbage_and_duplicate_replies() -> None:
    async with fleet_and_client(reply_timeout_s=0.2, retries=6) as (fleet, client):
        await fleet.add(
            station_address(2), "p30c", faults=Faults(garbage=0.3, duplicate=0.3), seed=3
        )
        reports = [await client.report(station_address(2), rid) for rid in (2, 3) * 8]
    assert [r.report_id for r in reports] == [2, 3] * 8
    assert client.stats.malformed > 0 and client.stats.unmatched > 0


async def test_the_station_answers_port_7090_and_ignores_other_ports_on_new_firmware() -> None:
    async with fleet_and_client() as (fleet, _client):
        await fleet.add(station_address(2), "p30c", strict_source_port=True)
        await fleet.add(station_address(3), "p30c")
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as port_7090,
        ):
            sender.bind((station_address(60), 0))
            port_7090.bind((station_address(60), 7090))
            port_7090.setblocking(False)
            sender.sendto(b"report 1", (station_address(2), 7090))  # ignored: source port not 7090
            sender.sendto(b"report 1", (station_address(3), 7090))
            loop = asyncio.get_running_loop()
            reply, (source, _port) = await asyncio.wait_for(loop.sock_recvfrom(port_7090, 1024), 5)
    assert source == station_address(3)
    assert b'"ID": "1"' in reply
