"""README's "Backups": a backup taken while the gateway writes restores to a working
database that holds every session finished before it, in both layouts."""

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

from chargers.kecontact.emulator import EmulatedStation
from tests import fault_scenarios as scenarios
from tests.databases import SCALED, ChildDatabase, migrated_database
from tests.emulated import station_address

MANAGE = Path(__file__).resolve().parents[1] / "manage.py"
FINISHED = "SELECT keba_session_id FROM chargers_session WHERE ended_at IS NOT NULL"


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(MANAGE), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def finished_ids(database: ChildDatabase) -> set[int]:
    return {row["keba_session_id"] for row in database.rows(FINISHED)}


async def keep_charging(run: scenarios.Run, station: EmulatedStation, stop: asyncio.Event) -> None:
    """Short sessions, one after another, so that the gateway writes all the while."""
    while not stop.is_set():
        station.plug_in(scenarios.charging_car())
        await run.charge(station, 10)
        station.unplug()
        await run.charge(station, 5)


def restore(backup: Path, into: ChildDatabase) -> None:
    """What the README says to do, into an empty database."""
    if SCALED:
        pg_restore = shutil.which("pg_restore")
        assert pg_restore, "PostgreSQL's client programs are installed with the server"
        command = [pg_restore, "--no-owner", "--exit-on-error", "--dbname", into.url, str(backup)]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    else:
        shutil.copy(backup, into.data_dir / "kebaweb.sqlite3")


async def test_a_backup_taken_while_the_gateway_writes_restores_every_finished_session(
    tmp_path: Path,
) -> None:
    async with scenarios.scenario("backup while writing") as run:
        station = await run.fleet.add(station_address(230), "p30c", serial="33000001")
        await run.start_gateway(setup={"stations": [scenarios.station_row(station.host)]})
        stop = asyncio.Event()
        charging = asyncio.create_task(keep_charging(run, station, stop))
        try:
            await run.until("three finished sessions", lambda: len(finished_ids(run.database)) >= 3)
            before = await asyncio.to_thread(finished_ids, run.database)
            backup = tmp_path / "kebaweb.backup"
            said = await asyncio.to_thread(manage, run.env(), "backup", str(backup))
            after = await asyncio.to_thread(finished_ids, run.database)
            # The gateway kept writing: it finished sessions after the backup.
            await run.until(
                "a session after the backup", lambda: finished_ids(run.database) > after
            )
        finally:
            stop.set()
            await charging
        assert run.result.ok, run.result.report()
    assert "to restore it" in said

    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    with migrated_database(restored_dir, migrated=False) as restored:
        await asyncio.to_thread(restore, backup, restored)
        env = restored.env()
        await asyncio.to_thread(manage, env, "check", "--database", "default")
        await asyncio.to_thread(manage, env, "migrate", "--check")
        kept = await asyncio.to_thread(finished_ids, restored)
    assert before <= kept <= after | kept
    assert kept <= {record.session_id for record in station.history}
