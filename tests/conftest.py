"""Keeps every test, and every program a test starts, on the run's loopback range,
and says which tests belong to the other layout (scripts/test runs both)."""

import copy
import os
from collections.abc import Iterator

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings as django_settings
from django.db import connections
from pytest_django.fixtures import Settings

from tests.emulated import BROADCAST, GATEWAY_HOST

# Inherited by subprocesses (serve, gateway, keba): without it their searches
# would broadcast to the LAN, or to another run's stations.
os.environ["KEBA_BROADCAST"] = BROADCAST
os.environ["KEBA_BIND"] = GATEWAY_HOST

# Marker name -> the layout its tests mean something in.
LAYOUT_MARKERS = {"sqlite_only": "sqlite", "scaled_only": "scaled"}
_left_to_other_layout: list[tuple[str, str, str]] = []


def layout() -> str:
    """The layout of this run: "sqlite" (embedded) or "scaled" (PostgreSQL and Redis)."""
    engine = django_settings.DATABASES["default"]["ENGINE"]
    return "sqlite" if engine.endswith("sqlite3") else "scaled"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    this_layout = layout()
    for item in items:
        for name, wanted in LAYOUT_MARKERS.items():
            marker = item.get_closest_marker(name)
            if marker is None:
                continue
            reason = marker.kwargs.get("reason", "")
            if not reason:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{name} needs reason=...")
            if wanted != this_layout:
                item.add_marker(pytest.mark.skip(reason=f"{name}: {reason}"))
                _left_to_other_layout.append((item.nodeid, name, reason))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Listed by name, so that what one half leaves out is never skipped silently.
    if not _left_to_other_layout:
        return
    terminalreporter.section(
        f"{len(_left_to_other_layout)} tests left to the other layout (this run: {layout()})"
    )
    by_reason: dict[tuple[str, str], list[str]] = {}
    for nodeid, name, reason in _left_to_other_layout:
        by_reason.setdefault((name, reason), []).append(nodeid)
    for (name, reason), nodeids in by_reason.items():
        terminalreporter.line(f"{name}: {reason}:")
        for nodeid in nodeids:
            terminalreporter.line(f"    {nodeid}")


@pytest.fixture(autouse=True)
def _hang_up_the_sync_thread() -> Iterator[None]:
    """Close the connection that sync_to_async's thread opened for a test.

    pytest-django closes only the main thread's. On PostgreSQL one left open
    keeps the test database in use, and dropping it at the end fails."""
    yield
    if layout() == "scaled":
        SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture(autouse=True)
def _own_channel_layer(settings: Settings) -> None:
    """A fresh channel layer for each test (Channels drops its cached layers when
    the setting changes). Each test runs its own event loop, and a Redis layer kept
    across loops can hold a receive lock that an ended loop never released."""
    settings.CHANNEL_LAYERS = copy.deepcopy(django_settings.CHANNEL_LAYERS)


@pytest.fixture(autouse=True)
def _run_network(settings: Settings) -> None:
    settings.KEBA_BROADCAST = BROADCAST
    settings.KEBA_BIND = GATEWAY_HOST
