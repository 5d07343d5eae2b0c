"""What `manage.py serve` runs beside daphne, on daphne's own event loop.

The gateway shares the loop so that the in-memory channel layer reaches the
browsers; the django-q2 cluster is a child process, restarted when it dies.
Each piece starts and stops in a few small steps that tests can call directly.
"""

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from django.conf import settings

from chargers.demo import Demo
from chargers.gateway import Gateway
from chargers.kecontact.client import KebaClient

log = logging.getLogger(__name__)

LOOPBACK_BROADCAST = "127.255.255.255"


@dataclass(frozen=True)
class RestartPolicy:
    check_every_s: float = 3.0
    first_delay_s: float = 1.0
    max_delay_s: float = 60.0
    max_restarts: int = 3  # within window_s
    window_s: float = 60.0


@dataclass
class BackOff:
    """When to restart something that died: doubling delays, a few per minute."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    now: Callable[[], float] = time.monotonic
    restarts: list[float] = field(default_factory=list)
    failures_in_a_row: int = 0

    def delay_after_failure(self, ran_for_s: float) -> float:
        policy = self.policy
        # A run that outlasted the window was healthy: start counting again.
        self.failures_in_a_row = 1 if ran_for_s >= policy.window_s else self.failures_in_a_row + 1
        delay = min(policy.max_delay_s, policy.first_delay_s * 2 ** (self.failures_in_a_row - 1))
        now = self.now()
        recent = [at for at in self.restarts if now - at < policy.window_s]
        if len(recent) >= policy.max_restarts:
            delay = max(delay, recent[-policy.max_restarts] + policy.window_s - now)
        self.restarts = [*recent, now + delay]
        return delay


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class ClusterSupervisor:
    """The django-q2 cluster as a child process: restarted if it dies, stopped with us."""

    def __init__(
        self, command: Sequence[str], cwd: Path, policy: RestartPolicy | None = None
    ) -> None:
        self.command = list(command)
        self.cwd = cwd
        self.policy = policy or RestartPolicy()
        self.backoff = BackOff(self.policy)
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restarts = 0
        self._stop = asyncio.Event()

    def start(self) -> None:
        # Its own process group: a Ctrl-C in the terminal reaches only us, and we
        # stop the cluster once. A second signal while django-q2 is stopping can
        # deadlock its signal handler.
        self.process = subprocess.Popen(self.command, cwd=self.cwd, process_group=0)
        self.started_at = time.monotonic()

    def exit_status(self) -> int | None:
        """None while the child runs (or before it was started)."""
        return None if self.process is None else self.process.poll()

    async def run(self) -> None:
        self.start()
        while not self._stop.is_set():
            await _wait_or_stop(self._stop, self.policy.check_every_s)
            status = self.exit_status()
            if status is None or self._stop.is_set():
                continue
            delay = self.backoff.delay_after_failure(time.monotonic() - self.started_at)
            log.warning(
                "the django-q2 cluster exited with status %s; restarting it in %.0f s",
                status,
                delay,
            )
            await _wait_or_stop(self._stop, delay)
            if not self._stop.is_set():
                self.restarts += 1
                self.start()

    async def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()  # the cluster finishes running tasks on SIGTERM
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), timeout_s)
        except TimeoutError:
            log.warning("the django-q2 cluster did not stop within %.0f s; killing it", timeout_s)
            # The whole group: its workers must not outlive it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)


@dataclass(frozen=True)
class DemoOptions:
    network: IPv4Address  # address of the first emulated station
    speed: float
    seed: int
    time_zone: str


class Runtime:
    """The gateway, the cluster and the demo stations, started and stopped in order."""

    def __init__(
        self,
        udp_bind: str,
        *,
        cluster_command: Sequence[str] | None,
        cwd: Path,
        demo: DemoOptions | None = None,
        gateway_stop_timeout_s: float = 5.0,
    ) -> None:
        self.udp_bind = udp_bind
        self.cluster = ClusterSupervisor(cluster_command, cwd) if cluster_command else None
        self.demo = (
            Demo(demo.network, speed=demo.speed, seed=demo.seed, time_zone=demo.time_zone)
            if demo
            else None
        )
        self.gateway_stop_timeout_s = gateway_stop_timeout_s
        self.client: KebaClient | None = None
        self.stop_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    @property
    def broadcast(self) -> str:
        # Discovery stays on loopback when we are bound there (the demo, tests).
        loopback = IPv4Address(self.udp_bind).is_loopback
        return LOOPBACK_BROADCAST if loopback else settings.KEBA_BROADCAST

    async def bind(self) -> None:
        """Take UDP port 7090 first: PortBusy must stop us before anything changes."""
        client = KebaClient(bind_host=self.udp_bind)
        await client.start()
        self.client = client

    async def start(self) -> None:
        if self.client is None:
            await self.bind()
        assert self.client is not None
        if self.demo is not None:
            await self.demo.start()
        self._tasks.append(asyncio.create_task(self.run_gateway(self.client), name="gateway"))
        if self.cluster is not None:
            self._tasks.append(asyncio.create_task(self.cluster.run(), name="cluster"))

    async def run_gateway(self, client: KebaClient) -> None:
        """Run the gateway until stopped; a crash is logged and the gateway restarted."""
        backoff = BackOff()
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                await Gateway(client, broadcast=self.broadcast).run(self.stop_event)
            except Exception:
                delay = backoff.delay_after_failure(time.monotonic() - started)
                log.exception("the gateway failed; restarting it in %.0f s", delay)
                await _wait_or_stop(self.stop_event, delay)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.stop_event.set()
        gateway = next((task for task in self._tasks if task.get_name() == "gateway"), None)
        if gateway is not None:
            try:
                await asyncio.wait_for(asyncio.shield(gateway), self.gateway_stop_timeout_s)
            except TimeoutError:
                log.warning(
                    "the gateway did not stop within %.0f s; cancelling it",
                    self.gateway_stop_timeout_s,
                )
                gateway.cancel()
        if self.client is not None:
            await self.client.close()
        if self.cluster is not None:
            await self.cluster.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.demo is not None:
            await self.demo.stop()
