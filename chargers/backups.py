"""Backups of the database while kebaweb runs; `manage.py backup FILE` calls this.

Copying the SQLite file while the gateway writes can give a torn copy; SQLite's
online backup API copies one consistent snapshot. PostgreSQL's pg_dump reads one
consistent snapshot too.
"""

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from django.db import connection


class BackupError(Exception):
    """The backup could not be made; the text says why."""


def back_up(target: Path) -> str:
    """Write a backup of the default database to `target`; returns how to restore it."""
    if target.exists():
        raise BackupError(f"{target} exists: choose a new file name")
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        _sqlite(Path(settings["NAME"]), target)
        return (
            f"to restore it, stop kebaweb, copy {target} over {settings['NAME']}, "
            "delete the -wal and -shm files beside it, and start kebaweb"
        )
    if connection.vendor == "postgresql":
        _pg_dump(settings, target)
        return f"to restore it: pg_restore --no-owner --dbname NEW_EMPTY_DATABASE {target}"
    raise BackupError(f"no backup for {connection.vendor} here: use that database's own tools")


def _sqlite(source: Path, target: Path) -> None:
    # Read-only: a backup must never create or change the live database.
    live = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=20)
    copy = sqlite3.connect(target)
    try:
        # In one step: in WAL mode a reader does not block the gateway's writes,
        # while a copy in several steps starts over whenever the gateway writes.
        live.backup(copy)
    finally:
        copy.close()
        live.close()


def _pg_dump(settings: dict[str, Any], target: Path) -> None:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise BackupError("pg_dump is not installed: install PostgreSQL's client programs")
    command = [pg_dump, "--format=custom", "--file", str(target), "--dbname", settings["NAME"]]
    for option, name in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
        if settings.get(name):
            command += [option, str(settings[name])]
    env = os.environ | ({"PGPASSWORD": settings["PASSWORD"]} if settings.get("PASSWORD") else {})
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        target.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
