"""What protects the admin and the data: login throttling, file permissions, logs,
the reverse-proxy mode and refused WebSocket paths."""

import logging
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path

from kebaweb.asgi import application

MANAGE = Path(__file__).resolve().parents[1] / "manage.py"
LOGIN_URL = "/admin/login/"


def broken_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(f"broken view {request.GET['marker']}")


# The test urlconf for the HTTP 500 test: the app has no view that fails on purpose.
urlpatterns = [path("broken/", broken_view)]


def log_in(client: Client, username: str, password: str) -> int:
    """Posts the admin's login form; 302 means logged in, 200 the form again."""
    response = client.post(
        LOGIN_URL, {"username": username, "password": password, "next": "/admin/"}
    )
    return response.status_code


@pytest.mark.django_db
def test_it_locks_a_login_after_repeated_wrong_passwords() -> None:
    User.objects.create_superuser("owner", password="right horse battery")
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, "owner", "wrong") == 200

    locked = client.post(LOGIN_URL, {"username": "owner", "password": "wrong"})
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    assert f"for {minutes} minutes" in " ".join(locked.content.decode().split())

    assert log_in(client, "owner", "right horse battery") == 429


@pytest.mark.django_db
def test_it_keeps_other_logins_open_while_one_is_locked() -> None:
    User.objects.create_superuser("owner", password="right horse battery")
    User.objects.create_superuser("partner", password="another long phrase")
    guesser = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(guesser, "owner", "wrong")
    assert log_in(guesser, "owner", "right horse battery") == 429

    assert log_in(Client(), "partner", "another long phrase") == 302
    from_elsewhere = Client(REMOTE_ADDR="127.0.0.77")
    assert log_in(from_elsewhere, "owner", "right horse battery") == 302


def test_it_keeps_the_data_dir_and_database_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    # An install from before this rule: files created with the umask's 0644.
    for name in ("kebaweb.sqlite3", "secret_key"):
        (data / name).write_text("")
        (data / name).chmod(0o644)
    (data / "secret_key").write_text("an old key that must stay secret")

    run_manage(data, "migrate", "-v0")

    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("kebaweb.sqlite3", "secret_key"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    assert (data / "secret_key").read_text() == "an old key that must stay secret"


def test_it_creates_a_new_database_private(tmp_path: Path) -> None:
    data = tmp_path / "new"
    database = tmp_path / "elsewhere.sqlite3"

    run_manage(data, "migrate", "-v0", DATABASE_URL=f"sqlite:///{database}")

    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "secret_key").stat().st_mode) == 0o600


def test_it_passes_the_deploy_check_behind_a_tls_proxy(tmp_path: Path) -> None:
    result = run_manage(
        tmp_path,
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        KEBAWEB_BEHIND_TLS_PROXY="1",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="charging.example.org",
    )
    assert "WARNINGS" not in result.stderr + result.stdout


def test_it_warns_about_plain_http_without_the_proxy_setting(tmp_path: Path) -> None:
    # The other side of the test above: the deploy check does see these settings.
    result = subprocess.run(
        [sys.executable, str(MANAGE), "check", "--deploy"],
        env=environment(tmp_path, ALLOWED_HOSTS="charging.example.org"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "security.W004" in result.stderr  # no HSTS
    assert "security.W012" in result.stderr  # session cookie sent over plain HTTP


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_it_writes_a_server_error_to_the_log_file() -> None:
    marker = secrets.token_hex(8)
    response = Client(raise_request_exception=False).get("/broken/", {"marker": marker})
    assert response.status_code == 500

    for handler in logging.getLogger().handlers:
        handler.flush()
    log = (settings.LOG_DIR / "kebaweb.log").read_text()
    assert f"RuntimeError: broken view {marker}" in log
    assert "Internal Server Error: /broken/" in log


@pytest.mark.django_db(transaction=True)
async def test_it_refuses_a_websocket_to_an_unknown_path(caplog: pytest.LogCaptureFixture) -> None:
    communicator = WebsocketCommunicator(
        application,
        "/ws/nosuch/",
        headers=[(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")],
    )
    with caplog.at_level(logging.ERROR):
        connected, _ = await communicator.connect(timeout=10)
    assert not connected
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def environment(data_dir: Path, **variables: str) -> dict[str, str]:
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KEBAWEB_", "KEBA_", "DATABASE_URL", "SECRET_KEY", "ALLOWED_HOSTS"))
    }
    return inherited | {"KEBAWEB_DATA_DIR": str(data_dir)} | variables


def run_manage(
    data_dir: Path, *arguments: str, **variables: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, str(MANAGE), *arguments],
        env=environment(data_dir, **variables),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result
