"""`manage.py keba emulate`: stations on loopback, driven from stdin, stopped by a signal."""

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from chargers.kecontact.client import KebaClient
from chargers.kecontact.codec import (
    ChargingState,
    EndReason,
    PlugState,
    Report2,
    Report3,
    SessionReport,
)
from chargers.kecontact.errors import Timeout
from tests.emulated import GATEWAY_HOST, station_address

MANAGE = Path(__file__).resolve().parents[1] / "manage.py"
WAIT_S = 30  # generous: a loaded machine may take seconds to start Django
STATION = station_address(40)


@dataclass
class Emulator:
    process: asyncio.subprocess.Process

    async def say(self, line: str) -> str:
        """Type a line; return the answer on stdout."""
        return await self._type(line, self.process.stdout)

    async def say_wrong(self, line: str) -> str:
        """Type a line; return the error on stderr."""
        return await self._type(line, self.process.stderr)

    async def _type(self, line: str, answers: asyncio.StreamReader | None) -> str:
        assert self.process.stdin is not None and answers is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()
        async with asyncio.timeout(WAIT_S):
            return (await answers.readline()).decode().rstrip("\n")


async def start_emulator(*options: str, stdin: int = asyncio.subprocess.PIPE) -> Emulator:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(MANAGE),
        "keba",
        "emulate",
        *options,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    async with asyncio.timeout(WAIT_S):
        while not (await process.stdout.readline()).startswith(b"Emulating"):
            pass
    return Emulator(process)


