"""The gateway's side of the rules: after each poll, desired state against report 2.

The rule book is loaded once and kept until it changes (checked on the periodic
scan, or at once on a "gateway.rules" wake-up), so a poll costs no query unless
a command must be written or a daily or weekly cap needs the energy used. A
timer set for the next boundary nudges the stations it concerns, so with the
task cluster down a window still opens within KEBA's 5 s report interval.
"""

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import DatabaseError
from django.utils import timezone

from chargers.kecontact.products import Capability
from chargers.models import Command
from chargers.rules import book as rule_book
from chargers.rules.desired import (
    DesiredState,
    Kind,
    Usage,
    boundaries,
    day_start,
    desired_state,
)
from chargers.rules.reconcile import (
    FEEDS_FAILSAFE,
    KEEP_ALIVE_WHY,
    Abilities,
    Action,
    Recent,
    plan,
)

from .database import db

if TYPE_CHECKING:
    from .core import Gateway
    from .worker import Seen, StationWorker

log = logging.getLogger(__name__)

COMMAND_LIFETIME = timedelta(minutes=2)  # a rule's command is re-planned from a fresh poll after
RECENT_WINDOW = timedelta(hours=1)
USAGE_TTL_S = 60.0  # station seconds between two reads of the energy used this day/week
REQUESTED_BY = "rules"
# How a keep-alive's row begins: the rules' quiet and the daily retention know it by this.
KEEP_ALIVE_REQUESTED_BY = f"{REQUESTED_BY}: {KEEP_ALIVE_WHY}"
BOUNDARY_MARGIN_S = 0.01  # real seconds: a timer never fires before the boundary it waits for


def recent_commands(
    station_id: int,
    speed: float,
    report_at: datetime | None = None,
    news_at: datetime | None = None,
) -> list[Recent]:
    """The station's command rows of the last hour, any origin, ages in station seconds.

    `report_at`: when the report 2 being judged was read; `news_at`: when the station
    last restarted or a car came or went (server times, as the rows' own)."""
    now = timezone.now()
    rows = Command.objects.filter(station_id=station_id, created_at__gte=now - RECENT_WINDOW)
    found = []
    for wire, status, created, finished, by in rows.values_list(
        "wire", "status", "created_at", "finished_at", "requested_by"
    ):
        done = finished or created
        found.append(
            Recent(
                wire,
                status,
                (now - done).total_seconds() * speed,
                before_report=report_at is not None and done < report_at,
                before_news=news_at is not None and done < news_at,
                keep_alive=by.startswith(KEEP_ALIVE_REQUESTED_BY),
            )
        )
    return found


def write_commands(
    station_id: int,
    speed: float,
    wanted: Callable[[Sequence[Recent]], list[Action]],
    report_at: datetime | None = None,
    news_at: datetime | None = None,
) -> list[Action]:
    """Plan against the station's recent rows and write the commands, in one step on the
    database thread, so two reconciliations of one station never both write a command."""
    actions = wanted(recent_commands(station_id, speed, report_at, news_at))
    now = timezone.now()
    Command.objects.bulk_create(
        Command(
            station_id=station_id,
            wire=action.wire,
            rule_id=action.rule_id,
            requested_by=f"{REQUESTED_BY}: {action.why}"[:100],
            created_at=now + timedelta(microseconds=n),  # keeps their order
            expires_at=now + COMMAND_LIFETIME,
        )
        for n, action in enumerate(actions)
    )
    return actions


