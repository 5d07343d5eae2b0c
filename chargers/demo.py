"""`serve --demo`: emulated stations on loopback with cars that come and go.

A P30 c-series, a P20 and a P30 x-series run in serve's event loop; each has a
car that follows a daily routine (home in the evening, away in the morning),
sped up so that a day passes in minutes. The demo's day starts in the evening
whatever the hour, so that two cars charge from the first minute. The
stations are registered as Station rows so that the gateway polls them like
real ones.
"""

import asyncio
import contextlib
import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model

from chargers.kecontact.emulator import (
    MODEL_SPECS,
    Car,
    EmulatedStation,
    Fleet,
    network_broadcast,
)
from chargers.kecontact.products import Capability, parse_product
from chargers.kecontact.timing import Clock
from chargers.models import Station

log = logging.getLogger(__name__)

LOOPBACK = IPv4Network("127.0.0.0/8")
DEMO_USERNAME = "demo"
PASSWORD_FILE = "demo_password"
DAY_S = 24 * 3600
DAY_STARTS_H = 22.0  # two of the three cars are home then (see DEMO_STATIONS)


@dataclass(frozen=True)
class Routine:
    """When a car arrives and leaves (hours of the local day) and what it needs."""

    arrives_h: tuple[float, float]
    leaves_h: tuple[float, float]
    needed_kwh: tuple[float, float]
    max_current_a: float = 16.0
    phases: int = 3
    tag: str | None = None  # an RFID card held to the reader on arrival


@dataclass(frozen=True)
class DemoStation:
    name: str
    model: str
    serial: str
    routine: Routine


DEMO_STATIONS = (
    DemoStation(
        "Demo P30 c",
        "p30c",
        "900000001",
        Routine(arrives_h=(17.5, 19.5), leaves_h=(6.5, 8.0), needed_kwh=(8, 25)),
    ),
    DemoStation(
        "Demo P20",
        "p20",
        "900000002",
        # A single-phase car that charges at home during the day.
        Routine(
            arrives_h=(8.5, 10.0),
            leaves_h=(16.0, 18.0),
            needed_kwh=(5, 15),
            max_current_a=32,
            phases=1,
        ),
    ),
    DemoStation(
        "Demo P30 x",
        "p30x",
        "900000003",
        Routine(
            arrives_h=(20.5, 23.0),
            leaves_h=(5.5, 7.0),
            needed_kwh=(15, 40),
            tag="04A2F1C3D5E60000",
        ),
    ),
)
DEMO_SERIALS = tuple(station.serial for station in DEMO_STATIONS)


class DemoError(Exception):
    """The demo cannot start as asked (addresses taken, not on loopback)."""


def demo_addresses(first: IPv4Address) -> list[IPv4Address]:
    addresses = [first + index for index in range(len(DEMO_STATIONS))]
    if not all(address in LOOPBACK for address in addresses):
        raise DemoError(
            f"--demo-network {first}: demo stations need {len(addresses)} loopback addresses "
            "(127.0.0.0/8) from there on, e.g. 127.0.0.2"
        )
    return addresses


class DemoClock(Clock):
    """Sped-up station time whose calendar clock still shows the real time.

    Energy and the daily routines run `speed` times faster, but the times in
    the stations' session logs stay real: the gateway compares them with its
    own observations, and sessions dated in the future would confuse everyone.
    """

    def __init__(self, speed: float, day_origin: float) -> None:
        super().__init__(speed)
        self._day_origin = day_origin

    def wall(self) -> float:
        return time.time()

    def day_time(self) -> float:
        """Unix time in the demo's sped-up day."""
        return self._day_origin + self.monotonic()


def evening(zone: ZoneInfo) -> float:
    """Today at DAY_STARTS_H in `zone`, as Unix time: when the demo's day starts."""
    today = datetime.now(zone).date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=zone)
    return (midnight + timedelta(hours=DAY_STARTS_H)).timestamp()


def next_moment(
    after: float, window_h: tuple[float, float], zone: ZoneInfo, rng: random.Random
) -> float:
    """A random moment in the daily window, the first such day after `after`."""
    day = datetime.fromtimestamp(after, zone).date()
    hours = rng.uniform(*window_h)
    for days_ahead in range(3):
        midnight = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(days=days_ahead)
        moment = (midnight + timedelta(hours=hours)).timestamp()
        if moment > after:
            return moment
    raise AssertionError("a window within a day always recurs")  # pragma: no cover


def is_home(moment: float, routine: Routine, zone: ZoneInfo) -> bool:
    """Whether the car is at the station at this time of day (the middle of each window)."""
    local = datetime.fromtimestamp(moment, zone)
    hour = local.hour + local.minute / 60
    arrives, leaves = sum(routine.arrives_h) / 2, sum(routine.leaves_h) / 2
    if arrives < leaves:
        return arrives <= hour < leaves
    return hour >= arrives or hour < leaves


