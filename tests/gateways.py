"""A real gateway for tests: quick to scan, started and stopped around a block."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chargers.gateway import Gateway, GatewaySettings
from chargers.kecontact.client import KebaClient
from tests.emulated import BROADCAST

FAST = GatewaySettings(scan_interval_s=0.2, search_interval_s=0, heartbeat_s=60)


@asynccontextmanager
async def running(client: KebaClient, settings: GatewaySettings = FAST) -> AsyncIterator[Gateway]:
    gateway = Gateway(client, settings=settings, broadcast=BROADCAST)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        yield gateway
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
