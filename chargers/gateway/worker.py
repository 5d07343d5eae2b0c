"""One station's worker: identify it, poll it, keep its sessions with its log, run its commands.

What the worker knows of its station (identity, the last poll, the running
session) lives here in memory; the database steps sit in the modules beside it.
"""

import asyncio
import logging
import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError
from django.utils import timezone

from chargers import live, recorder, rfid_cards
from chargers.kecontact.codec import (
    ChargingState,
    Report1,
    Report2,
    Report3,
    SessionReport,
    StatusUpdate,
    seconds_before,
)
from chargers.kecontact.commands import Command as WireCommand
from chargers.kecontact.commands import parse_command
from chargers.kecontact.effects import Proof, Verdict, effect_in_report2, shows_effect
from chargers.kecontact.errors import (
    KebaError,
    Malformed,
    Refused,
    Timeout,
    Unsupported,
    WrongStation,
)
from chargers.kecontact.products import Capability
from chargers.models import Command, Event
from chargers.rules import explain
from chargers.rules.desired import DesiredState

from . import commands, sessions, stations
from .database import db
from .stations import StationConfig

if TYPE_CHECKING:
    from .core import Gateway

log = logging.getLogger(__name__)

LOG_REPORTS = range(100, 131)  # 100 is the running or latest session
PROBLEM_REPEAT_S = 3600.0  # the same problem is stored at most once an hour


@dataclass(frozen=True)
class Seen:
    """What the last poll read."""

    status: Report2
    meter: Report3
    read_at: datetime  # server time when report 2 came (commands' rows are stamped so too)

    @property
    def car_connected(self) -> bool:
        return bool(self.status.plug and self.status.plug.car_connected)


