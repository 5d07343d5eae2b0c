"""The gateway's one way into the ORM from the event loop."""

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async

P = ParamSpec("P")
R = TypeVar("R")


def db(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Run a synchronous database step off the loop, on Django's one DB thread."""
    return sync_to_async(function, thread_sensitive=True)
