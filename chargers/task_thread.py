"""Scheduled tasks run in a thread of `serve`: the embedded default.

django-q2's cluster is five processes, each a copy of Django: about 65 MiB to
run a daily retention pass and the rules' boundaries (bench/serve_memory.py),
more than a Raspberry Pi should spend on that. This thread does the same work
with django-q2's own pieces: its scheduler turns due schedules into tasks on the
broker, and its worker and monitor run each task and record the result, so the
admin shows runs, failures and retries as it does for the cluster.
`KEBAWEB_TASKS=cluster` gives the separate cluster back.

What the thread gives up: a task is not stopped after Q_CLUSTER["timeout"]
(django-q2 uses SIGALRM for that, which only the main thread can set), and
tasks run one at a time. Ours are short and safe to run again.
"""

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import timedelta
from multiprocessing import Value
from queue import SimpleQueue
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections
from django.db.models import Min
from django.utils import timezone
from django_q.brokers import Broker, get_broker
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.monitor import monitor
from django_q.scheduler import scheduler
from django_q.signing import BadSignature, SignedPackage
from django_q.worker import worker

log = logging.getLogger(__name__)

# As django-q2's cluster: schedules are looked at about twice a minute, and
# tasks queued by others (the admin's "resubmit") are picked up as often.
CYCLE_S = 30.0


class DaemonThread(Executor):
    """Runs each call in a new daemon thread: a task still running when serve has
    waited long enough must not hold the process (its queued row runs again on
    the next start), and a thread pool's threads are joined at exit."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()

        def call() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)

        threading.Thread(target=call, name="tasks", daemon=True).start()
        return future


class TaskThread:
    """django-q2's scheduler, worker and monitor in one thread, started and stopped with serve."""

    def __init__(self, cycle_s: float = CYCLE_S) -> None:
        self.cycle_s = cycle_s
        self._stop = threading.Event()
        self._running: asyncio.Future[None] | None = None

    async def run(self) -> None:
        # Through sync_to_async, so that a task's async_to_sync (a rule boundary
        # waking the gateway) runs on serve's loop, where the channel layer lives.
        # Any Executor does: asgiref hands it to loop.run_in_executor.
        loop_work = sync_to_async(
            self._run,
            thread_sensitive=False,
            executor=DaemonThread(),  # type: ignore[call-overload]
        )
        self._running = asyncio.ensure_future(loop_work())

    async def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._running is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._running), timeout_s)
        except TimeoutError:
            log.warning("a scheduled task did not finish within %.0f s; leaving it", timeout_s)

    def _run(self) -> None:
        broker = get_broker()
        try:
            while not self._stop.is_set():
                try:
                    scheduler(broker)
                    self.run_queued(broker)
                    wait_s = self.seconds_to_next_run()
                except Exception:
                    log.exception(
                        "running scheduled tasks failed; trying again in %.0f s", self.cycle_s
                    )
                    wait_s = self.cycle_s
                self._stop.wait(wait_s)
        finally:
            connections.close_all()  # this thread's own connections

    def run_queued(self, broker: Broker) -> None:
        """Run what the broker holds, one task at a time, until it is empty or we stop."""
        while not self._stop.is_set():
            queued = broker.dequeue()
            if not queued:
                return
            tasks: SimpleQueue[Any] = SimpleQueue()
            results: SimpleQueue[Any] = SimpleQueue()
            for ack_id, package in queued:
                try:
                    task = SignedPackage.loads(package)
                except (TypeError, BadSignature):
                    log.exception("a queued task cannot be read; marking it failed")
                    broker.fail(ack_id)
                    continue
                task["cluster"] = Conf.CLUSTER_NAME
                task["ack_id"] = ack_id
                tasks.put(task)
            tasks.put("STOP")
            worker(tasks, results, Value("f", -1))
            results.put("STOP")
            monitor(results, broker)

    def seconds_to_next_run(self) -> float:
        """Until the next schedule is due, so a rule's boundary is kept on time; at most a cycle."""
        due = Schedule.objects.exclude(repeats=0).aggregate(Min("next_run"))["next_run__min"]
        if due is None:
            return self.cycle_s
        # The scheduler takes schedules due strictly before now: come just after.
        until_due = (due - timezone.now() + timedelta(seconds=0.5)).total_seconds()
        return min(self.cycle_s, max(0.5, until_due))
