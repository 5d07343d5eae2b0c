"""The live socket lives only as long as its login: logging out, a deactivated account,
a session gone from the database or a role taken away closes it, and the page follows."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from playwright.async_api import async_playwright
from pytest_django.fixtures import Settings

from chargers import live, socket_sessions
from chargers.roles import VIEWERS
from kebaweb.asgi import application
from tests.emulated import free_port
from tests.people import PASSWORD, person
from tests.test_dashboard_browser import WAIT_MS, prepare, serve
from tests.test_serve import CHROMIUM, CHROMIUM_FLAGS

pytestmark = pytest.mark.django_db(transaction=True)

HEADERS = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]


@pytest.fixture(autouse=True)
def _rechecks_only_when_told(monkeypatch: pytest.MonkeyPatch) -> None:
    # An hour: a socket that closes in these tests was told to, not re-checked by the clock.
    monkeypatch.setattr(socket_sessions, "RECHECK_EVERY_S", 3600.0)


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@asynccontextmanager
async def live_socket(client: Client | None = None) -> AsyncIterator[WebsocketCommunicator]:
    headers = list(HEADERS)
    if client is not None:
        name = django_settings.SESSION_COOKIE_NAME
        headers.append((b"cookie", f"{name}={client.cookies[name].value}".encode()))
    communicator = WebsocketCommunicator(application, "/ws/live/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    try:
        yield communicator
    finally:
        await communicator.disconnect()


async def close_code(ws: WebsocketCommunicator, timeout_s: float = 5.0) -> int:
    """Waits for the server to close the socket; says how."""
    async with asyncio.timeout(timeout_s):
        while (sent := await ws.receive_output(timeout_s))["type"] != "websocket.close":
            pass
    code: int = sent["code"]
    return code


async def still_streams(ws: WebsocketCommunicator) -> bool:
    await live.publish_status(7, {"power_w": 1.0})
    frame: dict[str, Any] = await ws.receive_json_from(timeout=10)
    return frame == {"type": "status", "station": 7, "power_w": 1.0}


async def test_it_closes_the_socket_when_its_session_logs_out() -> None:
    client = await sync_to_async(logged_in)(await sync_to_async(person)("viewer"))
    async with live_socket(client) as ws:
        await sync_to_async(client.post)("/logout/")
        assert await close_code(ws) == socket_sessions.SIGNED_OUT


async def test_logging_out_closes_that_sessions_socket_only(settings: Settings) -> None:
    settings.PUBLIC_DASHBOARD = True
    anna = await sync_to_async(person)("viewer", "anna")
    phone, laptop = await sync_to_async(logged_in)(anna), await sync_to_async(logged_in)(anna)
    bert = await sync_to_async(logged_in)(await sync_to_async(person)("member", "bert"))
    async with (
        live_socket(phone) as annas_phone,
        live_socket(laptop) as annas_laptop,
        live_socket(bert) as berts,
        live_socket() as kiosk,
    ):
        await sync_to_async(phone.post)("/logout/")
        assert await close_code(annas_phone) == socket_sessions.SIGNED_OUT
        assert await still_streams(annas_laptop)
        assert await still_streams(berts)
        assert await still_streams(kiosk)


async def test_it_closes_the_socket_when_the_account_is_deactivated() -> None:
    user = await sync_to_async(person)("member")
    async with live_socket(await sync_to_async(logged_in)(user)) as ws:
        user.is_active = False
        await user.asave()
        assert await close_code(ws) == socket_sessions.SIGNED_OUT


async def test_it_closes_the_socket_when_the_password_changes() -> None:
    user = await sync_to_async(person)("viewer")
    async with live_socket(await sync_to_async(logged_in)(user)) as ws:
        await sync_to_async(user.set_password)("another long test password 43")
        await user.asave()
        assert await close_code(ws) == socket_sessions.SIGNED_OUT


async def test_it_closes_the_socket_when_the_role_is_taken_away() -> None:
    user = await sync_to_async(person)("viewer")
    async with live_socket(await sync_to_async(logged_in)(user)) as ws:
        await user.groups.aclear()
        assert await close_code(ws) == socket_sessions.ROLE_CHANGED


async def test_it_closes_the_socket_when_a_member_is_made_a_viewer() -> None:
    user = await sync_to_async(person)("member")
    viewers = await Group.objects.aget_or_create(name=VIEWERS)
    async with live_socket(await sync_to_async(logged_in)(user)) as ws:
        await user.groups.aset([viewers[0]])
        assert await close_code(ws) == socket_sessions.ROLE_CHANGED


async def test_it_closes_the_socket_when_a_group_loses_the_user() -> None:
    user = await sync_to_async(person)("viewer")
    viewers = await Group.objects.aget(name=VIEWERS)
    async with live_socket(await sync_to_async(logged_in)(user)) as ws:
        await viewers.user_set.aremove(user)
        assert await close_code(ws) == socket_sessions.ROLE_CHANGED


@pytest.mark.parametrize("how", ["deleted", "expired"])
async def test_a_recheck_closes_the_socket_of_a_session_gone_without_logout(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket_sessions, "RECHECK_EVERY_S", 0.2)
    async with live_socket(
        await sync_to_async(logged_in)(await sync_to_async(person)("viewer"))
    ) as ws:
        # Straight in the table: no signal tells anybody.
        if how == "deleted":
            await Session.objects.all().adelete()
        else:
            await Session.objects.aupdate(expire_date=timezone.now() - timedelta(seconds=1))
        assert await close_code(ws, timeout_s=10) == socket_sessions.SIGNED_OUT


async def test_logging_in_on_another_device_leaves_the_socket_open() -> None:
    # Every login saves the user (last_login), which makes the user's sockets check again.
    user = await sync_to_async(person)("viewer")
    async with live_socket(await sync_to_async(logged_in)(user)) as ws:
        login = {"username": "viewer", "password": PASSWORD}
        assert (await sync_to_async(Client().post)("/login/", login)).status_code == 302
        assert await still_streams(ws)


@pytest.mark.sqlite_only(reason="`serve` is the embedded layout (tests/test_serve.py)")
async def test_a_dashboard_open_when_its_session_logs_out_goes_to_the_login_page(
    tmp_path: Path,
) -> None:
    port = free_port()
    await asyncio.to_thread(prepare, tmp_path)
    async with async_playwright() as playwright, serve(tmp_path, port):
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        context = await browser.new_context()
        dashboard = await context.new_page()
        await dashboard.goto(f"http://127.0.0.1:{port}/")
        await dashboard.get_by_label("User name").fill("vera")
        await dashboard.get_by_label("Password").fill(PASSWORD)
        await dashboard.get_by_role("button", name="Log in").click()
        await dashboard.locator("#live-status[data-state=live]").wait_for(timeout=WAIT_MS)

        other_tab = await context.new_page()
        await other_tab.goto(f"http://127.0.0.1:{port}/")
        await other_tab.get_by_role("button", name="Log out").click()

        await dashboard.get_by_label("User name").wait_for(timeout=WAIT_MS)
        assert "/login/" in dashboard.url
        await browser.close()
