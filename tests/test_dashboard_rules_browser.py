"""Overriding a rule from the dashboard in real Chromium, against a running `serve`
and an emulated station: the card names the rule, then the override, then the rule again."""

import asyncio
from pathlib import Path

from playwright.async_api import async_playwright

from chargers.kecontact.emulator import Car, Fleet
from chargers.kecontact.timing import Clock, Timing
from tests.emulated import BROADCAST, free_port, station_address
from tests.people import PASSWORD
from tests.test_dashboard_browser import ARTEFACTS, PHONE, WAIT_MS, fits, log_in, prepare, serve
from tests.test_serve import CHROMIUM, CHROMIUM_FLAGS
from tests.test_serve import (
    pytestmark as serve_only,
)

# `serve` is the embedded layout (see tests/test_serve.py); its data stays in its own SQLite file.
pytestmark = serve_only

UDP_BIND = station_address(240)
GARAGE = station_address(241)

SET_UP = f"""
from django.contrib.auth.models import Group, User
from chargers.models import Rule, Station
anna = User.objects.create_user("anna", password={PASSWORD!r}, first_name="Anna")
anna.groups.add(Group.objects.get(name="members"))
garage = Station.objects.create(name="Garage", address={GARAGE!r}, poll_interval_s=5)
Rule.objects.create(name="Day", kind="current", current_a=10).stations.add(garage)
"""


async def test_a_member_overrides_a_rule_from_the_card_and_ends_it(tmp_path: Path) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    await asyncio.to_thread(prepare, tmp_path, SET_UP)
    async with (
        Fleet(Clock(1), Timing(), broadcast=BROADCAST) as fleet,
        async_playwright() as playwright,
    ):
        await fleet.add(GARAGE, "p30c", serial="31000241")
        fleet[GARAGE].plug_in(Car(max_current_a=32))
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        async with serve(tmp_path, port, UDP_BIND):
            page = await log_in(browser, port, "anna", PHONE)
            garage = page.locator("article.station", has_text="Garage")
            # The gateway applies the rule; the card says whose limit it is.
            limit = garage.locator(".limit", has_text="10.0 A")
            await limit.filter(has_text="rule “Day”").wait_for(timeout=WAIT_MS)
            await garage.locator(".rule-now", has_text="At most 10 A").wait_for(timeout=WAIT_MS)
            await garage.locator(".session-part", has_text="Session since").wait_for(
                timeout=WAIT_MS
            )

            await garage.locator("summary", has_text="Controls").click()
            full_speed = garage.get_by_role("button", name="Full speed")
            await full_speed.wait_for(timeout=WAIT_MS)  # the controls load when opened
            assert await garage.get_by_label("Current (A)").count() == 1  # the override's only
            await full_speed.click()
            override = garage.locator(".override", has_text="Override “full speed” by anna")
            await override.wait_for(timeout=WAIT_MS)
            # The station leaves the rule's 10 A: the hardware is the limit now.
            await garage.locator(".limit", has_text="hardware").wait_for(timeout=WAIT_MS)
            await garage.locator(".rule-now").wait_for(state="hidden", timeout=WAIT_MS)
            assert await fits(page)
            await page.screenshot(path=str(ARTEFACTS / "dashboard-override.png"), full_page=True)

            await override.get_by_role("button", name="End override").click()
            await garage.locator(".override").wait_for(state="hidden", timeout=WAIT_MS)
            await garage.locator(".rule-now", has_text="At most 10 A").wait_for(timeout=WAIT_MS)
            # Back to the rule's 10 A well within the 30 s a just-done command waits before
            # it is sent again (chargers/rules/reconcile.py): the override's came after it.
            await limit.filter(has_text="rule “Day”").wait_for(timeout=15_000)
