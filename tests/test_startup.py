"""Start-up as a person does it: a bad setting or option stops `manage.py` with
exit status 2 and one line naming what to change, never a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.emulated import GATEWAY_HOST

MANAGE = Path(__file__).resolve().parents[1] / "manage.py"
# The tests run as root, and permissions do not stop root: it has the
# capabilities to override them. Where a case is about permissions, manage.py
# runs without those, so it meets the permissions a service's own user would.
# (Running it as another user fails earlier: the interpreter is in /root.)
OBEY_PERMISSIONS = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []
)


def start(
    data_dir: Path,
    *arguments: str,
    env: dict[str, str] | None = None,
    obey_permissions: bool = False,
) -> subprocess.CompletedProcess[str]:
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KEBAWEB_", "KEBA_", "DATABASE_URL", "ALLOWED_HOSTS"))
    }
    return subprocess.run(
        [*(OBEY_PERMISSIONS if obey_permissions else []), sys.executable, str(MANAGE), *arguments],
        env=inherited
        | {"KEBAWEB_DATA_DIR": str(data_dir), "PYTHONDONTWRITEBYTECODE": "1"}
        | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """One line says what is wrong; for a bad option argparse prints its usage first."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    message = [line for line in lines if not line.startswith(("usage:", " "))]
    assert len(message) == 1, result.stderr
    for word in words:
        assert word in message[0]
    return message[0]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("KEBA_BIND", "999.1.1.1", "expected an IPv4 address"),
        ("KEBA_BROADCAST", "garbage", "expected an IPv4 address"),
        ("KEBAWEB_Q_WORKERS", "-1", "at least 1"),
        ("KEBAWEB_Q_WORKERS", "0", "at least 1"),
        ("KEBAWEB_Q_WORKERS", "two", "whole number"),
        ("KEBAWEB_TASKS", "processes", "use thread or cluster"),
        ("ALLOWED_HOSTS", "", "list the host names"),
        ("ALLOWED_HOSTS", " , ", "list the host names"),
        ("KEBAWEB_LOGIN_ATTEMPTS", "0", "at least 1"),
        ("KEBAWEB_LOGIN_COOLOFF_MINUTES", "soon", "whole number"),
        ("KEBAWEB_BEHIND_TLS_PROXY", "maybe", "use 1 (on) or 0 (off)"),
    ],
)
def test_it_names_a_bad_setting(tmp_path: Path, variable: str, value: str, expected: str) -> None:
    result = start(tmp_path, "check", env={variable: value})
    assert_refused(result, variable, expected)


def test_it_names_a_bad_setting_when_daphne_starts_the_web_app(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", "0", "kebaweb.asgi:application"],
        env=os.environ | {"KEBAWEB_DATA_DIR": str(tmp_path), "KEBA_BIND": "999.1.1.1"},
        cwd=MANAGE.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert_refused(result, "KEBA_BIND", "expected an IPv4 address")


def test_it_names_a_data_dir_it_cannot_create(tmp_path: Path) -> None:
    # Below a regular file: not even root can create a directory there.
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    result = start(blocker / "data", "check")

    assert_refused(result, "KEBAWEB_DATA_DIR", "cannot create it", "Not a directory")


def test_it_names_a_data_dir_it_cannot_write(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o500)

    result = start(data, "check", obey_permissions=True)

    assert_refused(result, "KEBAWEB_DATA_DIR", "cannot write there")


def test_it_names_a_database_it_cannot_write(tmp_path: Path) -> None:
    # A read-only file system cannot be mounted here without privileges we
    # lack; a database file without write permission is the common case anyway.
    database = tmp_path / "kebaweb.sqlite3"
    database.write_bytes(b"")
    database.chmod(0o444)

    result = start(tmp_path, "check", obey_permissions=True)

    assert_refused(result, str(database), "cannot write", "make it writable")


def test_it_names_a_database_whose_directory_it_cannot_write(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    database = shared / "kebaweb.sqlite3"
    database.write_bytes(b"")
    shared.chmod(0o500)

    result = start(
        tmp_path / "data",
        "check",
        env={"DATABASE_URL": f"sqlite:///{database}"},
        obey_permissions=True,
    )

    assert_refused(result, "DATABASE_URL", "beside the SQLite database", "make its directory")


def test_it_names_a_database_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "kebaweb.sqlite3").mkdir()

    result = start(tmp_path, "check")

    assert_refused(result, "kebaweb.sqlite3", "is a directory")


def test_it_says_the_database_server_cannot_be_reached(tmp_path: Path) -> None:
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    result = start(tmp_path, "migrate", env={"DATABASE_URL": "postgres://u:p@127.0.0.1:1/x"})

    assert_refused(result, "DATABASE_URL", "127.0.0.1", "Connection refused")


def test_it_asks_for_migrate_before_the_gateway_runs(tmp_path: Path) -> None:
    result = start(tmp_path, "gateway", "--bind", GATEWAY_HOST)

    assert_refused(result, "run `python manage.py migrate` first")


@pytest.mark.parametrize("option", ["--bind", "--broadcast"])
def test_it_names_a_bad_gateway_address(tmp_path: Path, option: str) -> None:
    result = start(tmp_path, "gateway", option, "garbage")

    assert_refused(result, f"argument {option}", "expected an IPv4 address", "'garbage'")


def test_it_names_the_sites_when_the_gateway_is_given_another(tmp_path: Path) -> None:
    start(tmp_path, "migrate", "-v0")
    add_site = "from chargers.models import Site; Site.objects.create(name='Garage')"
    start(tmp_path, "shell", "-c", add_site)

    result = start(tmp_path, "gateway", "--bind", GATEWAY_HOST, "--site", "nosuch")

    assert_refused(result, "--site 'nosuch'", "no such site", "'Garage'")


def test_it_names_a_serve_address_that_cannot_reach_the_demo(tmp_path: Path) -> None:
    # Refused before any socket is opened.
    result = start(tmp_path, "serve", "--demo", "--no-tasks", "--udp-bind", "192.0.2.1")

    assert_refused(result, "--udp-bind 192.0.2.1", "e.g. 127.0.0.1")
