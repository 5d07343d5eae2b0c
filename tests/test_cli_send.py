"""`manage.py keba send` and `keba discover` against emulated stations on loopback."""

import asyncio
import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from chargers.kecontact.emulator import Fleet
from tests.emulated import BROADCAST, GATEWAY_HOST, station_address

BIND = ["--bind", GATEWAY_HOST]


def keba(*args: str) -> str:
    out = StringIO()
    call_command("keba", *args, stdout=out)
    return out.getvalue()


async def keba_beside_the_fleet(*args: str) -> str:
    """The command runs its own event loop, so it runs in a thread beside the fleet's."""
    return await asyncio.to_thread(keba, *args)


async def test_it_sends_a_timed_current_and_prints_the_ack() -> None:
    async with Fleet(broadcast=BROADCAST) as fleet:
        station = await fleet.add(station_address(2), "p30c")
        out = await keba_beside_the_fleet(
            "send", station_address(2), "currtime", "10000", "60", *BIND
        )
    assert json.loads(out) == {"kind": "ack", "ok": True, "text": "TCH-OK :done"}
    assert station.received == ["report 1", "currtime 10000 60"]


async def test_it_prints_a_report_with_converted_units() -> None:
    async with Fleet(broadcast=BROADCAST) as fleet:
        await fleet.add(station_address(2), "p30c")
        out = await keba_beside_the_fleet("send", station_address(2), "report", "2", *BIND)
    report = json.loads(out)
    assert report["kind"] == "report2"
    assert report["state"] == "READY"
    assert report["user_current_a"] == 63.0


async def test_it_refuses_a_command_the_model_cannot_do_before_sending_it() -> None:
    async with Fleet(broadcast=BROADCAST) as fleet:
        station = await fleet.add(station_address(2), "p20")
        with pytest.raises(CommandError, match=r"P20 .* does not support `currtime`"):
            await keba_beside_the_fleet(
                "send", station_address(2), "currtime", "10000", "60", *BIND
            )
    assert station.received == ["report 1"]


def test_it_refuses_a_value_outside_the_protocol_range() -> None:
    with pytest.raises(CommandError, match="6 to 63 A"):
        keba("send", station_address(2), "curr", "3000", *BIND)


def test_it_says_which_station_did_not_answer() -> None:
    with pytest.raises(CommandError, match=f"no reply from {re.escape(station_address(9))}"):
        keba("send", station_address(9), "report", "2", "--timeout", "0.1", *BIND)


async def test_it_lists_the_stations_found_by_a_scan() -> None:
    async with Fleet(broadcast=BROADCAST) as fleet:
        await fleet.add(station_address(2), "p30c", serial="22054282")
        await fleet.add(station_address(3), "p20", serial="15017355")
        out = await keba_beside_the_fleet("discover", "--scan", f"{station_address(2)}/31", *BIND)
    header, first, second = out.splitlines()
    assert header.split()[:2] == ["ADDRESS", "SERIAL"]
    assert first.split()[:2] == [station_address(2), "22054282"]
    assert "P30 c-series" in first
    assert second.split()[:2] == [station_address(3), "15017355"]


async def test_it_finds_stations_by_broadcast_as_json() -> None:
    async with Fleet(broadcast=BROADCAST) as fleet:
        await fleet.add(station_address(2), "p30x", serial="33000001")
        out = await keba_beside_the_fleet("discover", "--broadcast", BROADCAST, "--json", *BIND)
    by_address = {found["address"]: found for found in json.loads(out)}
    assert by_address[station_address(2)]["serial"] == "33000001"
    assert by_address[station_address(2)]["product_info"]["label"] == "P30 x-series"


def test_it_says_when_no_station_answered() -> None:
    out = keba("discover", "--scan", f"{station_address(8)}/30", "--wait", "0.2", *BIND)
    assert out.startswith("No stations found")
