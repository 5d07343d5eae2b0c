"""Small factories for tests: emulated stations and a client on loopback."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from chargers.kecontact.client import KebaClient
from chargers.kecontact.emulator import Fleet
from chargers.kecontact.timing import Clock, Timing

GATEWAY_HOST = "127.0.0.1"


@asynccontextmanager
async def fleet_and_client(
    speed: float = 10.0, reply_timeout_s: float = 0.5, retries: int = 2
) -> AsyncIterator[tuple[Fleet, KebaClient]]:
    """A fleet and a client sharing one sped-up clock and KEBA's timing table."""
    clock, timing = Clock(speed), Timing()
    client = KebaClient(
        GATEWAY_HOST, clock=clock, timing=timing, reply_timeout_s=reply_timeout_s, retries=retries
    )
    async with Fleet(clock, timing) as fleet, client:
        yield fleet, client


async def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for an outcome by re-checking it whenever the loop is idle."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)
