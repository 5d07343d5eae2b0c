"""`/sessions/export.csv` and `/sessions/totals.csv`: the sessions page's filters, as files."""

from collections.abc import Callable, Iterator

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
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
from chargers.session_filters import apply_session_filter, parse_session_filter, visible_sessions

Exporter = Callable[[QuerySet[Session], exports.CsvFormat], Iterator[str]]


def csv_response(lines: Iterator[str], name: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    stamp = f"{timezone.localtime(timezone.now(), timezone.get_default_timezone()):%Y-%m-%d}"
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
    return response


def _export(request: HttpRequest, exporter: Exporter, name: str) -> HttpResponseBase:
    if not can_control(request.user):
        raise PermissionDenied("viewers see the dashboard but export nothing")
    chosen, errors = parse_session_filter(request.GET)
    try:
        fmt = exports.CsvFormat.from_params(request.GET)
    except exports.FormatError as exc:
        errors["sep/decimal"] = str(exc)
    if errors:
        # A file with the wrong sessions is worse than none: say what to fix.
        text = "\n".join(f"{field}: {error}" for field, error in errors.items())
        return HttpResponseBadRequest(text, content_type="text/plain; charset=utf-8")
    # Members see only their own cards' sessions, whatever `owner` asks for.
    sessions = apply_session_filter(chosen, visible_sessions(request.user))
    return csv_response(exporter(sessions, fmt), name)


@login_required
def export_sessions(request: HttpRequest) -> HttpResponseBase:
    return _export(request, exports.export_sessions, "sessions")


@login_required
def export_totals(request: HttpRequest) -> HttpResponseBase:
    return _export(request, exports.export_totals, "totals-per-owner-per-month")
