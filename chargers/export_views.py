"""`/sessions/export.csv` and `/sessions/totals.csv`: the sessions page's filters, as files."""

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import chain, islice

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponseBadRequest,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.utils import timezone

from chargers import exports
from chargers.models import Session
from chargers.roles import can_control
from chargers.session_filters import SessionFilterForm, apply_session_filter, visible_sessions

Exporter = Callable[[QuerySet[Session], exports.CsvFormat], Iterator[str]]

LINES_PER_BATCH = 500
BROKEN_OFF = "export broken off by a server error: this file is incomplete\r\n"

logger = logging.getLogger(__name__)


def csv_response(lines: Iterator[str], name: str, request: HttpRequest) -> StreamingHttpResponse:
    """The lines as a download. Under ASGI (daphne) the file is sent as it is read;
    with a plain iterator Django would read it all into a list before the first
    byte (1.3 s and 10 MiB more for 50,000 sessions)."""
    body = _to_the_end(_begun(lines))
    streamed = _in_batches(body) if isinstance(request, ASGIRequest) else body
    response = StreamingHttpResponse(streamed, content_type="text/csv; charset=utf-8")
    stamp = f"{timezone.localtime(timezone.now(), timezone.get_default_timezone()):%Y-%m-%d}"
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
    return response


def _begun(lines: Iterator[str]) -> Iterator[str]:
    # The header and the first row, which runs the query: a query that fails
    # here is still an ordinary error page, before any status went out.
    return chain(list(islice(lines, 2)), lines)


def _to_the_end(lines: Iterator[str]) -> Iterator[str]:
    """The lines, and a last one saying the file is incomplete if reading them fails.

    The status went out with the first line. An exception that leaves an ASGI
    app after that leaves the download open for ever: daphne (4.2.3) then tries
    to start a 500 response, which fails, and never ends the one it sent."""
    try:
        yield from lines
    except Exception:
        logger.exception("A CSV export broke off")
        yield BROKEN_OFF


async def _in_batches(lines: Iterator[str]) -> AsyncIterator[str]:
    # In the request's own thread: a database cursor stays with its connection.
    read = sync_to_async(lambda: "".join(islice(lines, LINES_PER_BATCH)))
    while batch := await read():
        yield batch


def _export(request: HttpRequest, exporter: Exporter, name: str) -> HttpResponseBase:
    if not can_control(request.user):
        raise PermissionDenied("viewers see the dashboard but export nothing")
    form = SessionFilterForm(request.GET)
    problems = [form.error_text()] if form.errors else []
    try:
        fmt = exports.CsvFormat.from_params(request.GET)
    except exports.FormatError as exc:
        problems.append(f"sep/decimal: {exc}")
    if problems:
        # A file with the wrong sessions is worse than none: say what to fix.
        return HttpResponseBadRequest("\n".join(problems), content_type="text/plain; charset=utf-8")
    # Members see only their own cards' sessions, whatever `owner` asks for.
    sessions = apply_session_filter(form.chosen(), visible_sessions(request.user))
    return csv_response(exporter(sessions, fmt), name, request)


@login_required
def export_sessions(request: HttpRequest) -> HttpResponseBase:
    return _export(request, exports.export_sessions, "sessions")


@login_required
def export_totals(request: HttpRequest) -> HttpResponseBase:
    return _export(request, exports.export_totals, "totals-per-owner-per-month")