async def stop(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(WAIT_S):
        return await process.wait()


@asynccontextmanager
async def emulator(*options: str) -> AsyncIterator[tuple[Emulator, KebaClient]]:
    """One emulated station at STATION, and a client that gives up fast."""
    running = await start_emulator("--station", f"{STATION}=p30c", *options)
    try:
        async with KebaClient(GATEWAY_HOST, reply_timeout_s=0.5, retries=1) as client:
            yield running, client
    finally:
        assert await stop(running.process) == 0


async def report2(client: KebaClient, host: str = STATION) -> Report2:
    message = await client.report(host, 2)
    assert isinstance(message, Report2)
    return message


async def latest_session(client: KebaClient) -> SessionReport:
    message = await client.report(STATION, 100)
    assert isinstance(message, SessionReport)
    return message


async def test_it_keeps_stations_running_after_stdin_ends_until_terminated() -> None:
    host = station_address(41)
    running = await start_emulator(
        "--station", f"{host}=p20", "--serial-base", "500", stdin=asyncio.subprocess.DEVNULL
    )
    try:
        async with KebaClient(GATEWAY_HOST) as client:
            identity = await client.identify(host)
    finally:
        status = await stop(running.process)
    assert identity.serial == "500"
    assert status == 0


async def test_it_plugs_in_a_car_typed_on_stdin() -> None:
    async with emulator() as (typed, client):
        answer = await typed.say(f"{STATION} plug 16A 5kWh")
        status = await report2(client)
        meter = await client.report(STATION, 3)
    assert answer == f"{STATION}: car plugged in (16 A, needs 5 kWh)"
    assert status.plug == PlugState.CAR_CONNECTED_LOCKED
    assert status.state == ChargingState.CHARGING
    assert isinstance(meter, Report3)
    assert meter.current_1_a == 16


async def test_it_records_a_swiped_tag_on_the_running_session() -> None:
    async with emulator() as (typed, client):
        await typed.say(f"{STATION} plug")
        answer = await typed.say(f"{STATION} swipe 04a1b2c3d4e5f607")
        session = await latest_session(client)
    assert answer == f"{STATION}: tag 04A1B2C3D4E5F607 accepted for session 1"
    assert session.is_running
    assert session.rfid_tag == "04A1B2C3D4E5F607"


async def test_it_ends_the_session_when_the_car_is_unplugged() -> None:
    async with emulator("--car") as (typed, client):
        answer = await typed.say(f"{STATION} unplug")
        status = await report2(client)
        session = await latest_session(client)
    assert answer.startswith(f"{STATION}: car unplugged; session 1 ended")
    assert status.plug is not None and not status.plug.car_connected
    assert session.reason == EndReason.UNPLUGGED
    assert not session.is_running


async def test_it_reboots_a_station_and_clears_its_session_log() -> None:
    async with emulator("--car") as (typed, client):
        before = await latest_session(client)
        await typed.say(f"{STATION} unplug")
        answer = await typed.say(f"{STATION} reboot")
        after = await latest_session(client)
    assert answer == f"{STATION}: rebooted"
    assert before.session_id == 1
    assert after.is_empty


async def test_it_moves_a_station_to_a_new_address() -> None:
    new_host = station_address(42)
    async with emulator() as (typed, client):
        serial = (await client.identify(STATION)).serial
        answer = await typed.say(f"{STATION} move {new_host}")
        moved = await client.identify(new_host)
        with pytest.raises(Timeout):
            await client.identify(STATION)
    assert answer.startswith(f"{STATION}: moved to {new_host} (serial {serial})")
    assert moved.serial == serial


async def test_it_goes_silent_and_comes_back() -> None:
    async with emulator() as (typed, client):
        silent = await typed.say(f"{STATION} silent")
        with pytest.raises(Timeout):
            await report2(client)
        back = await typed.say(f"{STATION} back")
        status = await report2(client)
    assert silent.startswith(f"{STATION}: silent")
    assert back == f"{STATION}: answering again"
    assert status.state == ChargingState.READY


async def test_it_answers_a_bad_line_with_one_error_and_changes_nothing() -> None:
    async with emulator() as (typed, client):
        typo = await typed.say_wrong(f"{STATION} plgu 16A")
        too_much = await typed.say_wrong(f"{STATION} plug 99A")
        listed = await typed.say("list")
        status = await report2(client)
    assert typo == "unknown command `plgu`: type help"
    assert too_much == "plug: a car draws 6 to 63 A, not 99 A"
    assert "no car" in listed
    assert status.plug is not None and not status.plug.car_connected


async def test_it_lets_the_address_be_left_out_when_one_station_runs() -> None:
    async with emulator() as (typed, client):
        answer = await typed.say("plug 10A")
        status = await report2(client)
    assert answer == f"{STATION}: car plugged in (10 A, needs 20 kWh)"
    assert status.plug == PlugState.CAR_CONNECTED_LOCKED


async def run_to_exit(*options: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(MANAGE),
        "keba",
        "emulate",
        *options,
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(WAIT_S):
            _, errors = await process.communicate()
    finally:
        status = await stop(process)
    return status, errors.decode()


async def test_it_stops_with_one_line_when_the_address_is_busy() -> None:
    host = station_address(43)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other_program:
        other_program.bind((host, 7090))
        status, errors = await run_to_exit("--station", host)
    assert status == 2
    assert errors.count("\n") == 1
    assert f"{host}:7090 is already in use" in errors
    assert "choose another address" in errors


async def test_it_stops_with_one_line_for_an_address_not_on_this_machine() -> None:
    # 192.0.2.0/24 is reserved for documentation: no machine has it.
    status, errors = await run_to_exit("--station", "192.0.2.1", "--allow-lan")
    assert status == 2
    assert errors.count("\n") == 1
    assert "192.0.2.1 is not an address of this machine" in errors


def test_it_keeps_emulated_stations_on_loopback() -> None:
    with pytest.raises(CommandError, match=r"loopback addresses \(127\.0\.0\.0/8\)"):
        call_command("keba", "emulate", "--station", "192.168.1.50=p30c")


def test_it_lists_the_models_it_knows() -> None:
    with pytest.raises(CommandError, match=r"unknown model 'p99'; choose one of p20 .*, p30c"):
        call_command("keba", "emulate", "--station", f"{station_address(2)}=p99")
