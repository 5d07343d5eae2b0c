"""Time one full poll round (reports 2, 3 and 100 of every station).

Our client and keba-kecontact 4.3.x poll the same emulated fleets, run in a
separate process on 127.1.0.2 and up, in the same run. The pacing floor is
two 100 ms gaps per station, about 0.2 s per round whatever the fleet size.

    .venv/bin/python bench/poll_round.py [--sizes 10 50 200] [--skip-peer]
"""

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chargers.kecontact.client import KebaClient
from chargers.kecontact.emulator import Car, Fleet

GATEWAY = "127.1.0.1"  # away from the addresses the tests use
REPORTS = (2, 3, 100)


def station_hosts(count: int) -> list[str]:
    return [f"127.1.{(n + 2) // 256}.{(n + 2) % 256}" for n in range(count)]


def run_fleet(count: int, ready: Event, stop: Event) -> None:
    async def main() -> None:
        async with Fleet() as fleet:
            for host in station_hosts(count):
                station = await fleet.add(host, "p30c")
                station.plug_in(Car())
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.1)

    asyncio.run(main())


async def our_round(client: KebaClient, hosts: list[str]) -> float:
    async def poll(host: str) -> None:
        for report_id in REPORTS:
            await client.report(host, report_id)

    started = time.perf_counter()
    await asyncio.gather(*(poll(host) for host in hosts))
    return time.perf_counter() - started


async def measure_ours(hosts: list[str], rounds: int = 3) -> float:
    async with KebaClient(GATEWAY) as client:
        await asyncio.gather(*(client.identify(host) for host in hosts))
        times = []
        for _ in range(rounds):
            await asyncio.sleep(0.1)  # rounds are seconds apart in use; don't time the gap
            times.append(await our_round(client, hosts))
        assert client.stats.timeouts == 0, "replies were lost"
        return statistics.median(times)


async def set_up(keba: Any, host: str) -> Any:
    """keba-kecontact gives up on the first lost reply; give it three tries."""
    from keba_kecontact.connection import SetupError

    for attempt in range(3):
        try:
            return await keba.setup_charging_station(host, periodic_request=False)
        except SetupError:
            if attempt == 2:
                raise
    return None


async def measure_peer(hosts: list[str]) -> float:
    from keba_kecontact.connection import KebaKeContact

    KebaKeContact._instance = None
    keba = KebaKeContact(asyncio.get_running_loop(), timeout=5)
    await keba.init_socket(GATEWAY)
    try:
        peers = [await set_up(keba, host) for host in hosts]
        pending = {(h, str(r)) for h in hosts for r in REPORTS}
        done = asyncio.Event()

        def received(station: object, data: dict[str, object]) -> None:
            host = station.device_info.host  # type: ignore[attr-defined]
            pending.discard((host, str(data.get("ID"))))
            if not pending:
                done.set()

        for peer in peers:
            peer.add_callback(received)
        started = time.perf_counter()
        await asyncio.gather(*(peer.request_data() for peer in peers))
        # Its global lock lets one datagram through per 100 ms: allow for that.
        expected = len(pending)
        try:
            await asyncio.wait_for(done.wait(), 0.15 * expected + 30)
        except TimeoutError:
            print(f"keba-kecontact: {len(pending)} of {expected} replies never came")
        return time.perf_counter() - started
    finally:
        keba.close()
        KebaKeContact._instance = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--skip-peer", action="store_true", help="only our client")
    args = parser.parse_args()
    print(f"{'stations':>8}  {'ours (s)':>9}  {'keba-kecontact (s)':>18}  {'ratio':>6}")
    for size in args.sizes:
        ready, stop = multiprocessing.Event(), multiprocessing.Event()
        process = multiprocessing.Process(target=run_fleet, args=(size, ready, stop))
        process.start()
        try:
            if not ready.wait(60):
                raise SystemExit("the emulated fleet did not start")
            hosts = station_hosts(size)
            ours = asyncio.run(measure_ours(hosts))
            if args.skip_peer:
                print(f"{size:>8}  {ours:>9.3f}  {'-':>18}  {'-':>6}")
                continue
            time.sleep(0.2)  # the stations' pacing applies across programs too
            peer = asyncio.run(measure_peer(hosts))
            print(f"{size:>8}  {ours:>9.3f}  {peer:>18.3f}  {peer / ours:>5.1f}x")
        finally:
            stop.set()
            process.join(10)


if __name__ == "__main__":
    main()
