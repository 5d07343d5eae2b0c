"""Issue 16: a value no KEBA can report (E pres 2^62, negative power, Max curr -16 A)
refuses the whole message, so the station row, readings and live frames keep the
last good values, and the problem is stored once however the value varies."""

import asyncio
import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core.management import CommandError, call_command

from chargers import live
from chargers.kecontact.codec import StatusUpdate, decode
from chargers.kecontact.emulator import Car, EmulatedStation, Faults
from chargers.kecontact.errors import ImpossibleValue, Malformed
from chargers.models import Event, Reading, Session, Station
from tests.emulated import fleet_and_client, station_address, until_stored, wait_for
from tests.gateways import running

REPORT_1 = {
    "ID": "1",
    "Product": "KC-P30-EC240422-E00",
    "Serial": "12345678",
    "Firmware": "P30 v 3.10.57 (240521-093236)",
}


def datagram(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields).encode()


# The codec, field by field.


IMPOSSIBLE = [
    (
        {"ID": "3", "E pres": 2**62},
        "report 3: E pres 461168601842738.7904 kWh is outside 0 to 10000000 kWh",
    ),
    ({"ID": "3", "E pres": -1}, "report 3: E pres -0.0001 kWh is outside 0 to 10000000 kWh"),
    (
        {"ID": "3", "E total": -77478},
        "report 3: E total -7.7478 kWh is outside 0 to 10000000 kWh",
    ),
    (
        {"ID": "3", "E total": 10**11 + 1},
        "report 3: E total 10000000.0001 kWh is outside 0 to 10000000 kWh",
    ),
    (
        {"ID": "3", "P": 4_600_000_000_000_000_000},
        "report 3: P 4600000000000000 W is outside 0 to 100000 W",
    ),
    ({"ID": "3", "P": -5_678_000}, "report 3: P -5678 W is outside 0 to 100000 W"),
    ({"ID": "3", "I2": 100_001}, "report 3: I2 100.001 A is outside 0 to 100 A"),
    ({"ID": "3", "I3": -7000}, "report 3: I3 -7 A is outside 0 to 100 A"),
    ({"ID": "3", "U1": 501}, "report 3: U1 501 V is outside 0 to 500 V"),
    ({"ID": "3", "PF": 1001}, "report 3: PF 100.1 % is outside 0 to 100 %"),
    ({"ID": "2", "Max curr": -16000}, "report 2: Max curr -16 A is outside 0 to 63 A"),
    ({"ID": "2", "Curr user": 63001}, "report 2: Curr user 63.001 A is outside 0 to 63 A"),
    ({"ID": "2", "Max curr %": 1001}, "report 2: Max curr % 100.1 % is outside 0 to 100 %"),
    ({"ID": "2", "Tmo FS": 601}, "report 2: Tmo FS 601 s is outside 0 to 600 s"),
    ({"ID": "2", "Tmo CT": -1}, "report 2: Tmo CT -1 s is outside 0 to 860400 s"),
    (
        {"ID": "2", "Setenergy": 10**9},
        "report 2: Setenergy 100000 kWh is outside 0 to 99999.9999 kWh",
    ),
    ({"ID": "2", "Enable sys": 2}, "report 2: Enable sys 2 is outside 0 to 1"),
    ({"ID": "2", "Output": 151}, "report 2: Output 151 is outside 0 to 150"),
    ({"ID": "2", "X2 phaseSwitch": 4}, "report 2: X2 phaseSwitch 4 is outside 0 to 3"),
    ({**REPORT_1, "timeQ": 4}, "report 1: timeQ 4 is outside 0 to 3"),
    ({**REPORT_1, "DIP-Sw1": "0x125"}, "report 1: DIP-Sw1 293 is outside 0 to 255"),
    ({"ID": "101", "Session ID": -1}, "report 101: Session ID -1 is outside 0 to "),
    ({"ID": "101", "E start": -1}, "report 101: E start -0.0001 kWh is outside 0 to "),
    ({"ID": "100", "Curr HW": -32000}, "report 100: Curr HW -32 A is outside 0 to 63 A"),
    ({"E pres": 2**62}, "status message: E pres 461168601842738.7904 kWh is outside 0 to "),
    ({"Max curr": -16000}, "status message: Max curr -16 A is outside 0 to 63 A"),
    ({"State": 3, "Input": 7}, "status message: Input 7 is outside 0 to 1"),
]


