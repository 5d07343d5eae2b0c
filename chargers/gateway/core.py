"""The gateway's life cycle: which stations it owns, what it hears, when it writes.

Datagrams are routed to the station workers by address; a datagram from any
other address is counted and never changes anything. Stations that went
silent or lost their address are looked for by serial (broadcast, then a scan
of their last network), and an address changes hands only after report 1 read
there shows the serial.
"""

import asyncio
import contextlib
import logging
import math
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import IPv4Network
from typing import Any

from django.db import DatabaseError, connections

from chargers import live, recorder
from chargers.kecontact.client import FoundStation, KebaClient, Stranger
from chargers.kecontact.codec import Message, Report1, Started, StatusUpdate
from chargers.kecontact.errors import KebaError

from . import stations
from .database import Failures, db
from .enforcement import Enforcer
from .stations import describe
from .worker import StationWorker

log = logging.getLogger(__name__)

# Intervals here are in the protocol clock's seconds, sped up in tests.
STRANGER_EVENT_EVERY_S = 3600.0  # one event per forging address per hour
STRANGER_EVENTS_PER_HOUR = 100  # and so many in all: a flood from many addresses stays small
MAX_STRANGERS_REMEMBERED = 10_000  # bounded memory under a flood of addresses
RESEND_EVERY_S = 1.0  # real seconds: a burst of new browsers costs one resend


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
    lease_s: float = 30.0  # real seconds before another gateway may take a station


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
        self.broadcast = broadcast
        self.site = site  # at scale, one gateway per site owns that site's stations
        # Stable across restarts of the same gateway, so it takes its stations back at once.
        self.gateway_id = f"{socket.gethostname()}/{client.bind_host}:{client.port}"
        self.recorder = recorder.Recorder(self.settings.heartbeat_s)
        self.enforcer = Enforcer(self)
        self.failures = Failures()
        self.workers: dict[int, StationWorker] = {}
        self._by_host: dict[str, StationWorker] = {}
        self._stop = asyncio.Event()
        self._resync = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._searching = asyncio.Lock()
        self._searched_at = -math.inf
        self._strangers: dict[str, float] = {}
        self._stranger_hour_began = -math.inf
        self._stranger_events = 0  # written since the hour began
        self._resent_at = -math.inf
        self.listening = asyncio.Event()  # set once requests over the channel layer arrive

    # Life cycle

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        unsubscribe = self.client.subscribe(self._on_message)
        listener = asyncio.create_task(self.serve_requests())
        flusher = asyncio.create_task(self.flush_forever())
        try:
            while not stop.is_set():
                try:
                    await self.sync_stations()
                except DatabaseError as exc:
                    # The database is unreachable for now: keep the stations
                    # polled as they are and look again at the next scan.
                    self.failures.failed("reading which stations to poll", exc)
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
            await self._stop_workers(listener, flusher)
            await self.flush()  # what was observed before the stop is kept
            with contextlib.suppress(DatabaseError):
                await db(stations.release_stations)(self.gateway_id)
            # A stopped gateway keeps no PostgreSQL connection (a server process) open.
            await db(connections.close_all)()

    async def _stop_workers(self, *others: asyncio.Task[None]) -> None:
        # Let each station finish the exchange in flight, then store it all.
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        for worker in self.workers.values():
            worker.nudge.set()
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.stop_grace_s)
        for task in [*others, *tasks]:
            task.cancel()
        await asyncio.gather(*others, *tasks, *self._background, return_exceptions=True)
        self.workers.clear()
        self._by_host.clear()

    async def sync_stations(self) -> None:
        """Take the stations this gateway owns, start or update their workers."""
        configs, with_commands = await db(stations.owned_stations)(
            self.site, self.gateway_id, timedelta(seconds=self.settings.lease_s)
        )
        wanted = {config.pk: config for config in configs}
        for pk in list(self.workers):
            worker = self.workers[pk]
            if pk not in wanted or (worker.task is not None and worker.task.done()):
                if worker.task is not None:
                    worker.task.cancel()
                del self.workers[pk]
        for pk, config in wanted.items():
            existing = self.workers.get(pk)
            if existing is not None:
                existing.update(config)
                continue
            worker = self.workers[pk] = StationWorker(self, config)
            worker.task = asyncio.create_task(worker.run(self._stop), name=f"station-{pk}")
        self._by_host = {w.config.address: w for w in self.workers.values() if w.config.address}
        await self.enforcer.refresh()  # rules changed, or a boundary passed
        # The periodic scan: rows written while a wake-up was missed, or while
        # the gateway was down, are found here.
        for pk in with_commands:
            self.commands_waiting(pk)

    async def resync(self) -> None:
        await self.sync_stations()

    def commands_waiting(self, station_id: int) -> None:
        worker = self.workers.get(station_id)
        if worker is None:
            self._resync.set()  # a station added since the last scan
            return
        worker.commands_waiting = True
        worker.nudge.set()

    def _in_background(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # What others ask

    async def serve_requests(self) -> None:
        """Wake-ups and questions from views, tasks and the admin (see live.py)."""
        async for request in live.gateway_requests(ready=self.listening):
            kind = request.get("type")
            if kind == "gateway.wake" and isinstance(request.get("station"), int):
                self.commands_waiting(request["station"])
            elif kind == "gateway.rules":  # a rule changed or a boundary came (chargers.tasks)
                self.enforcer.wake()
            elif kind == "gateway.resend":
                self._in_background(self._resend())
            elif kind in ("gateway.identify", "gateway.discover") and request.get("reply_to"):
                self._in_background(self._answer(request))

    async def _resend(self) -> None:
        """Every station's last status again (browsers that connect at once share one)."""
        now = time.monotonic()
        if now - self._resent_at < RESEND_EVERY_S:
            return
        self._resent_at = now
        for worker in list(self.workers.values()):
            shown = worker.shown_now()
            if shown is not None:
                await live.publish_status(worker.pk, shown)

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

    # What stations (and strangers) say

    def _on_message(self, host: str, message: "Message | Stranger") -> None:
        # Routing only: the station's own worker does the work.
        if isinstance(message, Stranger):
            self._note_stranger(message)
            return
        worker = self._by_host.get(host)
        if worker is None:
            return
        if isinstance(message, Started):
            worker.restarted_at = self.clock.now()
        if isinstance(message, StatusUpdate):
            shown = worker.heard(message)
            if shown is not None:
                self._in_background(live.publish_status(worker.pk, shown))
        if isinstance(message, StatusUpdate | Started):
            worker.status_changed = True
            worker.nudge.set()

    def _note_stranger(self, stranger: Stranger) -> None:
        """A datagram claiming a known serial from elsewhere: an event, rate-limited."""
        if stranger.serial is None or not any(
            w.config.serial == stranger.serial for w in self.workers.values()
        ):
            return
        now = self.clock.monotonic()
        if now - self._strangers.get(stranger.host, -math.inf) < STRANGER_EVENT_EVERY_S:
            return
        if len(self._strangers) >= MAX_STRANGERS_REMEMBERED:
            self._strangers.clear()
        self._strangers[stranger.host] = now
        if now - self._stranger_hour_began >= STRANGER_EVENT_EVERY_S:
            self._stranger_hour_began, self._stranger_events = now, 0
        if self._stranger_events >= STRANGER_EVENTS_PER_HOUR:
            return
        self._stranger_events += 1
        last = self._stranger_events == STRANGER_EVENTS_PER_HOUR
        if last:
            log.warning(
                "%d addresses claimed to be stations of ours within the hour; "
                "more are ignored without an event until the hour is over",
                STRANGER_EVENTS_PER_HOUR,
            )
        self._in_background(db(stations.record_stranger)(stranger.serial, stranger.host, last))

    # Finding stations again

    async def look_for(self, worker: StationWorker) -> None:
        """A station that is silent or lost its address: ask the LAN, now and then.

        One broadcast serves every station; where broadcasts do not pass, the
        network of the station's last address is scanned."""
        async with self._searching:
            now = self.clock.monotonic()
            interval = self.settings.search_interval_s
            if now - self._searched_at >= interval:
                self._searched_at = now
                for found in await self.client.discover(self.broadcast, wait_s=1.0):
                    await self.found_at(found.host, found.report)
            last_address = worker.config.last_known_address or worker.config.address
            if self._is_found(worker) or last_address is None:
                return
            if now - worker.scanned_at >= interval:
                worker.scanned_at = now
                network = str(IPv4Network(f"{last_address}/24", strict=False))
                for found in await self.client.scan(network, wait_s=1.0):
                    await self.found_at(found.host, found.report)

    def _is_found(self, worker: StationWorker) -> bool:
        current = self.workers.get(worker.pk)
        return (
            current is not None
            and current.config.address is not None
            and (current.identity is not None)
        )

    async def found_at(self, host: str, identity: Report1) -> None:
        """Report 1 read at `host` shows a serial: move that station there if it left its
        own address (which must no longer answer as that station)."""
        worker = next(
            (w for w in self.workers.values() if w.config.serial == identity.serial), None
        )
        if worker is None or worker.config.address == host:
            return
        old = worker.config.address
        if old is not None:
            try:
                if (await self.client.identify(old)).serial == identity.serial:
                    return  # it still answers at its own address: nothing moved
            except KebaError:
                pass  # silent there, or another station answers there: it moved
        how = f"report 1 at {host} shows its serial {identity.serial}"
        if await db(stations.claim_address)(worker.pk, host, how):
            await self.sync_stations()

    # Writing

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval_s)
            await self.flush()

    async def flush(self) -> None:
        batch = self.recorder.take()
        if not batch:
            return
        try:
            await db(recorder.write)(batch)
        except DatabaseError as exc:
            # A locked, unreachable or full database: keep the batch for the next flush.
            self.failures.failed("storing readings", exc)
            self.recorder.put_back(batch)
        else:
            self.failures.worked()
