"""A migrated database of its own for each program a test starts (gateway, serve, daphne).

In the SQLite half that is a file in the program's data dir. In the scaled half
(DATABASE_URL names a PostgreSQL server, REDIS_URL a Redis) it is a database on
that server, copied from a template migrated once per test process, and
dropped afterwards; the programs also get REDIS_URL, as at scale.
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dj_database_url

MANAGE = Path(__file__).resolve().parents[1] / "manage.py"
SERVER_URL = os.environ.get("DATABASE_URL", "")
SCALED = bool(SERVER_URL) and dj_database_url.parse(SERVER_URL)["ENGINE"].endswith("postgresql")
# Each pytest process has its own template, so two runs against one server never meet.
TEMPLATE_NAME = f"kebaweb_tests_template_{os.getpid()}"


@dataclass(frozen=True)
class ChildDatabase:
    data_dir: Path
    url: str  # empty on SQLite: the file in the data dir, as `serve` uses by default

    def env(self) -> dict[str, str]:
        """The environment for a program that is to use this database."""
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env["KEBAWEB_DATA_DIR"] = str(self.data_dir)
        if SCALED:
            env["DATABASE_URL"] = self.url
            env["REDIS_URL"] = os.environ["REDIS_URL"]
        return env

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """Read what the programs stored, as plain values (addresses as text)."""
        if SCALED:
            import psycopg
            from psycopg.rows import dict_row
            from psycopg.types.string import TextLoader

            with psycopg.connect(self.url, row_factory=dict_row, autocommit=True) as db:
                db.adapters.register_loader("inet", TextLoader)
                return list(db.execute(sql.encode()).fetchall())
        import sqlite3

        path = self.data_dir / "kebaweb.sqlite3"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=20) as db:
            cursor = db.execute(sql)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _server_url(name: str) -> str:
    parts = dj_database_url.parse(SERVER_URL)
    return f"postgres://{parts['USER']}:{parts['PASSWORD']}@{parts['HOST']}:{parts['PORT']}/{name}"


def _on_server(*statements: str) -> None:
    import psycopg

    with psycopg.connect(SERVER_URL, autocommit=True) as db:
        for statement in statements:
            db.execute(statement.encode())


def _migrate(env: dict[str, str]) -> None:
    command = [sys.executable, str(MANAGE), "migrate", "-v", "0"]
    subprocess.run(command, env=env, check=True, timeout=180)


_template: Path | str | None = None


def _migrated_template() -> Path | str:
    """Made once per process: a migrated file (SQLite) or database (PostgreSQL)."""
    global _template
    if _template is None:
        folder = Path(tempfile.mkdtemp(prefix="kebaweb-tests-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        if SCALED:
            _on_server(f'CREATE DATABASE "{TEMPLATE_NAME}"')
            atexit.register(_on_server, f'DROP DATABASE IF EXISTS "{TEMPLATE_NAME}" WITH (FORCE)')
            _migrate(ChildDatabase(folder, _server_url(TEMPLATE_NAME)).env())
            _template = TEMPLATE_NAME
        else:
            _migrate(ChildDatabase(folder, "").env())
            _template = folder
    return _template


@contextmanager
def migrated_database(data_dir: Path, migrated: bool = True) -> Iterator[ChildDatabase]:
    """A database for programs run with `data_dir`, removed afterwards; empty
    unless `migrated`."""
    if not SCALED:
        if migrated:
            template = _migrated_template()
            assert isinstance(template, Path)
            for file in template.glob("kebaweb.sqlite3*"):
                shutil.copy(file, data_dir / file.name)
        yield ChildDatabase(data_dir, "")
        return
    name = f"kebaweb_tests_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{_migrated_template()}"' if migrated else ""
    _on_server(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield ChildDatabase(data_dir, _server_url(name))
    finally:
        # FORCE: a gateway killed with SIGKILL may not have hung up yet.
        _on_server(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
