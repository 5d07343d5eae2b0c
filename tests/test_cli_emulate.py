"""`manage.py keba emulate`: demo stations on loopback, stopped by a signal."""

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from chargers.kecontact.client import KebaClient
from tests.emulated import GATEWAY_HOST, station_address

MANAGE = Path(__file__).resolve().parents[1] / "manage.py"


async def test_it_runs_stations_that_answer_until_terminated() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(MANAGE),
        "keba",
        "emulate",
        "--station",
        f"{station_address(4)}=p20",
        "--serial-base",
        "500",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            first_line = (await process.stdout.readline()).decode()
        async with KebaClient(GATEWAY_HOST) as client:
            identity = await client.identify(station_address(4))
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            status = await process.wait()
    assert first_line.split()[:2] == [station_address(4), "p20"]
    assert "serial 500" in first_line
    assert identity.serial == "500"
    assert status == 0


def test_it_keeps_emulated_stations_on_loopback() -> None:
    with pytest.raises(CommandError, match=r"loopback addresses \(127\.0\.0\.0/8\)"):
        call_command("keba", "emulate", "--station", "192.168.1.50=p30c")


def test_it_lists_the_models_it_knows() -> None:
    with pytest.raises(CommandError, match=r"unknown model 'p99'; choose one of p20 .*, p30c"):
        call_command("keba", "emulate", "--station", f"{station_address(2)}=p99")