class StationWorker:
    def __init__(self, gateway: "Gateway", config: StationConfig) -> None:
        self.gateway = gateway
        self.client = gateway.client
        self.clock = gateway.clock
        self.settings = gateway.settings
        self.config = config
        self.nudge = asyncio.Event()
        self.identity: Report1 | None = None
        self.fresh = True  # the next poll is the first since (re)connecting
        self.restarted_at: datetime | None = None  # when the station's boot line arrived
        self.status_changed = False  # a status message arrived since the last poll
        self.commands_waiting = False
        self.last: Seen | None = None
        # When the station last restarted or came back, or a car came or went: news
        # that lifts the rules' quiet for a refused command (chargers/rules/reconcile.py).
        self.news_at: datetime | None = None
        self.rules_shown: dict[str, Any] = explain.card_fields(DesiredState())  # on the card
        self.running_session: int | None = None  # the row of the session running now
        self.rebooted_at: datetime | None = None  # a reboot seen while watching
        self.log_read_at = -math.inf
        self.scanned_at = -math.inf
        self._in_flight_resolved = False
        self._problems: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None

    @property
    def pk(self) -> int:
        return self.config.pk

    def update(self, config: StationConfig) -> None:
        if config.address != self.config.address:
            self.forget_identity()
            self.nudge.set()  # found at a new address: no need to wait out a back-off
        self.config = config

    def forget_identity(self) -> None:
        self.identity = None
        self.fresh = True
        self.last = None

    def can(self, capability: Capability) -> bool:
        info = self.identity.product_info if self.identity else None
        return info.can(capability) if info else self.config.can(str(capability))

    @property
    def keeps_log(self) -> bool:
        return self.can(Capability.SESSION_LOG)

    # The loop

    async def run(self, stop: asyncio.Event) -> None:
        nudged = False
        last_poll = next_poll = -math.inf
        repeat_s = self.client.timing.report_repeat_s
        while not stop.is_set():
            try:
                if self.config.address is None:
                    await self.gateway.look_for(self)
                    next_poll = self.clock.monotonic() + self.settings.max_backoff_s
                else:
                    if self.identity is None:
                        await self.identify(self.config.address)
                    if nudged:  # a status message: something changed
                        next_poll = min(next_poll, last_poll + repeat_s)
                    if self.identity is not None and (
                        self.fresh or self.clock.monotonic() >= next_poll
                    ):
                        # Timed from the poll's start: the poll's own exchanges (and any
                        # log read) must not stretch the interval.
                        last_poll = self.clock.monotonic()
                        await self.poll(self.config.address)
                        next_poll = last_poll + self.config.poll_interval_s
                    if self.identity is not None and not self.fresh and self.commands_waiting:
                        await self.execute_commands(self.config.address)
                        # Poll again soon to see the effect, but not before KEBA's 5 s.
                        next_poll = min(next_poll, self.clock.monotonic() + repeat_s)
            except WrongStation as exc:
                await self.note_problem(str(exc))
                self.forget_identity()
                next_poll = self.clock.monotonic()
            except Timeout:
                next_poll = self.clock.monotonic() + await self.missed_poll()
            except KebaError as exc:
                await self.note_problem(str(exc), key=exc.summary)
                next_poll = self.clock.monotonic() + self.config.poll_interval_s
            except DatabaseError as exc:
                # What this poll saw could not be stored (a full disk, say). Until a
                # poll stores again the station counts as unwatched, as in downtime:
                # the fresh poll then closes or continues its session honestly.
                self.gateway.failures.failed(f"station {self.pk}", exc)
                self.forget_identity()
                next_poll = self.clock.monotonic() + self.config.poll_interval_s
            except Exception as exc:
                # Whatever else went wrong must not stop this station for good:
                # store it where a person sees it, and try again later.
                log.exception("station %s: unexpected error", self.pk)
                await self.note_problem(f"gateway error: {exc!r}", kind=Event.Kind.ERROR)
                next_poll = self.clock.monotonic() + self.settings.max_backoff_s
            nudged = await self._wait(next_poll - self.clock.monotonic())

    async def _wait(self, delay_s: float) -> bool:
        """Sleep until the next poll is due; True when nudged before that."""
        if delay_s > 0:
            try:
                await asyncio.wait_for(self.nudge.wait(), self.clock.to_real(delay_s))
            except TimeoutError:
                return False
        if not self.nudge.is_set():
            return False
        self.nudge.clear()
        return True

    async def note_problem(
        self, text: str, kind: str = Event.Kind.ERROR, key: str | None = None
    ) -> None:
        """Store a problem as an event, once an hour at most for the same problem: the
        same `key` (the text without what varies, such as an impossible value) or text."""
        now = self.clock.monotonic()
        key = text if key is None else key
        if now - self._problems.get(key, -math.inf) < PROBLEM_REPEAT_S:
            return
        self._problems[key] = now
        try:
            await db(stations.log_event)(self.pk, kind, text)
        except DatabaseError as exc:
            self.gateway.failures.failed(f"station {self.pk}: storing {text!r}", exc)

    async def missed_poll(self) -> float:
        """Count the miss; the delay before the next try, longer while the station is away."""
        self.forget_identity()  # whoever answers next is identified first
        interval = float(self.config.poll_interval_s)
        try:
            missed, online = await db(stations.record_missed_poll)(
                self.pk, self.settings.offline_after_missed
            )
        except DatabaseError as exc:
            self.gateway.failures.failed(f"station {self.pk}: counting a missed poll", exc)
            return interval
        if not online and missed == self.settings.offline_after_missed:
            self.gateway.recorder.forget(self.pk)  # its return is news
            await live.publish_status(self.pk, recorder.offline_payload())
        if online:
            return interval
        try:  # in the loop's `except Timeout`: nothing may escape from here
            await self.gateway.look_for(self)
        except DatabaseError as exc:
            self.gateway.failures.failed(f"station {self.pk}: looking for it", exc)
        except KebaError as exc:
            await self.note_problem(f"looking for the station: {exc}", key=exc.summary)
        extra = missed - self.settings.offline_after_missed
        return min(self.settings.max_backoff_s, interval * 2 ** max(0, extra))

    # Identity

    async def identify(self, host: str) -> None:
        identity = await self.client.identify(host)
        if self.config.serial and identity.serial != self.config.serial:
            # Another station answers at this address (a DHCP swap).
            await db(stations.displace)(self.pk, host, identity.serial)
            await self.gateway.found_at(host, identity)
            await self.gateway.resync()
            return
        if not await db(stations.record_identity)(self.pk, host, identity):
            raise KebaError(f"{host} is a station registered twice")
        # Known at once, not only after the next scan: a swap may come sooner.
        self.config = replace(self.config, serial=identity.serial)
        self.identity = identity
        self.fresh = True

    # Polling

    async def poll(self, host: str) -> None:
        asked_at = self.clock.now()
        status = await self.client.report(host, 2)
        assert isinstance(status, Report2)
        status_at = timezone.now()
        # The uptime counts to when report 2 came, not to after report 3: a slow
        # second exchange must not move the boot time (and fake a restart).
        boot_at = _boot_at(status.uptime_s, self.clock.now())
        meter = await self.client.report(host, 3)
        assert isinstance(meter, Report3)
        now = self.clock.now()
        try:
            _check_same_run(status.uptime_s, meter, now)
            seen = Seen(status, meter, status_at)
            await self._take_in(host, asked_at, seen, boot_at, now)
        except RestartedMidPoll as restart:
            # Report 2 is the old run's, a later report the new one's: read as one,
            # the new session would pass for the old one. The later report's uptime
            # gives the boot time; the next poll starts afresh.
            await self.after_reboot(restart.boot_at or now, now)

    async def _take_in(
        self,
        host: str,
        asked_at: datetime,
        seen: Seen,
        boot_at: datetime | None,
        now: datetime,
    ) -> None:
        """Follow the station and its sessions with what one poll read."""
        status, meter = seen.status, seen.meter
        last = self.last
        went_back = (
            last is not None
            and status.uptime_s is not None
            and last.status.uptime_s is not None
            and status.uptime_s < last.status.uptime_s
        )
        started_line_at, self.restarted_at = self.restarted_at, None
        if self.fresh:
            pass  # first_poll reads the boot time from the uptime
        elif went_back or (started_line_at is not None and started_line_at <= asked_at):
            # A report 2 asked for after the boot line came is the restarted
            # station's, so its uptime gives the boot time.
            await self.after_reboot(boot_at or started_line_at or now, now)
            return
        elif started_line_at is not None:
            # The boot line came while this poll was on its way: its report 2 may
            # predate the restart (and its old boot time). The next one decides.
            self.restarted_at = started_line_at
        if self.fresh or (last is not None and _came_or_went(last, seen)):
            self.news_at = seen.read_at
        if self.fresh:
            await self.first_poll(host, seen, boot_at, now)
        else:
            assert last is not None
            await self.follow_sessions(host, last, seen, boot_at, now)
        self.status_changed = False
        self.last = seen
        session = self.running_session if seen.car_connected else None
        desired = await self.gateway.enforcer.after_poll(self, seen)  # rules against report 2
        # From the book the gateway keeps in memory: the card's explanation costs no query.
        self.rules_shown = explain.card_fields(desired or DesiredState())
        rules = self.rules_shown
        if self.gateway.recorder.observe(self.pk, status, meter, now, session, rules):
            shown = recorder.status_payload(status, meter, session, rules)
            await live.publish_status(self.pk, shown)

    def shown_now(self) -> dict[str, Any] | None:
        """The card as the last poll saw it, for a browser that just connected."""
        if self.last is None:
            return None
        session = self.running_session if self.last.car_connected else None
        return recorder.status_payload(self.last.status, self.last.meter, session, self.rules_shown)

    def heard(self, update: StatusUpdate) -> dict[str, Any] | None:
        """What a status message already says, for the browsers: the card need not
        wait for the next poll, which KEBA's 5 s rule may hold back.

        Only published: the next poll reads the station and stores what it says."""
        if self.last is None:
            return None
        fields = ("state", "plug", "enabled_sys", "offered_current_a")
        changes = {name: getattr(update, name) for name in fields}
        status = replace(self.last.status, **{k: v for k, v in changes.items() if v is not None})
        meter = self.last.meter
        if update.session_energy_kwh is not None:
            meter = replace(meter, session_energy_kwh=update.session_energy_kwh)
        if (
            status.state != ChargingState.CHARGING
        ):  # no power is drawn now, whatever the last poll saw
            meter = replace(meter, power_w=0.0, current_1_a=0.0, current_2_a=0.0, current_3_a=0.0)
        connected = bool(status.plug and status.plug.car_connected)
        session = self.running_session if connected else None
        return recorder.status_payload(status, meter, session, self.rules_shown)

    async def after_reboot(self, boot_at: datetime, now: datetime) -> None:
        """The station forgot its running session: close it at the boot, then start afresh."""
        await self.gateway.flush()  # the last energy it reported is stored first
        await db(sessions.close_at_reboot)(self.pk, boot_at, now)
        self.rebooted_at = boot_at
        self.running_session = None
        self.forget_identity()  # identify again: a restart may come with new firmware

    async def first_poll(
        self, host: str, seen: Seen, boot_at: datetime | None, now: datetime
    ) -> None:
        """After connecting: catch up with what happened while nobody watched."""
        meter = seen.meter
        if self.keeps_log:
            await self.sync_log(host, seen.status.uptime_s, boot_at, now)
        elif self.rebooted_at is not None:
            self.running_session = None
            if seen.car_connected:
                self.running_session = await db(sessions.open_observed)(
                    self.pk, self.rebooted_at, meter.session_energy_kwh, meter.total_energy_kwh
                )
        else:
            self.running_session = await db(sessions.resume_observed)(
                self.pk,
                seen.car_connected,
                meter.session_energy_kwh,
                meter.total_energy_kwh,
                boot_at,
                now,
            )
        self.rebooted_at = None
        if not self._in_flight_resolved:
            await self.resolve_in_flight(seen.status)
            self._in_flight_resolved = True
        self.fresh = False

    async def follow_sessions(
        self, host: str, last: Seen, seen: Seen, boot_at: datetime | None, now: datetime
    ) -> None:
        energy, before = seen.meter.session_energy_kwh, last.meter.session_energy_kwh
        energy_went_back = _energy_went_back(last, seen)
        plug_changed = seen.car_connected != last.car_connected
        if self.keeps_log:
            may_have_changed = (
                plug_changed
                or energy_went_back
                or self.status_changed
                or seen.status.state != last.status.state
                or seen.status.plug != last.status.plug
            )
            overdue = seen.car_connected and (
                self.running_session is None
                or self.clock.monotonic() - self.log_read_at >= self.settings.heartbeat_s
            )
            if may_have_changed or overdue:
                await self.sync_log(host, seen.status.uptime_s, boot_at, now)
            return
        total = seen.meter.total_energy_kwh
        if self.running_session is not None and (not seen.car_connected or energy_went_back):
            final = before if energy_went_back else energy
            await db(sessions.close_observed)(self.running_session, now, final)
            self.running_session = None
        if seen.car_connected and self.running_session is None:
            self.running_session = await db(sessions.open_observed)(self.pk, now, energy, total)

    async def sync_log(
        self, host: str, uptime_s: int | None, boot_at: datetime | None, now: datetime
    ) -> None:
        """Read the log from report 100 back to the newest session already stored.

        `uptime_s` is this poll's report 2's: a log read after a restart is refused."""
        entries: list[SessionReport] = []
        whole = True
        known: set[int] | None = None
        for report_id in LOG_REPORTS:
            entry = await self._log_entry(host, report_id)
            if entry is None:
                whole = False
                if report_id == 100:
                    return  # without the newest entry nothing can be settled
                continue
            _check_same_run(uptime_s, entry, self.clock.now())
            if entry.is_empty:
                break
            entries.append(entry)
            if known is None:
                assert entry.session_id is not None
                known = await db(sessions.finished_ids)(
                    self.pk, entry.session_id - len(LOG_REPORTS)
                )
            if entry.session_id in known:
                break  # older entries were stored when they finished
        self.running_session = await db(sessions.record_log)(self.pk, entries, now, boot_at, whole)
        self.log_read_at = self.clock.monotonic()
        if self.running_session is not None and await db(rfid_cards.stop_if_blocked)(
            self.running_session
        ):
            self.commands_waiting = True  # sent in this same pass, before the next poll

    async def _log_entry(self, host: str, report_id: int) -> SessionReport | None:
        try:
            entry = await self.client.report(host, report_id)
        except Malformed as exc:
            # One unreadable entry must not stop the station's polling or the rest of the log.
            said = f"could not read report {report_id}: "
            await self.note_problem(said + str(exc), key=said + exc.summary)
            return None
        assert isinstance(entry, SessionReport)
        return entry

    # Commands

    async def resolve_in_flight(self, status: Report2) -> None:
        """Rows a stopped gateway left "sent": report 2 shows the effect, or nobody knows."""
        for row in await db(commands.in_flight)(self.pk):
            try:
                command = parse_command(row.wire)
            except KebaError:
                continue  # cannot have been sent
            verdict = effect_in_report2(command, status)
            if verdict.proof is Proof.SHOWN:
                reason = f"{verdict.detail} (checked after the gateway restarted)"
                await db(commands.finish)(row, Command.Status.VERIFIED, reason)
            elif row.reply and verdict.proof is Proof.NOT_SHOWN:
                reason = "the station acknowledged it before the gateway stopped"
                await db(commands.finish)(row, Command.Status.ACKNOWLEDGED, reason)
            else:
                reason = "outcome unknown: the gateway stopped while it was in flight"
                await db(commands.finish)(row, Command.Status.FAILED, reason)

    async def execute_commands(self, host: str) -> None:
        """Send pending commands in order; a row is tried at most once per pass."""
        self.commands_waiting = False
        for row in await db(commands.pending_for)(self.pk):
            await self.execute(host, row)
            if row.status == Command.Status.PENDING:
                self.commands_waiting = True

    async def execute(self, host: str, row: Command) -> None:
        finish = db(commands.finish)
        try:
            command = parse_command(row.wire)
        except KebaError as exc:
            await finish(row, Command.Status.REFUSED, f"not a valid command: {exc}")
            return
        needed = command.required_capability
        if needed is not None and not self.can(needed):
            info = self.identity.product_info if self.identity else None
            model = (info.label if info else self.config.model_label) or "this station"
            reason = f"{model} does not support `{command.name}`; nothing was sent"
            await finish(row, Command.Status.REFUSED, reason)
            return
        if not await db(commands.claim)(row, self.gateway.gateway_id):
            return  # another gateway took it
        attempts = self.settings.command_attempts
        reply_lost_before = row.attempts > 1 and not command.idempotent
        try:
            if reply_lost_before and shows_effect(command):
                # The last try's reply was lost, but it may have taken effect:
                # look before sending a command that must not run twice.
                verdict = await self._verdict(host, command)
                if verdict.proof is Proof.SHOWN:
                    reason = f"{verdict.detail}: the station had applied it, its reply was lost"
                    await finish(row, Command.Status.VERIFIED, reason)
                    return
            ack = await self.client.send(host, command)
        except (Refused, Unsupported) as exc:
            if reply_lost_before:
                reason = (
                    f"outcome unknown: an earlier attempt's reply was lost and the station "
                    f"now refuses it ({exc}); the earlier attempt may have taken effect"
                )
                await finish(row, Command.Status.FAILED, reason)
            else:
                await finish(row, Command.Status.REFUSED, str(exc))
            return
        except KebaError as exc:
            await db(commands.retry_or_fail)(row, attempts, str(exc))
            return
        await db(commands.acknowledge)(row, ack.text)
        if not shows_effect(command):
            reason = (
                f"the station confirmed receipt; no report shows the effect of `{command.name}`"
            )
            await finish(row, Command.Status.ACKNOWLEDGED, reason)
            return
        try:
            verdict = await self._verdict(host, command)
        except KebaError as exc:
            await db(commands.retry_or_fail)(row, attempts, f"acknowledged, but {exc}")
            return
        if verdict.proof is Proof.SHOWN:
            await finish(row, Command.Status.VERIFIED, verdict.detail)
        elif verdict.proof is Proof.NOT_SHOWN:
            reason = f"the station confirmed receipt; {verdict.detail}"
            await finish(row, Command.Status.ACKNOWLEDGED, reason)
        else:
            await db(commands.retry_or_fail)(row, attempts, f"acknowledged, but {verdict.detail}")

    async def _verdict(self, host: str, command: WireCommand) -> Verdict:
        status = await self.client.report(host, 2)
        assert isinstance(status, Report2)
        return effect_in_report2(command, status)