class Demo:
    """The emulated stations and their cars, in the running event loop."""

    def __init__(self, first: IPv4Address, *, speed: float, seed: int, time_zone: str) -> None:
        self.addresses = demo_addresses(first)
        self.zone = ZoneInfo(time_zone)
        self.clock = DemoClock(speed, day_origin=evening(self.zone))
        # Its own /24's broadcast: another demo or emulator elsewhere on loopback keeps its own.
        self.fleet = Fleet(clock=self.clock, broadcast=network_broadcast(str(first)))
        self.seed = seed
        self.stations: list[EmulatedStation] = []
        self._drivers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Bind every station, then let the cars follow their routines."""
        for demo, address in zip(DEMO_STATIONS, self.addresses, strict=True):
            station = await self.fleet.add(str(address), demo.model, serial=demo.serial)
            self.stations.append(station)
        now = self.clock.day_time()
        home = [is_home(now, demo.routine, self.zone) for demo in DEMO_STATIONS]
        for index, (demo, station) in enumerate(zip(DEMO_STATIONS, self.stations, strict=True)):
            rng = random.Random(f"{self.seed}-{index}")
            driver = self.drive(station, demo.routine, rng, home_now=home[index])
            self._drivers.append(asyncio.create_task(driver, name=f"demo car {demo.name}"))

    async def drive(
        self, station: EmulatedStation, routine: Routine, rng: random.Random, home_now: bool
    ) -> None:
        if home_now:
            self.arrive(station, routine, rng)
        while True:
            if station.car is None:
                await self.sleep_until(
                    next_moment(self.clock.day_time(), routine.arrives_h, self.zone, rng)
                )
                self.arrive(station, routine, rng)
            await self.sleep_until(
                next_moment(self.clock.day_time(), routine.leaves_h, self.zone, rng)
            )
            station.unplug()

    def arrive(self, station: EmulatedStation, routine: Routine, rng: random.Random) -> None:
        car = Car(
            max_current_a=routine.max_current_a,
            phases=routine.phases,
            needed_kwh=round(rng.uniform(*routine.needed_kwh), 1),
        )
        station.plug_in(car)
        if routine.tag is not None and station.product.can(Capability.RFID):
            station.present_tag(routine.tag)

    async def sleep_until(self, moment: float) -> None:
        await self.clock.sleep(moment - self.clock.day_time())

    async def stop(self) -> None:
        for driver in self._drivers:
            driver.cancel()
        for driver in self._drivers:
            with contextlib.suppress(asyncio.CancelledError):
                await driver
        self._drivers.clear()
        await self.fleet.close()


# Database steps (synchronous: serve runs them before the event loop starts)


def register_stations(first: IPv4Address) -> list[Station]:
    """A Station row per demo station, found again by serial on the next start."""
    rows = []
    for demo, address in zip(DEMO_STATIONS, demo_addresses(first), strict=True):
        spec = MODEL_SPECS[demo.model]
        info = parse_product(spec.product, spec.firmware)
        taken = Station.objects.filter(address=str(address)).exclude(serial=demo.serial).first()
        if taken is not None:
            raise DemoError(
                f"the station {taken.name!r} already has the address {address}; start the "
                "demo on other loopback addresses with --demo-network, e.g. 127.0.1.2"
            )
        fields = {
            "address": str(address),
            "product": spec.product.strip(),
            "model_label": info.label,
            "firmware": spec.firmware,
            "capabilities": sorted(str(capability) for capability in info.capabilities),
            "enabled": True,
        }
        # A name the user gave a demo station survives the next start.
        row, _ = Station.objects.update_or_create(
            serial=demo.serial, defaults=fields, create_defaults=fields | {"name": demo.name}
        )
        rows.append(row)
    return rows


def demo_password(data_dir: Path) -> str:
    """The demo login's password, made up once and kept in the data directory."""
    path = data_dir / PASSWORD_FILE
    if path.exists():
        password = path.read_text().strip()
        if password:
            return password
    password = secrets.token_urlsafe(12)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return password


def ensure_demo_user(data_dir: Path) -> str:
    """An administrator `demo` for the demo; returns its password."""
    password = demo_password(data_dir)
    user, created = get_user_model().objects.get_or_create(username=DEMO_USERNAME)
    user.is_active = user.is_staff = user.is_superuser = True
    if created or not user.check_password(password):
        user.set_password(password)
    user.save()
    return password


def retire(data_dir: Path) -> tuple[int, bool]:
    """Without --demo: stop polling the demo stations and lock the demo login.

    Nothing answers at the demo addresses any more, and a superuser with a
    password in a file must not outlive the demo. Returns (stations disabled,
    login locked)."""
    stations = Station.objects.filter(serial__in=DEMO_SERIALS, enabled=True).update(enabled=False)
    locked = 0
    if (data_dir / PASSWORD_FILE).exists():
        locked = (
            get_user_model()
            .objects.filter(username=DEMO_USERNAME, is_active=True)
            .update(is_active=False)
        )
    return stations, bool(locked)
