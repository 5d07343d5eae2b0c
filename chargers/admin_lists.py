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
from django.db.models import Field, Q, QuerySet
from django.http import HttpRequest

COUNT_CAP = 10_000  # a hundred pages of a hundred rows; narrow with the filters for more


class CappedPaginator(Paginator):
    """Counts at most COUNT_CAP + 1 rows: enough to page, and cheap whatever the table size."""

    @cached_property
    def count(self) -> int:
        # The admin pages querysets; count() on a slice counts in a LIMITed subquery.
        # Unordered: which rows are counted does not change how many, and an order
        # by time made SQLite walk the time index past every reading of other
        # stations (6 s for a search that matched no station).
        rows: Any = self.object_list
        counted: int = rows.order_by()[: COUNT_CAP + 1].count()
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


FEW_STATIONS = 30  # more links would be a long scroll, and 1,000 took 40 ms to render


class StationFilter(admin.RelatedFieldListFilter):
    """The stations to filter by, while they are few; beyond that only the chosen one,
    and a hint to find a station with the search box or to narrow by site.

    Read as three columns: a whole station row carries its capabilities and live
    status as JSON, which costs 30 ms to decode for 1,000 stations."""

    template = "admin/chargers/station_filter.html"
    too_many = False

    def field_choices(
        self, field: "Field[Any, Any]", request: HttpRequest, model_admin: Any
    ) -> list[Any]:  # (pk, label) pairs
        from chargers.models import Station

        stations = Station.objects.order_by("name").values_list("pk", "name", "address")
        rows = list(stations[: FEW_STATIONS + 1])
        self.too_many = len(rows) > FEW_STATIONS
        if self.too_many:
            chosen = [pk for pk in self.lookup_val or () if pk.isdigit()]
            rows = list(stations.filter(pk__in=chosen))
        return [(str(pk), f"{name} ({address or 'address unknown'})") for pk, name, address in rows]

    def has_output(self) -> bool:
        return self.too_many or super().has_output()


class ByStation:
    """For a ModelAdmin of rows that belong to a station, with "station__name" in its
    search_fields: the search box finds a station by (part of) its name, as a car
    park's sidebar does not list 1,000 stations (StationFilter). A row matches when
    its station's name holds every word, or, as Django searches, its other fields do."""

    def get_search_results(
        self, request: HttpRequest, queryset: "QuerySet[Any]", search_term: str
    ) -> "tuple[QuerySet[Any], bool]":
        from chargers.models import Station

        words = search_term.split()
        if not words:
            return queryset, False
        # One `station_id IN (…)`, which the (station, time) index answers: the join
        # Django writes for "station__name", or one IN per word, made SQLite read all
        # 21 million readings (4-6 s).
        named = Station.objects.all()
        for word in words:
            named = named.filter(name__icontains=word)
        matches = Q(station__in=named.values("pk"))
        fields: Any = self.get_search_fields(request)  # type: ignore[attr-defined]
        others = [field for field in fields if field != "station__name"]
        if others:
            text = Q()
            for word in words:
                either = Q()
                for field in others:
                    either |= Q(**{f"{field}__icontains": word})
                text &= either
            matches |= text
        return queryset.filter(matches), False
