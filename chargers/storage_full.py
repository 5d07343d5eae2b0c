"""A database that cannot grow (a full disk): a clear 503 instead of a 500.

Nothing already stored is lost when a write fails; the page says why and what
to do, and the gateway keeps what it could not store as unwatched time."""

import sys
from collections.abc import Callable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import defaults

# SQLite says "database or disk is full"; PostgreSQL's disk_full is SQLSTATE 53100.
SQLITE_FULL = "database or disk is full"
POSTGRES_DISK_FULL = "53100"


def is_storage_full(exc: BaseException) -> bool:
    if not isinstance(exc, DatabaseError):
        return False
    cause = exc.__cause__
    return SQLITE_FULL in str(exc) or getattr(cause, "sqlstate", None) == POSTGRES_DISK_FULL


class StorageFullMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_storage_full(exception):
            return None
        return storage_full_response(request)


def storage_full_response(request: HttpRequest) -> HttpResponse:
    # htmx swaps the message in where the form was (templates/base.html: htmx-config).
    htmx = request.headers.get("HX-Request") == "true"
    template = "_storage_full.html" if htmx else "storage_full.html"
    return render(request, template, status=503)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 page, unless the error was a full database (found after the view,
    when the session is saved, where middleware cannot catch it)."""
    if is_storage_full(sys.exc_info()[1] or Exception()):
        return storage_full_response(request)
    return defaults.server_error(request)
