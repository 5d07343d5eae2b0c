"""The gateway's one way into the ORM from the event loop, and what it says when
the database fails."""

import logging
import math
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import DatabaseError, InterfaceError, OperationalError, connection

from chargers.storage_full import is_storage_full

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def db(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Run a synchronous database step off the loop, on Django's one DB thread."""

    @wraps(function)
    def step(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except (InterfaceError, OperationalError):
            # A PostgreSQL connection the server dropped (restart, failover, idle
            # timeout) stays broken until closed. Django closes connections at
            # the end of each request; the gateway has no requests, so it closes
            # it here and the next step connects afresh.
            if not connection.in_atomic_block:
                connection.close()
            raise

    return sync_to_async(step, thread_sensitive=True)


class Failures:
    """Failed database steps, told in one line a minute.

    A full disk fails every step of every station several times a second, while
    a write that fits in a page's free room may still succeed: a traceback each
    time would fill the log, and the disk, with the same news."""

    EVERY_S = 60.0
    QUIET_S = 10.0  # without failures for this long, they are over

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._told_at = -math.inf
        self._failed_at = -math.inf
        self._since_told = 0

    def failed(self, what: str, exc: DatabaseError) -> None:
        self._since_told += 1
        now = self._failed_at = self.clock()
        if now - self._told_at < self.EVERY_S:
            return
        hint = (
            "free disk space on the database's server"
            if is_storage_full(exc)
            else "check that the database is reachable and writable"
        )
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.error(
            "database steps fail (%d since the last report; latest: %s: %s): %s. "
            "kebaweb keeps polling, retries the writes, and marks what it could not "
            "store as unwatched.",
            self._since_told,
            what,
            first_line,
            hint,
        )
        self._told_at, self._since_told = now, 0

    def worked(self) -> None:
        """A step succeeded: once failures stopped for a while, the next is news again."""
        told = self._told_at > -math.inf
        if told and self.clock() - self._failed_at >= self.QUIET_S:
            log.warning("database steps work again")
            self._told_at, self._since_told = -math.inf, 0
