"""The gateway: the one owner of UDP port 7090, polling stations into the database.

One asyncio task per station polls reports 2 and 3, keeps sessions in step
with the station's own log (reports 100-130), executes pending command rows
with the protocol's pacing and verifies them in the next report 2. All ORM
work runs in `sync_to_async` steps that tests can call directly.
"""

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, transaction
from django.utils import timezone

from chargers import live, recorder
from chargers.kecontact.client import FoundStation, KebaClient, StationMoved
from chargers.kecontact.codec import (
    Message,
    Report1,
    Report2,
    Report3,
    SessionReport,
    Started,
    StatusUpdate,
)
from chargers.kecontact.commands import Command as WireCommand
from chargers.kecontact.commands import parse_command
from chargers.kecontact.errors import KebaError, Refused, Timeout, Unsupported
from chargers.kecontact.products import Capability
from chargers.models import Command, Event, Session, Station, Tag

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewaySettings:
    heartbeat_s: float = 300.0  # store a reading at least this often
    offline_after_missed: int = 3
    max_backoff_s: float = 60.0
    command_attempts: int = 3
    scan_interval_s: float = 5.0  # look for new stations and commands
    search_interval_s: float = 60.0  # broadcast for stations that went silent
    flush_interval_s: float = 1.0  # real seconds between batched writes
    stop_grace_s: float = 5.0  # real seconds a stop waits for exchanges in flight


def db(function: Any) -> Any:
    return sync_to_async(function, thread_sensitive=True)