@pytest.mark.parametrize(("fields", "text"), IMPOSSIBLE, ids=[text for _, text in IMPOSSIBLE])
def test_it_refuses_a_value_no_station_can_report(fields: dict[str, Any], text: str) -> None:
    with pytest.raises(ImpossibleValue) as refused:
        decode(datagram(fields))

    assert str(refused.value).startswith(text)


def test_it_names_the_field_and_leaves_the_value_out_of_the_summary() -> None:
    with pytest.raises(ImpossibleValue) as refused:
        decode(b'{"ID": "3", "E pres": 4611686018427387904, "Serial": "22054282"}')

    assert refused.value.field == "E pres"
    assert refused.value.summary == "report 3: E pres is outside 0 to 10000000 kWh"


def test_it_is_malformed_for_whoever_catches_malformed_datagrams() -> None:
    with pytest.raises(Malformed):
        decode(b'{"ID": "2", "Max curr": -16000}')


def test_it_names_the_field_as_the_guide_spells_it_whatever_the_station_sent() -> None:
    with pytest.raises(ImpossibleValue, match=r"^report 101: E start -0\.0001 kWh"):
        decode(b'{"ID": "101", "e START   ": -1}')


def test_keba_decode_prints_the_one_line_reason(tmp_path: Path) -> None:
    report = tmp_path / "report3.txt"
    report.write_text(json.dumps({"ID": "3", "E pres": 2**62, "Sec": 534926}))
    out, err = StringIO(), StringIO()

    with pytest.raises(CommandError, match="1 of 1 input"):
        call_command("keba", "decode", str(report), stdout=out, stderr=err)

    assert err.getvalue() == (
        f"{report}: report 3: E pres 461168601842738.7904 kWh is outside 0 to 10000000 kWh\n"
    )
    assert out.getvalue() == ""


# The client and the emulator.


async def test_the_client_refuses_the_reply_with_the_station_named_in_the_reason() -> None:
    async with fleet_and_client(retries=0) as (fleet, client):
        station = await fleet.add(station_address(2), "p30c")
        station.faults.report_fields = {3: {"E pres": 2**62}}

        with pytest.raises(ImpossibleValue) as refused:
            await client.report(station_address(2), 3)

    said = f"{station_address(2)} sent an impossible value, so its reply was not used: "
    assert str(refused.value) == (
        said + "report 3: E pres 461168601842738.7904 kWh is outside 0 to 10000000 kWh"
    )
    assert refused.value.summary == said + "report 3: E pres is outside 0 to 10000000 kWh"
    assert refused.value.field == "E pres"


async def test_the_client_passes_on_no_status_message_with_an_impossible_value() -> None:
    async with fleet_and_client() as (fleet, client):
        station = await fleet.add(
            station_address(2), "p30c", faults=Faults(status_fields={"Max curr": -16000})
        )
        updates: list[StatusUpdate] = []
        client.subscribe(
            lambda _host, message: (
                updates.append(message) if isinstance(message, StatusUpdate) else None
            )
        )
        await client.report(station_address(2), 2)  # the station now knows whom to tell
        station.plug_in(Car())  # State, Plug and Max curr change
        await wait_for(lambda: any(update.state is not None for update in updates))
        await wait_for(lambda: client.stats.malformed >= 1)
    assert all(update.offered_current_a is None for update in updates)


