"""Sessions as CSV for spreadsheets: one row per session, or totals per owner per month.

Rows are produced one at a time from a database iterator, so a response can
stream 100,000 sessions in bounded memory. Spreadsheet programs need a UTF-8
byte-order mark to read UTF-8, and run a cell that starts with = + - @ as a
formula, so text from labels and names is neutralised with a leading quote.
"""

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import (
    Case,
    Count,
    DateField,
    DecimalField,
    FloatField,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.http import QueryDict
from django.utils import timezone

from chargers.kecontact.codec import EndReason
from chargers.models import Session
from chargers.session_filters import local_midnight

BOM = "\ufeff"
# Excel, LibreOffice and Google Sheets all treat these as the start of a formula;
# tab and carriage return are in OWASP's list because some importers strip them.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

SEPARATORS = {"comma": ",", ",": ",", "semicolon": ";", ";": ";", "tab": "\t", "\t": "\t"}
DECIMAL_MARKS = {"point": ".", ".": ".", "comma": ",", ",": ","}

END_REASONS = {
    EndReason.RUNNING: "still charging",
    EndReason.UNPLUGGED: "car unplugged",
    EndReason.INTERRUPTED: "interrupted (station error or switched off)",
    EndReason.DEAUTHORIZED: "stopped with the card",
}

SESSION_HEADER = (
    "station",
    "KEBA session id",
    "start",
    "end",
    "duration",
    "energy kWh",
    "meter at start kWh",
    "meter at end kWh",
    "card",
    "card label",
    "owner",
    "end reason",
    "cost",
    "currency",
)

TOTALS_HEADER = (
    "owner",
    "month",
    "sessions",
    "energy kWh",
    "cost",
    "currency",
    "unpriced sessions",
)


class FormatError(ValueError):
    """A bad `sep` or `decimal` parameter; the text says which values are allowed."""


@dataclass(frozen=True)
class CsvFormat:
    separator: str = ","
    decimal_mark: str = "."

    @classmethod
    def from_params(cls, params: QueryDict) -> "CsvFormat":
        """`sep` (comma, semicolon or tab) and `decimal` (point or comma)."""
        sep = params.get("sep", "comma").strip() or "comma"
        mark = params.get("decimal", "").strip()
        if sep.lower() not in SEPARATORS and sep not in SEPARATORS:
            raise FormatError(f"sep must be comma, semicolon or tab (got {sep!r})")
        separator = SEPARATORS.get(sep.lower(), SEPARATORS.get(sep, ","))
        if not mark:
            # A semicolon is what spreadsheets use where the comma is the decimal mark.
            mark = "comma" if separator == ";" else "point"
        if mark.lower() not in DECIMAL_MARKS:
            raise FormatError(f"decimal must be point or comma (got {mark!r})")
        return cls(separator, DECIMAL_MARKS[mark.lower()])

    def number(self, value: float | Decimal | None, places: int) -> str:
        if value is None:
            return ""
        text = f"{value:.{places}f}"
        return text.replace(".", self.decimal_mark) if self.decimal_mark != "." else text


def safe_text(value: object) -> str:
    """Text a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def local_time(moment: datetime | None) -> str:
    """Local wall-clock time with its UTC offset, so a DST change day reads unambiguously."""
    if moment is None:
        return ""
    return timezone.localtime(moment, timezone.get_default_timezone()).isoformat(
        sep=" ", timespec="seconds"
    )


def duration(delta: timedelta | None) -> str:
    if delta is None:
        return ""
    seconds = max(0, int(delta.total_seconds()))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def owner_name(user: Any) -> str:
    if user is None:
        return ""
    return str(user.get_full_name() or user.get_username())


def _full_name(first: str | None, last: str | None, username: str | None) -> str:
    # What User.get_full_name() gives, from columns: no model instance per row.
    return f"{first or ''} {last or ''}".strip() or (username or "")


def end_reason(ended: datetime | None, reason: int | None, incomplete: str) -> str:
    if ended is None:
        return END_REASONS[EndReason.RUNNING]
    if reason is None:
        return "not seen (kebaweb did not watch the end)" if incomplete else ""
    try:
        return END_REASONS[EndReason(reason)]
    except ValueError:
        return f"reason {reason}"


# Plain columns, not model instances: building four models per row would be
# most of the export's time with 100,000 sessions.
SESSION_COLUMNS = (
    "station__name",
    "keba_session_id",
    "started_at",
    "ended_at",
    "energy_kwh",
    "start_counter_kwh",
    "tag__tag",
    "tag__label",
    "owner__first_name",
    "owner__last_name",
    "owner__username",
    "end_reason",
    "incomplete_reason",
    "cost",
    "currency",
)


def session_row(session: dict[str, Any], fmt: CsvFormat) -> list[str]:
    started, ended = session["started_at"], session["ended_at"]
    start_kwh, energy = session["start_counter_kwh"], session["energy_kwh"]
    owner = _full_name(
        session["owner__first_name"], session["owner__last_name"], session["owner__username"]
    )
    return [
        safe_text(session["station__name"]),
        "" if session["keba_session_id"] is None else str(session["keba_session_id"]),
        local_time(started),
        local_time(ended),
        duration(ended - started if ended and started else None),
        fmt.number(energy, 3),
        fmt.number(start_kwh, 3),
        fmt.number(None if start_kwh is None else start_kwh + energy, 3),
        session["tag__tag"] or "",
        safe_text(session["tag__label"]),
        safe_text(owner),
        end_reason(ended, session["end_reason"], session["incomplete_reason"]),
        fmt.number(session["cost"], 2),
        session["currency"],
    ]


class _Line:
    """A file-like object for csv.writer that hands back what was written."""

    def write(self, text: str) -> str:
        return text


def _lines(header: Iterable[str], rows: Iterable[list[str]], fmt: CsvFormat) -> Iterator[str]:
    writer = csv.writer(_Line(), delimiter=fmt.separator, lineterminator="\r\n")
    yield BOM + writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)


def export_sessions(sessions: QuerySet[Session], fmt: CsvFormat) -> Iterator[str]:
    """The CSV lines of these sessions, oldest first, read from the database in chunks."""
    rows = sessions.order_by("started_at", "pk").values(*SESSION_COLUMNS).iterator(chunk_size=2000)
    return _lines(SESSION_HEADER, (session_row(session, fmt) for session in rows), fmt)


def monthly_totals(sessions: QuerySet[Session]) -> QuerySet[Session, dict[str, Any]]:
    """Sessions, energy and cost per owner, local calendar month and currency."""
    zero = Decimal(0)
    return (
        sessions.order_by()
        .annotate(month=local_month(sessions))
        .values("owner", "month", "currency")
        .annotate(
            sessions=Count("pk"),
            energy=Coalesce(Sum("energy_kwh"), 0.0, output_field=FloatField()),
            total_cost=Coalesce(
                Sum("cost"), zero, output_field=DecimalField(max_digits=14, decimal_places=2)
            ),
            unpriced=Count("pk") - Count("cost"),
        )
        .order_by("owner", "month", "currency")
    )


def local_month(sessions: QuerySet[Session]) -> Case:
    """The first day of the local calendar month each session started in.

    A CASE over the months the sessions span, which the database compares
    natively: on SQLite, TruncMonth with a time zone calls Python for every row
    (0.5 s for 100,000 sessions)."""
    # Two look-ups on the index: MIN and MAX in one query scan the table.
    starts = sessions.order_by("started_at").values_list("started_at", flat=True)
    first, last = starts.first(), starts.last()
    months: list[When] = []
    if first is not None and last is not None:
        month = timezone.localtime(first).date().replace(day=1)
        while local_midnight(month) <= last:
            following = (month + timedelta(days=31)).replace(day=1)
            months.append(When(started_at__lt=local_midnight(following), then=Value(month)))
            month = following
    return Case(*months, default=None, output_field=DateField())


def export_totals(sessions: QuerySet[Session], fmt: CsvFormat) -> Iterator[str]:
    groups = list(monthly_totals(sessions))
    owner_ids = {group["owner"] for group in groups if group["owner"] is not None}
    owners = get_user_model().objects.in_bulk(owner_ids)
    rows = (
        [
            safe_text(owner_name(owners.get(group["owner"])) or "(no owner)"),
            f"{group['month']:%Y-%m}" if group["month"] else "",
            str(group["sessions"]),
            fmt.number(group["energy"], 3),
            fmt.number(group["total_cost"], 2) if group["currency"] else "",
            group["currency"],
            str(group["unpriced"]),
        ]
        for group in groups
    )
    return _lines(TOTALS_HEADER, rows, fmt)