class Gateway:
    def __init__(
        self,
        client: KebaClient,
        settings: GatewaySettings | None = None,
        broadcast: str = "255.255.255.255",
        site: str | None = None,
    ) -> None:
        self.client = client
        self.clock = client.clock  # the protocol's clock, sped up in tests
        self.settings = settings or GatewaySettings()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._nudges: dict[int, asyncio.Event] = {}
        self._hosts: dict[str, int] = {}  # address -> station id
        self._car_connected: dict[int, bool] = {}
        self._uptime: dict[int, int] = {}
        self._restarted: set[int] = set()  # sent the boot line since the last poll
        self._commands_waiting: set[int] = set()  # stations with pending command rows
        self.recorder = recorder.Recorder(self.settings.heartbeat_s)
        self._stop = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self.broadcast = broadcast
        self.site = site  # at scale, one gateway per site owns that site's stations
        self._searched_at = -float("inf")
        self._resync = asyncio.Event()

    # Life cycle

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        unsubscribe = self.client.subscribe(self._on_message)
        listener = asyncio.create_task(self.serve_requests())
        flusher = asyncio.create_task(self.flush_forever())
        try:
            while not stop.is_set():
                await self.sync_stations()
                self._resync.clear()
                stopping = asyncio.create_task(stop.wait())
                resync = asyncio.create_task(self._resync.wait())
                await asyncio.wait(
                    {stopping, resync},
                    timeout=self.settings.scan_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                stopping.cancel()
                resync.cancel()
        finally:
            unsubscribe()
            # Let each station finish the exchange in flight, then store it all.
            for nudge in self._nudges.values():
                nudge.set()
            if self._tasks:
                await asyncio.wait(self._tasks.values(), timeout=self.settings.stop_grace_s)
            for task in [listener, flusher, *self._tasks.values()]:
                task.cancel()
            await asyncio.gather(
                listener, flusher, *self._tasks.values(), *self._background, return_exceptions=True
            )
            self._tasks.clear()
            await self.flush()  # what was observed before the stop is kept

    async def sync_stations(self) -> None:
        """Start a task for each enabled station; stop those that went away."""
        wanted, with_commands = await db(_enabled_stations)(self.site)
        self._hosts = {address: pk for pk, address in wanted}
        for pk in list(self._tasks):
            if pk not in self._hosts.values() or self._tasks[pk].done():
                self._tasks.pop(pk).cancel()
        for pk, _address in wanted:
            if pk not in self._tasks:
                self._nudges[pk] = asyncio.Event()
                self._tasks[pk] = asyncio.create_task(self.station_loop(pk))
        # The periodic scan: rows written while a wake-up was missed, or while
        # the gateway was down, are found here.
        for pk in with_commands:
            self.commands_waiting(pk)

    def commands_waiting(self, station_id: int) -> None:
        self._commands_waiting.add(station_id)
        self.nudge(station_id)

    def nudge(self, station_id: int) -> None:
        """Act now: a command was queued or the station reported a change."""
        if station_id in self._nudges:
            self._nudges[station_id].set()
        else:
            self._resync.set()  # a station added since the last scan

    def _in_background(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def serve_requests(self) -> None:
        """Wake-ups and questions from views, tasks and the admin (see live.py)."""
        async for request in live.gateway_requests():
            kind = request.get("type")
            if kind == "gateway.wake" and isinstance(request.get("station"), int):
                self.commands_waiting(request["station"])
            elif kind in ("gateway.identify", "gateway.discover") and request.get("reply_to"):
                self._in_background(self._answer(request))

    async def _answer(self, request: dict[str, Any]) -> None:
        try:
            if request["type"] == "gateway.identify":
                address = str(request.get("address", ""))
                found = [FoundStation(address, await self.client.identify(address))]
            elif request.get("network"):
                found = await self.client.scan(str(request["network"]))
            else:
                found = await self.client.discover(self.broadcast)
            reply: dict[str, Any] = {"ok": True, "stations": [describe(f) for f in found]}
        except (KebaError, ValueError) as exc:
            reply = {"ok": False, "error": str(exc)}
        await live.answer(request["reply_to"], reply)

    def _on_message(self, host: str, message: Message | StationMoved) -> None:
        # Routing only: the station's own task does the work.
        if isinstance(message, StationMoved):
            self._in_background(db(_record_move)(message.serial, message.new_host))
            return
        station_id = self._hosts.get(host)
        if station_id is None:
            return
        if isinstance(message, Started):
            self._restarted.add(station_id)
        if isinstance(message, StatusUpdate | Started):
            self.nudge(station_id)

    async def station_loop(self, station_id: int) -> None:
        identified = nudged = False
        last_poll = next_poll = -math.inf
        repeat_s = self.client.timing.report_repeat_s
        while not self._stop.is_set():
            station = await db(Station.objects.filter(pk=station_id).first)()
            if station is None:
                return  # deleted; the next scan forgets it
            try:
                if not identified:
                    await self.connect(station)
                    identified = True
                    station = await db(Station.objects.get)(pk=station_id)
                if station_id in self._commands_waiting:
                    self._commands_waiting.discard(station_id)
                    await self.execute_commands(station)
                    # Poll again soon to see the effect, but not before KEBA's 5 s.
                    next_poll = min(next_poll, self.clock.monotonic() + repeat_s)
                if nudged:  # a status message: something changed
                    next_poll = min(next_poll, last_poll + repeat_s)
                if self.clock.monotonic() >= next_poll:
                    identified = await self.poll(station)
                    last_poll = self.clock.monotonic()
                    next_poll = last_poll + station.poll_interval_s
            except Timeout:
                identified = False
                await db(_record_missed_poll)(station_id, self.settings.offline_after_missed)
                delay = await db(_poll_delay)(station_id, self.settings)
                next_poll = self.clock.monotonic() + delay
                await self.look_for_moved_stations()
            except KebaError as exc:
                await db(_log_event)(station_id, Event.Kind.ERROR, str(exc))
                next_poll = self.clock.monotonic() + station.poll_interval_s
            except Exception as exc:
                # Whatever else went wrong must not stop this station for good:
                # store it where a person sees it, and try again later.
                log.exception("station %s: unexpected error", station_id)
                with contextlib.suppress(DatabaseError):
                    await db(_log_event)(station_id, Event.Kind.ERROR, f"gateway error: {exc!r}")
                next_poll = self.clock.monotonic() + self.settings.max_backoff_s
            nudged = await self._wait(station_id, next_poll - self.clock.monotonic())

    async def _wait(self, station_id: int, delay_s: float) -> bool:
        """Sleep until the next poll is due; True when nudged before that."""
        nudge = self._nudges[station_id]
        try:
            await asyncio.wait_for(nudge.wait(), self.clock.to_real(max(0.0, delay_s)))
        except TimeoutError:
            return False
        nudge.clear()
        return True

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval_s)
            await self.flush()

    async def flush(self) -> None:
        batch = self.recorder.take()
        try:
            await db(recorder.write)(batch)
        except DatabaseError:
            # A locked or unreachable database: keep the batch for the next flush.
            log.exception("could not store readings; will try again")
            self.recorder.put_back(batch)

    # Steps

    async def look_for_moved_stations(self) -> None:
        """A silent station may have a new address (DHCP): ask the LAN, now and then.

        The client recognises a known serial at a new address and tells us."""
        now = self.clock.monotonic()
        if now - self._searched_at < self.settings.search_interval_s:
            return
        self._searched_at = now
        await self.client.discover(self.broadcast, wait_s=1.0)

    async def connect(self, station: Station) -> None:
        """Identify the station and bring its sessions in line with its log."""
        identity = await self.client.identify(station.address)
        await db(_record_identity)(station.pk, identity)
        if identity.product_info and identity.product_info.can(Capability.SESSION_LOG):
            await self.import_log(station)

    async def import_log(self, station: Station, newest_only: bool = False) -> None:
        """Read reports 100-130; each session appears once, the log wins."""
        last = 101 if newest_only else 130
        for report_id in range(100, last + 1):
            report = await self.client.report(station.address, report_id)
            assert isinstance(report, SessionReport)
            if report.is_empty:
                break
            await db(_record_log_session)(station.pk, report, timezone.now())

    async def poll(self, station: Station) -> bool:
        """Read reports 2 and 3; False when the station restarted and must be identified."""
        status = await self.client.report(station.address, 2)
        meter = await self.client.report(station.address, 3)
        assert isinstance(status, Report2) and isinstance(meter, Report3)
        pk = station.pk
        went_back = status.uptime_s is not None and status.uptime_s < self._uptime.get(pk, 0)
        rebooted = went_back or pk in self._restarted
        self._restarted.discard(pk)
        if status.uptime_s is not None:
            self._uptime[pk] = status.uptime_s
        if rebooted:
            await self.flush()
            await db(_record_reboot)(pk)
        car = bool(status.plug and status.plug.car_connected)
        if self._car_connected.get(pk) != car or rebooted:
            self._car_connected[pk] = car
            if station.can(Capability.SESSION_LOG):
                await self.import_log(station, newest_only=True)
            else:
                await db(_record_plug_without_log)(pk, car)
        if self.recorder.observe(pk, status, meter, timezone.now()):
            await live.publish_status(pk, recorder.status_payload(status, meter))
        return not rebooted

    async def execute_commands(self, station: Station) -> None:
        """Send pending commands in order, verifying each in report 2."""
        # Each row at most once per pass: a retry waits for the next pass.
        for row in await db(_pending_commands)(station.pk):
            await self.execute(station, row)
            if row.status == Command.Status.PENDING:
                self._commands_waiting.add(station.pk)

    async def execute(self, station: Station, row: Command) -> None:
        try:
            command = parse_command(row.wire)
        except KebaError as exc:
            await db(_finish)(row, Command.Status.REFUSED, f"not a valid command: {exc}")
            return
        needed = command.required_capability
        if needed is not None and not station.can(needed):
            reason = f"{station.model_label or 'this station'} does not support `{command.name}`"
            await db(_finish)(row, Command.Status.REFUSED, reason + "; nothing was sent")
            return
        await db(_mark_sent)(row)
        try:
            ack = await self.client.request(station.address, command)
        except (Refused, Unsupported) as exc:
            await db(_finish)(row, Command.Status.REFUSED, str(exc))
            return
        except Timeout as exc:
            await db(_retry_or_fail)(row, self.settings.command_attempts, str(exc))
            return
        await db(_acknowledge)(row, str(getattr(ack, "text", "")))
        status = await self.client.report(station.address, 2)
        assert isinstance(status, Report2)
        problem = verify(command, status)
        if problem is None:
            await db(_finish)(row, Command.Status.VERIFIED, "report 2 shows the change")
        else:
            await db(_retry_or_fail)(row, self.settings.command_attempts, problem)


def describe(found: FoundStation) -> dict[str, Any]:
    """A found station as plain values, for the admin and the command line."""
    report, info = found.report, found.report.product_info
    return {
        "address": found.host,
        "serial": report.serial,
        "product": report.product,
        "firmware": report.firmware,
        "model_label": info.label if info else "",
        "capabilities": sorted(str(c) for c in info.capabilities) if info else [],
        "udp_supported": info.udp_supported if info else True,
        "udp_enabled": report.udp_enabled,
        "note": info.note if info else "",
    }


def verify(command: WireCommand, status: Report2) -> str | None:
    """What report 2 should show after a command; None when it does."""
    args = [int(a) for a in command.args if isinstance(a, int)]
    expected: tuple[str, Any] | None = {
        "curr": ("user_current_a", args[0] / 1000 if args else None),
        "setenergy": ("energy_limit_kwh", args[0] / 10000 if args else None),
        "ena": ("enabled_user", bool(args[0]) if args else None),
        "output": ("output", args[0] if args else None),
        "x2src": ("x2_source", args[0] if args else None),
        "x2": ("phases", (3 if args[0] else 1) if args else None),
        "currtime": ("timer_current_a", args[0] / 1000 if args else None),
        "failsafe": ("failsafe_timeout_s", args[0] if args else None),
    }.get(command.name)
    if expected is None:
        return None  # nothing in report 2 shows it: the acknowledgement must do
    field, value = expected
    seen = getattr(status, field)
    if seen is None or seen == value:
        return None
    return f"acknowledged, but report 2 shows {field} = {seen} instead of {value}"


# Database steps (synchronous; run through `db`)


def _enabled_stations(site: str | None) -> tuple[list[tuple[int, str]], set[int]]:
    """The stations to poll, and those of them with pending commands."""
    stations = Station.objects.filter(enabled=True)
    if site is not None:
        stations = stations.filter(site__name=site)
    pending = Command.objects.filter(status=Command.Status.PENDING, station__in=stations)
    return (
        list(stations.values_list("pk", "address")),
        set(pending.values_list("station_id", flat=True)),
    )


def _log_event(station_id: int, kind: str, message: str) -> None:
    Event.objects.create(station_id=station_id, kind=kind, message=message[:300])


def _mark_online(station: Station, now: datetime) -> None:
    if not station.is_online:
        station.is_online = True
        _log_event(station.pk, Event.Kind.ONLINE, "answers")
    station.last_contact = now
    station.missed_polls = 0


def _record_identity(station_id: int, identity: Report1) -> None:
    station = Station.objects.get(pk=station_id)
    station.take_identity(describe(FoundStation(station.address, identity)))
    _mark_online(station, timezone.now())
    station.save()


def _record_missed_poll(station_id: int, offline_after: int) -> None:
    station = Station.objects.get(pk=station_id)
    station.missed_polls += 1
    if station.is_online and station.missed_polls >= offline_after:
        station.is_online = False
        _log_event(station_id, Event.Kind.OFFLINE, f"no answer to {station.missed_polls} polls")
    station.save(update_fields=["missed_polls", "is_online"])


def _poll_delay(station_id: int, settings: GatewaySettings) -> float:
    station = Station.objects.get(pk=station_id)
    if station.is_online:
        return float(station.poll_interval_s)
    # Back off while a station is away, up to a ceiling.
    extra = station.missed_polls - settings.offline_after_missed
    return min(settings.max_backoff_s, station.poll_interval_s * 2 ** max(0, extra))


def _record_reboot(station_id: int) -> None:
    now = timezone.now()
    # The station forgets the running session on reboot: close ours.
    for session in Session.objects.filter(station_id=station_id, ended_at=None):
        session.close(now)
        session.save()
    _log_event(station_id, Event.Kind.REBOOT, "the station restarted")


def _record_move(serial: str, new_host: str) -> None:
    station = Station.objects.filter(serial=serial).first()
    if station is None or station.address == new_host:
        return
    old = station.address
    Station.objects.filter(address=new_host).exclude(pk=station.pk).delete()
    station.address = new_host
    station.save(update_fields=["address"])
    _log_event(station.pk, Event.Kind.MOVED, f"moved from {old} to {new_host}")


def _tag_for(text: str | None, tag_class: str | None, seen_at: datetime) -> Tag | None:
    if not text:
        return None
    tag, _ = Tag.objects.get_or_create(
        tag=Tag.normalise(text),
        defaults={"tag_class": tag_class or "", "first_seen": seen_at},
    )
    tag.last_seen = seen_at
    tag.save(update_fields=["last_seen"])
    return tag


def _record_log_session(station_id: int, report: SessionReport, received_at: datetime) -> None:
    started = report.started_at(received_at) or received_at
    fields: dict[str, Any] = {
        "energy_kwh": report.session_energy_kwh or 0,
        "start_counter_kwh": report.start_energy_kwh,
        "tag": _tag_for(report.rfid_tag, report.rfid_class, started),
    }
    with transaction.atomic():
        session, created = Session.objects.select_for_update().get_or_create(
            station_id=station_id,
            keba_session_id=report.session_id,
            defaults=fields | {"started_at": started, "source": Session.Source.LIVE},
        )
        if report.is_running:
            if not created:
                Session.objects.filter(pk=session.pk).update(**fields)
            return
        # A finished session: the station's log is the truth.
        session.started_at = started
        session.ended_at = report.ended_at(received_at) or received_at
        session.end_reason = report.reason
        session.source = Session.Source.LOG
        for name, value in fields.items():
            setattr(session, name, value)
        session.save()


def _record_plug_without_log(station_id: int, car_connected: bool) -> None:
    """P20: no session log, so sessions come from observation alone."""
    now = timezone.now()
    open_sessions = Session.objects.filter(station_id=station_id, ended_at=None)
    if car_connected and not open_sessions.exists():
        Session.objects.create(station_id=station_id, started_at=now)
    elif not car_connected:
        for session in open_sessions:
            session.close(now, reason=1)
            session.save()


def _pending_commands(station_id: int) -> list[Command]:
    pending = Command.objects.filter(station_id=station_id, status=Command.Status.PENDING)
    for row in pending.filter(expires_at__lt=timezone.now()):
        _finish(row, Command.Status.EXPIRED, "not executed before it expired")
    return list(pending.order_by("created_at", "id"))


def _mark_sent(row: Command) -> None:
    row.status = Command.Status.SENT
    row.attempts += 1
    row.sent_at = timezone.now()
    row.save(update_fields=["status", "attempts", "sent_at"])


def _acknowledge(row: Command, reply: str) -> None:
    row.status = Command.Status.ACKNOWLEDGED
    row.reply = reply[:200]
    row.save(update_fields=["status", "reply"])


def _finish(row: Command, status: Command.Status, reason: str) -> None:
    row.finish(status, reason)
    row.save()
    _log_event(row.station_id, Event.Kind.COMMAND, f"`{row.wire}`: {status} ({reason})")


def _retry_or_fail(row: Command, attempts: int, reason: str) -> None:
    if row.attempts >= attempts:
        _finish(row, Command.Status.FAILED, f"gave up after {row.attempts} attempts: {reason}")
        return
    row.status = Command.Status.PENDING
    row.reason = reason[:300]
    row.save(update_fields=["status", "reason"])
