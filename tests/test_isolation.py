"""Two test runs, demos or emulators on one host keep to their own loopback addresses."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chargers.kecontact.client import KebaClient
from chargers.kecontact.emulator import Fleet, network_broadcast
from chargers.kecontact.errors import PortBusy
from tests.emulated import BROADCAST, GATEWAY_HOST, fleet_and_client, station_address

ROOT = Path(__file__).resolve().parents[1]


async def test_a_fleet_told_no_broadcast_address_is_found_only_by_a_scan() -> None:
    async with Fleet() as fleet, KebaClient(GATEWAY_HOST) as client:
        await fleet.add(station_address(2), "p30c")
        by_broadcast = await client.discover(BROADCAST, wait_s=0.3)
        by_scan = await client.scan(f"{station_address(2)}/32", wait_s=0.3)
    assert by_broadcast == []
    assert [found.host for found in by_scan] == [station_address(2)]


async def test_a_second_fleet_on_the_same_broadcast_address_is_refused_and_steals_nothing() -> None:
    async with fleet_and_client() as (first, client):
        await first.add(station_address(2), "p30c")
        async with Fleet(broadcast=BROADCAST) as second:
            with pytest.raises(PortBusy) as refused:
                await second.add(station_address(3), "p20")
            answered = await client.discover(BROADCAST, wait_s=0.3)
    assert str(refused.value).startswith(f"cannot listen for discovery on {BROADCAST}:7090")
    assert "give each emulator its own broadcast address" in str(refused.value)
    assert [found.host for found in answered] == [station_address(2)]


def test_stations_listen_on_their_own_slash_24_by_convention() -> None:
    assert network_broadcast("127.0.3.2") == "127.0.3.255"


def run_network(value: str) -> subprocess.CompletedProcess[str]:
    code = "from tests.emulated import GATEWAY_HOST, BROADCAST; print(GATEWAY_HOST, BROADCAST)"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=os.environ | {"KEBAWEB_TEST_NET": value},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_run_can_be_pinned_to_a_range_for_debugging() -> None:
    pinned = run_network("127.42.7.0/24")
    assert pinned.stdout.split() == ["127.42.7.1", "127.42.7.255"]


def test_a_bad_pinned_range_is_one_line_that_says_what_to_give() -> None:
    refused = run_network("10.0.0.0/8")
    assert refused.returncode != 0
    assert (
        refused.stderr == "KEBAWEB_TEST_NET=10.0.0.0/8: give a loopback /24, e.g. 127.42.7.0/24\n"
    )
