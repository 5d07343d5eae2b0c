"""Small factories for tests: emulated stations and a client on loopback.

Each pytest process takes its own 127.A.B.0/24 so that two runs on one host
(or a run beside `serve --demo` or `keba emulate`) never share an address:
the gateway is 127.A.B.1, the stations 127.A.B.2-254, and the emulator's
broadcast listener 127.A.B.255. Set KEBAWEB_TEST_NET=127.A.B.0/24 to choose it.
"""

import asyncio
import os
import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from ipaddress import IPv4Network

from asgiref.sync import sync_to_async

from chargers.kecontact.client import KebaClient
from chargers.kecontact.emulator import Fleet
from chargers.kecontact.timing import Clock, Timing

KEBA_PORT = 7090


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a web server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _can_bind(host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, KEBA_PORT))
        except OSError:
            return False
    return True


def _run_network() -> IPv4Network:
    chosen = os.environ.get("KEBAWEB_TEST_NET")
    if chosen:
        try:
            network = IPv4Network(chosen)
        except ValueError:
            network = None
        if network is None or network.prefixlen != 24 or not network.is_loopback:
            raise SystemExit(f"KEBAWEB_TEST_NET={chosen}: give a loopback /24, e.g. 127.42.7.0/24")
        return network
    # 127.0.x.x is the demo's and `keba emulate`'s; 127.255.x.x holds the old
    # shared broadcast address.
    rng = random.SystemRandom()
    for _ in range(1000):
        network = IPv4Network(f"127.{rng.randint(1, 254)}.{rng.randint(0, 254)}.0/24")
        if _can_bind(str(network[1])) and _can_bind(str(network[255])):
            return network
    raise SystemExit("no free loopback /24 for the tests; set KEBAWEB_TEST_NET=127.A.B.0/24")


NETWORK = _run_network()
GATEWAY_HOST = str(NETWORK[1])
BROADCAST = str(NETWORK[255])


def station_address(n: int) -> str:
    """The run's address for emulated station number `n` (2-254)."""
    if not 2 <= n <= 254:
        raise ValueError(f"station_address({n}): choose n in 2..254 (1 is the gateway)")
    return str(NETWORK[n])


@asynccontextmanager
async def fleet_and_client(
    speed: float = 10.0, reply_timeout_s: float = 0.5, retries: int = 2
) -> AsyncIterator[tuple[Fleet, KebaClient]]:
    """A fleet and a client sharing one sped-up clock and KEBA's timing table."""
    clock, timing = Clock(speed), Timing()
    client = KebaClient(
        GATEWAY_HOST, clock=clock, timing=timing, reply_timeout_s=reply_timeout_s, retries=retries
    )
    async with Fleet(clock, timing, broadcast=BROADCAST) as fleet, client:
        yield fleet, client


async def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for an outcome by re-checking it whenever the loop is idle."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


async def until(condition: Callable[[], object], timeout_s: float = 30.0) -> None:
    """Wait for an outcome that takes blocking calls to see (a file, a child
    process's database), re-checking it in a thread as the program works."""
    async with asyncio.timeout(timeout_s):
        while not await asyncio.to_thread(condition):
            await asyncio.sleep(0.05)


async def until_stored(query: Callable[[], object], timeout_s: float = 30.0) -> None:
    """Wait for a database outcome, re-checking it as the gateway works. Django's
    queries go through sync_to_async's one thread, whose connection the tests close."""
    check = sync_to_async(query)
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(0.05)
