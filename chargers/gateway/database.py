"""The gateway's one way into the ORM from the event loop."""

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, connection

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
