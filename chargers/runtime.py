"""What `manage.py serve` runs beside daphne, on daphne's own event loop.

The gateway shares the loop so that the in-memory channel layer reaches the
browsers. Scheduled tasks run in a thread (chargers/task_thread.py) or, with
KEBAWEB_TASKS=cluster, in django-q2's cluster as a child process, restarted
when it dies.
Each piece starts and stops in a few small steps that tests can call directly.
"""

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from django.conf import settings

from chargers.demo import Demo
from chargers.gateway import Gateway
from chargers.kecontact.client import KebaClient
from chargers.kecontact.emulator import network_broadcast
from chargers.task_thread import TaskThread

log = logging.getLogger(__name__)

LAN_BROADCAST = "255.255.255.255"
CLUSTER_PID_FILE = "cluster.pid"  # in the data dir: one cluster per database
# Run by its path: it imports nothing of ours, whatever the working directory.
TETHER = Path(__file__).with_name("tether.py")


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
    """The django-q2 cluster as a child process: restarted if it dies, stopped with us.

    It runs under chargers/tether.py, which stops the cluster's whole process
    group when we are gone, even after kill -9. The pid file lets the next start
    stop a cluster that was left over all the same, so exactly one runs."""

    def __init__(
        self,
        command: Sequence[str],
        cwd: Path,
        pid_file: Path,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.command = list(command)
        self.cwd = cwd
        self.pid_file = pid_file
        self.policy = policy or RestartPolicy()
        self.backoff = BackOff(self.policy)
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restarts = 0
        self._stop = asyncio.Event()
        self._watchdog: tuple[int, int] | None = None  # the tether's pipe: (read, write)

    def start(self) -> None:
        self.stop_leftover()
        if self._watchdog is None:
            # Only we hold the write end (pipes are not inherited by other children).
            self._watchdog = os.pipe()
        watchdog = self._watchdog[0]
        tethered = [sys.executable, str(TETHER), str(watchdog), str(self.pid_file)]
        # Its own process group: a Ctrl-C in the terminal reaches only us, and we
        # stop the cluster once. A second signal while django-q2 is stopping can
        # deadlock its signal handler.
        self.process = subprocess.Popen(
            [*tethered, "--", *self.command],
            cwd=self.cwd,
            process_group=0,
            pass_fds=(watchdog,),
        )
        self.pid_file.write_text(f"{self.process.pid}\n")
        self.started_at = time.monotonic()

    def stop_leftover(self) -> None:
        """Kill the group of a cluster an earlier run of ours left behind."""
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return
        if is_tether(pid, self.pid_file):
            log.warning("stopping a task cluster left over from an earlier run (pid %d)", pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)

    def exit_status(self) -> int | None:
        """None while the child runs (or before it was started)."""
        process = self.process
        if process is None or process.returncode is not None:
            return None if process is None else process.returncode
        if not has_exited(process.pid):
            return None
        # Until reaped the leader's pid, which is the group's id, cannot be
        # reused: what is left in its group is still the cluster's.
        kill_group(process.pid)
        return process.poll()

    async def run(self) -> None:
        self.start()
        while not self._stop.is_set():
            await _wait_or_stop(self._stop, self.policy.check_every_s)
            if self._stop.is_set():
                break
            status = self.exit_status()
            if status is None:
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
        if process is not None and process.returncode is None:
            process.terminate()  # the cluster finishes running tasks on SIGTERM
            try:
                await asyncio.wait_for(asyncio.to_thread(wait_exited, process.pid), timeout_s)
            except TimeoutError:
                log.warning(
                    "the django-q2 cluster did not stop within %.0f s; killing it", timeout_s
                )
            # The whole group: its workers must not outlive it.
            kill_group(process.pid)
            await asyncio.to_thread(process.wait)
        if process is not None:
            with contextlib.suppress(FileNotFoundError, ValueError):
                if int(self.pid_file.read_text()) == process.pid:
                    self.pid_file.unlink()
        if self._watchdog is not None:
            for end in self._watchdog:
                os.close(end)
            self._watchdog = None


def has_exited(pid: int) -> bool:
    """Whether our child has exited, without reaping it."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped already
        return True


def wait_exited(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def is_tether(pid: int, pid_file: Path) -> bool:
    """Whether `pid` leads the process group of a cluster tethered for `pid_file`.

    Pids are reused: only a process whose command line says so is killed."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        leads_group = os.getpgid(pid) == pid
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    label = os.fsencode(str(pid_file))
    tether = os.fsencode(str(TETHER))
    return leads_group and arguments[1:2] == [tether] and label in arguments


@dataclass(frozen=True)
class DemoOptions:
    network: IPv4Address  # address of the first emulated station
    speed: float
    seed: int
    time_zone: str


def broadcast_for(bind: str, demo_network: IPv4Address | None = None) -> str:
    """Where the gateway looks for stations: KEBA_BROADCAST when it is set.

    Otherwise the LAN's broadcast, but never from a loopback address: there
    discovery goes to the /24 where emulated stations listen (the demo's,
    or a test run's), and never leaves this machine."""
    if settings.KEBA_BROADCAST:
        return str(settings.KEBA_BROADCAST)
    if demo_network is not None:
        return network_broadcast(str(demo_network))
    if IPv4Address(bind).is_loopback:
        return network_broadcast(bind)
    return LAN_BROADCAST


class Runtime:
    """The gateway, the scheduled tasks and the demo stations, started and stopped in order."""

    def __init__(
        self,
        udp_bind: str,
        *,
        tasks: ClusterSupervisor | TaskThread | None,
        demo: DemoOptions | None = None,
        gateway_stop_timeout_s: float = 5.0,
    ) -> None:
        self.udp_bind = udp_bind
        self.tasks = tasks
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

        self.broadcast = broadcast_for(udp_bind, demo.network if demo else None)

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
        if self.tasks is not None:
            self._tasks.append(asyncio.create_task(self.tasks.run(), name="scheduled tasks"))

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
        if self.tasks is not None:
            await self.tasks.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.demo is not None:
            await self.demo.stop()