def _energy_went_back(last: Seen, seen: Seen) -> bool:
    """E pres starts again at zero with each session: a quick re-plug between polls."""
    energy, before = seen.meter.session_energy_kwh, last.meter.session_energy_kwh
    if energy is None or before is None:
        return False
    return energy < before - sessions.ENERGY_EPSILON_KWH


def _came_or_went(last: Seen, seen: Seen) -> bool:
    """A car was plugged in or out since the last poll (or both, quickly)."""
    return seen.car_connected != last.car_connected or _energy_went_back(last, seen)


def _boot_at(uptime_s: int | None, at: datetime) -> datetime | None:
    return None if uptime_s is None else seconds_before(at, uptime_s)


class RestartedMidPoll(Exception):
    """A report of the station's new run came after one of its old run."""

    def __init__(self, boot_at: datetime | None) -> None:
        super().__init__("the station restarted during the poll")
        self.boot_at = boot_at


def _check_same_run(uptime_s: int | None, later: Report3 | SessionReport, at: datetime) -> None:
    """Raise RestartedMidPoll when the uptime went back since report 2 said `uptime_s`."""
    if uptime_s is not None and later.uptime_s is not None and later.uptime_s < uptime_s:
        raise RestartedMidPoll(_boot_at(later.uptime_s, at))
