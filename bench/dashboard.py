"""The dashboard's figures: live latency, page cost by station count, chart queries.

Prints:
- publish → frame: from the gateway publishing a status (live.publish_status) to the
  frame arriving in a WebSocket client of the real consumer (Channels'
  WebsocketCommunicator: channel layer, consumer, JSON; no TCP);
- station → frame: from an emulated station's plug-in on loopback UDP to the
  "charging" frame, through a running gateway (KEBA's 5 s repeat rule included);
- the dashboard's server time and SQL queries with 10 and 200 stations;
- the station page's chart queries over a year of readings of one station.

    .venv/bin/python bench/dashboard.py [--samples 200] [--plugs 6]
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from django_setup import set_up_django  # beside this file


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {p50 * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms   ({len(ordered)} samples)"


def member_cookie() -> bytes:
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.test import Client

    user, _ = User.objects.get_or_create(username="bench")
    user.groups.add(Group.objects.get(name="members"))
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


async def connected_socket() -> object:
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from kebaweb.asgi import application

    cookie = await sync_to_async(member_cookie)()
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie)]
    socket = WebsocketCommunicator(application, "/ws/live/", headers=headers)
    connected, _ = await socket.connect(timeout=10)
    assert connected, "the socket was refused"
    return socket


async def publish_to_frame(samples: int) -> list[float]:
    from chargers import live, recorder
    from chargers.kecontact.codec import ChargingState, PlugState, Report2, Report3

    socket = await connected_socket()
    status = Report2(state=ChargingState.CHARGING, plug=PlugState.CAR_CONNECTED_LOCKED)
    times = []
    for n in range(samples):
        meter = Report3(power_w=1000.0 + n, current_1_a=16.0)
        started = time.perf_counter()
        await live.publish_status(1, recorder.status_payload(status, meter))
        await socket.receive_json_from(timeout=10)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - started)
    await socket.disconnect()  # type: ignore[attr-defined]
    return times


async def station_to_frame(plugs: int) -> list[float]:
    from asgiref.sync import sync_to_async

    from chargers.gateway import Gateway, GatewaySettings
    from chargers.kecontact.client import KebaClient
    from chargers.kecontact.emulator import Car, Fleet
    from chargers.kecontact.timing import Clock, Timing
    from chargers.models import Station
    from tests.emulated import BROADCAST, GATEWAY_HOST, station_address

    clock, timing = Clock(1), Timing()
    host = station_address(2)
    client = KebaClient(GATEWAY_HOST, clock=clock, timing=timing)
    times = []
    async with Fleet(clock, timing, broadcast=BROADCAST) as fleet, client:
        emulated = await fleet.add(host, "p30c")
        await sync_to_async(Station.objects.create)(name="Bench", address=host, poll_interval_s=5)
        gateway = Gateway(
            client, settings=GatewaySettings(scan_interval_s=0.5), broadcast=BROADCAST
        )
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        socket = await connected_socket()
        try:
            for n in range(plugs * 2):
                plugging = n % 2 == 0
                wanted = "charging" if plugging else "cable"
                started = time.perf_counter()
                if plugging:
                    emulated.plug_in(Car(max_current_a=16))
                else:
                    emulated.unplug()
                while True:
                    frame = await socket.receive_json_from(timeout=30)  # type: ignore[attr-defined]
                    if frame.get("activity") == wanted:
                        break
                times.append(time.perf_counter() - started)
        finally:
            await socket.disconnect()  # type: ignore[attr-defined]
            stop.set()
            await asyncio.wait_for(task, 10)
    return times


def dashboard_cost(station_counts: list[int], repeat: int) -> None:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from chargers.models import Station

    client = Client()
    client.force_login(User.objects.get(username="bench"))
    live_status = {"state": 3, "plug": 7, "power_w": 11000.0, "hardware_current_a": 16.0}
    for count in station_counts:
        Station.objects.bulk_create(
            Station(
                name=f"Station {n:04d}",
                is_online=True,
                capabilities=["current_timer", "energy_limit", "remote_start", "display"],
                live_status=live_status,
            )
            for n in range(Station.objects.count(), count)
        )
        client.get("/")  # warm templates
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get("/")
            times.append(time.perf_counter() - started)
            assert response.status_code == 200
        with CaptureQueriesContext(connection) as queries:
            client.get("/")
        print(
            f"dashboard, {count:3d} stations: median {statistics.median(times) * 1000:7.1f} ms, "
            f"{len(queries)} SQL queries, {len(response.content) // 1024} KiB"
        )


def chart_cost(repeat: int) -> None:
    from django.db import connection
    from django.utils import timezone

    from chargers import charts
    from chargers.models import Reading, Station

    station = Station.objects.create(name="A year of readings")
    now = timezone.now()
    # A year at the 300 s heartbeat, and the last two days as stored (every 10 s).
    moments = [now - timedelta(seconds=300 * n) for n in range(365 * 288)]
    moments += [now - timedelta(seconds=10 * n) for n in range(2 * 8640)]
    Reading.objects.bulk_create(
        (
            Reading(
                station=station,
                at=at,
                power_w=7000.0,
                current_1_a=10.0,
                current_2_a=10.0,
                current_3_a=10.0,
                total_energy_kwh=(now - at).total_seconds() / -3600 + 10000,
            )
            for at in moments
        ),
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        charts.last_day(station.pk)
        charts.energy_per_day(station.pk)
        times.append(time.perf_counter() - started)
    print(
        f"station charts over {len(moments):,} readings: median "
        f"{statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms "
        f"(24 h in 5-minute slots + 30 days, grouped in SQL)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--plugs", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=10)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        set_up_django(Path(data_dir), ALLOWED_HOSTS="testserver,127.0.0.1")
        print(f"publish → frame:  {percentiles(asyncio.run(publish_to_frame(options.samples)))}")
        print(f"station → frame:  {percentiles(asyncio.run(station_to_frame(options.plugs)))}")
        dashboard_cost([10, 200], options.repeat)
        chart_cost(options.repeat)


if __name__ == "__main__":
    main()
