"""One flow in a real browser: add a card typed as a person would, then export its session."""

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import sync_playwright
from pytest_django.live_server_helper import LiveServer

from chargers.models import Session, Station, Tag
from tests.emulated import station_address
from tests.test_serve import CHROMIUM, CHROMIUM_FLAGS

pytestmark = pytest.mark.django_db(transaction=True)


def charge_with_the_card(station: Station) -> None:
    Session.objects.create(
        station=station,
        keba_session_id=1,
        tag=Tag.objects.get(),
        started_at=datetime(2024, 3, 5, 9, tzinfo=UTC),
        ended_at=datetime(2024, 3, 5, 11, tzinfo=UTC),
        energy_kwh=7.5,
    )


def test_an_admin_adds_a_card_and_downloads_its_sessions(live_server: LiveServer) -> None:
    User.objects.create_superuser("admin", "admin@example.com", "secret")
    station = Station.objects.create(name="Garage", address=station_address(2))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        page = browser.new_page()
        page.goto(f"{live_server.url}/admin/chargers/tag/add/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", "secret")
        page.click("input[type=submit]")
        page.fill("#id_tag", "04:a1:b2:c3:d4:e5:f6:07")
        page.fill("#id_label", "=Company car")
        page.click("input[name=_save]")
        understood = page.locator(".messagelist").text_content() or ""
        # Playwright's sync API runs an event loop here; the ORM must run elsewhere.
        with ThreadPoolExecutor(1) as other_thread:
            other_thread.submit(charge_with_the_card, station).result()
        page.goto(f"{live_server.url}/admin/chargers/session/")
        page.check("input.action-select")
        page.select_option("select[name=action]", "export_csv_excel")
        with page.expect_download() as download:
            page.click("button[name=index]")
        text = download.value.path().read_bytes().decode("utf-8")  # gone once closed
        browser.close()
    assert "Read '04:a1:b2:c3:d4:e5:f6:07' as 04A1B2C3D4E5F607" in understood
    assert text.startswith("\ufeff")
    (row,) = csv.DictReader(io.StringIO(text[1:]), delimiter=";")
    assert (row["card"], row["card label"], row["energy kWh"]) == (
        "04A1B2C3D4E5F607",
        "'=Company car",
        "7,500",
    )
