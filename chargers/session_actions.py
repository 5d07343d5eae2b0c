"""The admin's actions on sessions: the same CSV files as /sessions/export.csv, and repricing."""

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse

from chargers import exports
from chargers.export_views import csv_response
from chargers.models import Session

EXCEL_DE = exports.CsvFormat(separator=";", decimal_mark=",")


@admin.action(description="Export the selected sessions as CSV")
def export_csv(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Session]
) -> StreamingHttpResponse:
    return csv_response(exports.export_sessions(queryset, exports.CsvFormat()), "sessions", request)


@admin.action(description="Export the selected sessions as CSV for Excel (; and decimal comma)")
def export_csv_excel(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Session]
) -> StreamingHttpResponse:
    return csv_response(exports.export_sessions(queryset, EXCEL_DE), "sessions", request)


@admin.action(description="Export totals per owner per month of the selected sessions")
def export_totals(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Session]
) -> StreamingHttpResponse:
    return csv_response(
        exports.export_totals(queryset, exports.CsvFormat()), "totals-per-owner-per-month", request
    )


@admin.action(description="Recalculate the cost of the selected sessions with today's tariffs")
def recalculate_costs(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Session]
) -> None:
    priced, reasons = 0, set()
    with transaction.atomic():
        # Only the sessions' rows: the admin's list joins the station, card and
        # owner, and PostgreSQL cannot lock the nullable side of those outer joins.
        for session in queryset.select_for_update(of=("self",)).exclude(ended_at=None):
            reason = session.price()
            session.save(update_fields=["cost", "currency"])
            if reason:
                reasons.add(reason)
            else:
                priced += 1
    messages.success(request, f"{priced} session(s) priced again.")
    for reason in sorted(reasons):
        messages.warning(request, f"Some sessions have no cost: {reason}.")
