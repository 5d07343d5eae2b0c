"""Admin lists over tables that grow for years (readings, events).

A year of 200 stations is 21 million readings: counting them takes seconds and
the admin's date drill-down (a DISTINCT over a truncated date) reads every row.
These lists count only up to a cap and filter by date ranges, which the index
on the time column answers at once.
"""

from functools import cached_property
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Field
from django.http import HttpRequest

COUNT_CAP = 10_000  # a hundred pages of a hundred rows; narrow with the filters for more


class CappedPaginator(Paginator):
    """Counts at most COUNT_CAP + 1 rows: enough to page, and cheap whatever the table size."""

    @cached_property
    def count(self) -> int:
        # The admin pages querysets; count() on a slice counts in a LIMITed subquery.
        rows: Any = self.object_list
        counted: int = rows[: COUNT_CAP + 1].count()
        return counted

    @property
    def is_capped(self) -> bool:
        return self.count > COUNT_CAP

    @property
    def cap(self) -> int:
        return COUNT_CAP


class GrowingList:
    """For a ModelAdmin of a table that grows by the day: paired with a date-range filter
    (admin.DateFieldListFilter) in place of date_hierarchy."""

    paginator: Any = CappedPaginator
    list_per_page = 50  # rendering is most of such a page's time: 100 rows take 40 ms
    # The count of the whole table beside a filtered one ("5 results (21,000,000 total)").
    show_full_result_count = False
    # Selecting "all" rows for an action would act on far more than any page shows.
    actions: Any = None


class StationFilter(admin.RelatedFieldListFilter):
    """The stations to filter by, read as three columns: a whole station row carries its
    capabilities and live status as JSON, which costs 30 ms to decode for 1,000 stations."""

    def field_choices(
        self, field: "Field[Any, Any]", request: HttpRequest, model_admin: Any
    ) -> list[Any]:  # (pk, label) pairs
        from chargers.models import Station

        rows = Station.objects.order_by("name").values_list("pk", "name", "address")
        return [(str(pk), f"{name} ({address or 'address unknown'})") for pk, name, address in rows]
