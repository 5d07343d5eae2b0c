"""The dashboard in real Chromium, against a running `serve` and emulated stations.

The stations are emulated in this process on the run's loopback range; `serve`
polls them like real ones. Screenshots land in data/test-artefacts/ (not committed).
"""

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

from chargers.kecontact.emulator import Car, Fleet
from chargers.kecontact.timing import Clock, Timing
from tests.emulated import BROADCAST, free_port, station_address
from tests.people import PASSWORD
from tests.test_serve import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    MANAGE,
    environment,
)
from tests.test_serve import (
    pytestmark as serve_only,
)

# `serve` is the embedded layout (see tests/test_serve.py); its data stays in its own SQLite file.
pytestmark = serve_only

UDP_BIND = station_address(210)
GARAGE = station_address(211)
CARPORT = station_address(212)
ARTEFACTS = Path(__file__).resolve().parents[1] / "data" / "test-artefacts"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
WAIT_MS = 30_000

SET_UP = f"""
from django.contrib.auth.models import Group, User
from chargers.models import Station
for name, group in (("anna", "members"), ("vera", "viewers")):
    user = User.objects.create_user(name, password={PASSWORD!r}, first_name=name.title())
    user.groups.add(Group.objects.get(name=group))
Station.objects.create(name="Garage", address={GARAGE!r}, poll_interval_s=5)
Station.objects.create(name="Carport", address={CARPORT!r}, poll_interval_s=5)
"""


def prepare(data_dir: Path, set_up: str = SET_UP) -> None:
    """A migrated database in `data_dir` with what the Python text `set_up` creates."""
    env = environment(data_dir)
    for command in (["migrate", "-v", "0"], ["shell", "-c", set_up]):
        subprocess.run([sys.executable, str(MANAGE), *command], env=env, check=True)


@asynccontextmanager
async def serve(
    data_dir: Path, port: int, udp_bind: str = UDP_BIND
) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, str(MANAGE), "serve", "--port", str(port), "--no-tasks"],
        *["--udp-bind", udp_bind],
        env=environment(data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(60):
            while b"kebaweb is running at" not in (line := await process.stdout.readline()):
                assert line, "serve exited before it was ready"
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def log_in(browser: Browser, port: int, who: str, viewport: dict[str, int]) -> Page:
    page = await browser.new_page(viewport=viewport)  # type: ignore[arg-type]
    await page.goto(f"http://127.0.0.1:{port}/")
    await page.get_by_label("User name").fill(who)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.locator("#live-status[data-state=live]").wait_for(timeout=WAIT_MS)
    return page


async def fits(page: Page) -> bool:
    width: int = await page.evaluate("document.documentElement.scrollWidth")
    return width <= (page.viewport_size or PHONE)["width"]


async def test_a_member_watches_a_charge_and_controls_it_live(tmp_path: Path) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    await asyncio.to_thread(prepare, tmp_path)
    async with (
        Fleet(Clock(1), Timing(), broadcast=BROADCAST) as fleet,
        async_playwright() as playwright,
    ):
        await fleet.add(GARAGE, "p30c", serial="31000211")
        await fleet.add(CARPORT, "p20", serial="20000212")
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        async with serve(tmp_path, port) as process:
            page = await log_in(browser, port, "anna", PHONE)
            garage = page.locator("article.station", has_text="Garage")
            # The gateway finds the stations; the socket turns the cards online
            # (the badge may come first, from the page, before the first poll's frame).
            await garage.locator(".badge.online").wait_for(timeout=WAIT_MS)
            await garage.locator(".activity", has_text="no car").wait_for(timeout=WAIT_MS)

            fleet[GARAGE].plug_in(Car(max_current_a=16))
            await garage.locator(".activity", has_text="charging").wait_for(timeout=WAIT_MS)
            await garage.locator(".power", has_text="11.0 kW").wait_for(timeout=WAIT_MS)

            await garage.locator("summary", has_text="Controls").click()
            current = garage.locator("form.control", has_text="Current (A)")
            await current.get_by_label("Current (A)").fill("7.5")
            await current.get_by_role("button", name="Set").click()
            error = garage.locator(".field-error", has_text="enter whole amperes from 6 to 32 A")
            await error.wait_for(timeout=WAIT_MS)
            current = garage.locator("form.control", has_text="Current (A)")
            await current.get_by_label("Current (A)").fill("10")
            await current.get_by_role("button", name="Set").click()
            await garage.locator(".command-status", has_text="verified").wait_for(timeout=WAIT_MS)
            await garage.locator(".limit", has_text="10.0 A").wait_for(timeout=WAIT_MS)
            carport = page.locator("article.station", has_text="Carport")
            assert await carport.locator("text=Text on the display").count() == 0
            assert await fits(page)
            await page.screenshot(path=str(ARTEFACTS / "dashboard-phone.png"), full_page=True)

            # The server goes away: the page says so.
            process.kill()
            await process.wait()
            await page.locator("#live-status[data-state=down]").wait_for(timeout=WAIT_MS)
            assert "Live connection lost" in await page.locator("#live-status").inner_text()

        async with serve(tmp_path, port):
            # …and comes back: the page reconnects by itself.
            await page.locator("#live-status[data-state=live]").wait_for(timeout=60_000)
            await garage.locator(".activity", has_text="charging").wait_for(timeout=WAIT_MS)

            await page.goto(f"http://127.0.0.1:{port}/admin/")
            assert "not authorized to access this page" in await page.content()

            desktop = await log_in(browser, port, "anna", DESKTOP)
            await desktop.screenshot(path=str(ARTEFACTS / "dashboard-desktop.png"), full_page=True)
            await desktop.get_by_role("link", name="Garage").click()
            await desktop.locator("#charts svg").first.wait_for(timeout=WAIT_MS)
            await desktop.screenshot(path=str(ARTEFACTS / "station-desktop.png"), full_page=True)
            await page.goto(desktop.url)
            await page.locator("#live-status[data-state=live]").wait_for(timeout=WAIT_MS)
            assert await fits(page)
            await page.screenshot(path=str(ARTEFACTS / "station-phone.png"), full_page=True)
            await page.goto(f"http://127.0.0.1:{port}/sessions/")
            assert await fits(page)

            viewer = await log_in(browser, port, "vera", PHONE)
            await viewer.locator(".badge.online").first.wait_for(timeout=WAIT_MS)
            assert await viewer.locator("form.control").count() == 0
            assert await viewer.locator("text=Controls").count() == 0
        await browser.close()
