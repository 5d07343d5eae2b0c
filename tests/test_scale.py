"""A gateway as its own process, the web side in another, talking through a real
Redis server (channel layer, started here) and sharing one database: a SQLite
file, or in the scaled half of the suite a PostgreSQL database."""

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from chargers.kecontact.emulator import Fleet
from tests.databases import migrated_database
from tests.emulated import BROADCAST, free_port, station_address, until

MANAGE = Path(__file__).resolve().parents[1] / "manage.py"
# Not the run's GATEWAY_HOST: a gateway left over from another test must not matter here.
GATEWAY = station_address(210)
STATION = station_address(211)

WEB_SIDE = f"""
from chargers import services
station = services.register_station("Garage", "{STATION}")
services.queue_command(station, "curr 10000", "scale test")
print("registered", station.serial)
"""


@asynccontextmanager
async def process(
    *command: str, env: dict[str, str], ready: bytes
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process, once it printed `ready`; terminated afterwards."""
    child = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        assert child.stdout is not None
        async with asyncio.timeout(30):
            while ready not in (line := await child.stdout.readline()):
                assert line, f"{command[0]} ended before it was ready"
        yield child
    finally:
        if child.returncode is None:
            child.terminate()
            await child.wait()


async def manage(*args: str, env: dict[str, str]) -> str:
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(MANAGE), *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    output, _ = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, output
    return output.decode()


async def test_the_web_side_reaches_a_separate_gateway_through_redis(tmp_path: Path) -> None:
    with migrated_database(tmp_path, migrated=False) as database:
        port = free_port()
        redis_command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
        redis_command += ["--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
        env = database.env() | {
            "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "PYTHONUNBUFFERED": "1",
            "KEBA_BROADCAST": BROADCAST,
        }
        async with (
            process(*redis_command, env=env, ready=b"Ready to accept connections"),
            Fleet(broadcast=BROADCAST) as fleet,
        ):
            emulated = await fleet.add(STATION, "p30c", serial="31000001")
            await manage("migrate", env=env)
            gateway_command = [sys.executable, str(MANAGE), "gateway", "--bind", GATEWAY]
            async with process(*gateway_command, env=env, ready=b"gateway listening") as gateway:
                # Identify through the gateway, store the station, queue a command.
                said = await manage("shell", "-c", WEB_SIDE, env=env)
                await until(lambda: emulated.user_current_ma == 10000)
                await until(
                    lambda: (
                        database.rows("SELECT status FROM chargers_command")
                        == [{"status": "verified"}]
                    )
                )
                gateway.send_signal(signal.SIGTERM)
                stopped = await asyncio.wait_for(gateway.wait(), 15)
        assert "registered 31000001" in said
        assert database.rows("SELECT serial, model_label FROM chargers_station") == [
            {"serial": "31000001", "model_label": "P30 c-series"}
        ]
        assert stopped == 0
