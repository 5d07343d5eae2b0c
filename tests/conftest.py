"""Keeps every test, and every program a test starts, on the run's loopback range."""

import os

import pytest
from pytest_django.fixtures import Settings

from tests.emulated import BROADCAST, GATEWAY_HOST

# Inherited by subprocesses (serve, gateway, keba): without it their searches
# would broadcast to the LAN, or to another run's stations.
os.environ["KEBA_BROADCAST"] = BROADCAST
os.environ["KEBA_BIND"] = GATEWAY_HOST


@pytest.fixture(autouse=True)
def _run_network(settings: Settings) -> None:
    settings.KEBA_BROADCAST = BROADCAST
    settings.KEBA_BIND = GATEWAY_HOST