class Enforcer:
    def __init__(self, gateway: "Gateway") -> None:
        self.gateway = gateway
        self.clock = gateway.clock
        self.book = rule_book.RuleBook()
        self.zone = rule_book.zone()
        self._version: tuple[object, ...] | None = None
        self._next_boundary: datetime | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reload_wanted = self._reloading = False
        self._reconciling: set[int] = set()  # stations with a reconciliation on its way
        self._fed_at: dict[int, float] = {}  # station clock of the last command feeding failsafe
        self._usage: dict[int, tuple[float, tuple[object, ...], Usage]] = {}
        self.cpu_s = 0.0  # spent deciding (not waiting for the database), for bench/rules.py
        self.commands_written = 0

    # Keeping the book

    def wake(self) -> None:
        """A rule changed or a boundary came: reload soon. A burst of wake-ups (many rules
        saved at once) costs one reload and one reconciliation per station, not one each."""
        self._reload_wanted = True
        if not self._reloading:
            self._reloading = True
            self.gateway._in_background(self._reload_while_wanted())

    async def _reload_while_wanted(self) -> None:
        try:
            while self._reload_wanted:
                self._reload_wanted = False
                await self.refresh(force=True)
        finally:
            self._reloading = False

    async def refresh(self, force: bool = False) -> None:
        """On the periodic scan: reload the book if it changed; nudge at a boundary."""
        version = await db(rule_book.version)()
        if force or version != self._version:
            self.book = await db(rule_book.load)(None, self.clock.now())
            self._version = version
            self._usage.clear()
            self._plan_boundary()
            self._nudge()
        elif self._next_boundary is not None and self.clock.now() >= self._next_boundary:
            self._plan_boundary()
            self._nudge()

    def _plan_boundary(self) -> None:
        """Set a timer for the next boundary, so a window opens on time without any help."""
        now = self.clock.now()
        overrides = [o for found in self.book.overrides.values() for o in found]
        ahead = boundaries(now, now + timedelta(days=8), self.book.all_rules, overrides, self.zone)
        self._next_boundary = ahead[0] if ahead else None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._next_boundary is not None:
            delay_s = self.clock.to_real((self._next_boundary - now).total_seconds())
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(delay_s + BOUNDARY_MARGIN_S, self._at_boundary)

    def _at_boundary(self) -> None:
        self._timer = None
        self._plan_boundary()
        self._nudge()

    def _nudge(self) -> None:
        """Reconcile every station the rules concern now, against its last report 2.

        That report is at most one poll old; waiting for the next poll would cost up
        to KEBA's 5 s. What the command changes is verified by the next report 2."""
        for worker in list(self.gateway.workers.values()):
            if worker.pk in self._reconciling or worker.last is None or worker.fresh:
                continue
            if self.book.concerns(worker.pk):
                self._reconciling.add(worker.pk)
                self.gateway._in_background(self._reconcile_now(worker))

    async def _reconcile_now(self, worker: "StationWorker") -> None:
        try:
            last = worker.last
            if last is None:
                return
            await self.after_poll(worker, last)
            if worker.commands_waiting:
                worker.nudge.set()
        except DatabaseError as exc:
            self.gateway.failures.failed(f"station {worker.pk}: applying the rules", exc)
        finally:
            self._reconciling.discard(worker.pk)

    # After each poll

    async def after_poll(self, worker: "StationWorker", seen: "Seen") -> DesiredState | None:
        """Reconcile; the desired state, which the dashboard card explains (None: no rule,
        override or fallback concerns the station)."""
        pk = worker.pk
        if not self.book.concerns(pk):
            return None
        usage = await self._usage_of(worker, seen)
        started = time.process_time()
        abilities = Abilities(
            current_timer=worker.can(Capability.CURRENT_TIMER),
            energy_limit=worker.can(Capability.ENERGY_LIMIT),
        )
        desired = desired_state(
            usage.measured_at or self.clock.now(),
            self.book.rules_for(pk),
            self.book.overrides_for(pk),
            usage,
            self.zone,
        )
        fallback = self.book.fallbacks.get(pk)
        since_fed = self.clock.monotonic() - self._fed_at.get(pk, -math.inf)
        args = (desired, seen.status, abilities, seen.car_connected)
        wanted = plan(*args, (), fallback, since_fed)
        self.cpu_s += time.process_time() - started
        if not wanted:
            return desired

        def against(recent: Sequence[Recent]) -> list[Action]:
            return plan(*args, recent, fallback, since_fed)

        actions = await db(write_commands)(
            pk, self.clock.speed, against, seen.read_at, worker.news_at
        )
        if not actions:
            return desired
        self.commands_written += len(actions)
        if any(a.wire.split(" ", 1)[0] in FEEDS_FAILSAFE for a in actions):
            self._fed_at[pk] = self.clock.monotonic()
        worker.commands_waiting = True  # sent in this same pass, right after the poll
        return desired

    async def _usage_of(self, worker: "StationWorker", seen: "Seen") -> Usage:
        now = self.clock.now()
        car = seen.car_connected
        session = worker.running_session if car else None
        live_kwh = seen.meter.session_energy_kwh or 0.0
        rules = self.book.rules_for(worker.pk)
        periods = any(r.kind in (Kind.DAILY_CAP, Kind.WEEKLY_CAP) for r in rules)
        owners = any(r.card_owner_id is not None for r in rules)
        if not (periods or owners):
            return Usage(now, car, session, None, live_kwh)
        key = (session, car, day_start(now, self.zone))
        cached = self._usage.get(worker.pk)
        mono = self.clock.monotonic()
        if cached is not None and cached[1] == key and mono - cached[0] < USAGE_TTL_S:
            before = cached[2]
            gained = live_kwh - before.session_kwh  # the running session counts in every total
            return replace(
                before,
                measured_at=now,
                session_kwh=live_kwh,
                day_kwh=before.day_kwh + gained,
                week_kwh=before.week_kwh + gained,
                owner_day_kwh=before.owner_day_kwh + (gained if before.owner_id else 0.0),
                owner_week_kwh=before.owner_week_kwh + (gained if before.owner_id else 0.0),
            )
        usage = await db(rule_book.usage)(worker.pk, now, car, session, live_kwh, periods)
        self._usage[worker.pk] = (mono, key, usage)
        return usage