# A real gateway and an emulated station that starts reporting impossible values.

STATION_FIELDS = [
    "state",
    "plug",
    "power_w",
    "session_energy_kwh",
    "total_energy_kwh",
    "offered_current_a",
]


async def frames_of_all_stations(into: list[dict[str, Any]]) -> None:
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    await layer.group_add(live.ALL_STATIONS_GROUP, channel)
    while True:
        message = await layer.receive(channel)
        into.append(message["status"])


async def asked(emulated: EmulatedStation, wire: str, times: int) -> None:
    seen = emulated.received.count(wire)
    await wait_for(lambda: emulated.received.count(wire) >= seen + times, 30)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("report_id", "name", "values", "shown_as"),
    [
        (3, "E pres", [2**62, 2**62 + 1, 2**62 + 2], "session_energy_kwh"),
        (3, "P", [4_600_000_000_000_000_000, -5_000_000, -6_000_000], "power_w"),
        (2, "Max curr", [-16000, -16001, -16002], "offered_current_a"),
    ],
)
async def test_a_station_reporting_impossible_values_keeps_its_last_good_values_and_one_event(
    report_id: int, name: str, values: list[int], shown_as: str
) -> None:
    frames: list[dict[str, Any]] = []
    listening = asyncio.create_task(frames_of_all_stations(frames))
    try:
        async with fleet_and_client(speed=50) as (fleet, client):
            emulated = await fleet.add(station_address(2), "p30c")
            station = await sync_to_async(Station.objects.create)(
                name="Garage", address=station_address(2), poll_interval_s=5
            )
            emulated.plug_in(Car(max_current_a=16, needed_kwh=0.05))
            async with running(client):
                # The car is full: from now on every good report says the same.
                await wait_for(lambda: emulated.car is not None and emulated.car.full, 30)
                energy = emulated.session_log[0].energy / 10000
                await until_stored(
                    lambda: Station.objects.filter(
                        pk=station.pk, state=2, power_w=0, session_energy_kwh=energy
                    ).exists()
                )
                good = await sync_to_async(
                    lambda: Station.objects.values(*STATION_FIELDS).get(pk=station.pk)
                )()
                good_session = await sync_to_async(lambda: Session.objects.get().energy_kwh)()
                last_good_reading = await sync_to_async(lambda: Reading.objects.latest("id").id)()
                frames_before = len(frames)

                emulated.faults.status_fields = {name: values[0]}
                emulated.user_current_ma = 20000  # a status message: Max curr 20 A
                for value in values:  # the value varies from poll to poll
                    emulated.faults.report_fields = {report_id: {name: value}}
                    await asked(emulated, f"report {report_id}", 3)
                if name != "Max curr":  # the good status message still reaches browsers
                    await wait_for(
                        lambda: any(f["offered_current_a"] == 20 for f in frames[frames_before:])
                    )
                await until_stored(lambda: Event.objects.filter(message__contains=name).exists())
    finally:
        listening.cancel()

    await station.arefresh_from_db()
    assert {field: getattr(station, field) for field in STATION_FIELDS} == good
    assert await sync_to_async(lambda: Session.objects.get().energy_kwh)() == good_session
    later = await sync_to_async(
        lambda: list(Reading.objects.filter(id__gt=last_good_reading).values_list(shown_as))
    )()
    assert all(value == good[shown_as] for (value,) in later)
    after = [frame for frame in frames[frames_before:] if shown_as in frame]
    if name == "Max curr":
        assert all(frame[shown_as] == good[shown_as] for frame in after)
    else:
        assert after and all(frame[shown_as] == good[shown_as] for frame in after)
    events = await sync_to_async(
        lambda: list(
            Event.objects.filter(message__contains=f"report {report_id}: {name} ").values_list(
                "message", flat=True
            )
        )
    )()
    assert len(events) == 1, events
    assert f"{station_address(2)} sent an impossible value" in events[0]
