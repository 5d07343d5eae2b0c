"""The station page's charts: readings downsampled by the database, drawn as small SVGs.

The database groups the day's readings into 5-minute slots and picks each
day's first and last meter reading, so a year of readings costs one indexed
range scan and a few dozen index look-ups, and the page handles a few hundred
points, never every row.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Avg, F, Func, IntegerField
from django.utils import timezone

from chargers.models import Reading
from chargers.session_filters import local_midnight

SLOT_MINUTES = 5
WIDTH, HEIGHT, PAD = 600, 160, 4


@dataclass(frozen=True)
class Series:
    label: str
    css_class: str
    points: list[tuple[datetime, float]]


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    highest: float
    lines: list[tuple[Series, str]]  # each series with its SVG polyline points
    start: datetime
    end: datetime

    @property
    def is_empty(self) -> bool:
        return not any(series.points for series, _ in self.lines)


class EpochSlot(Func):
    """The number of the `seconds`-long slot since 1970 a datetime falls in, computed
    natively by the database (Django's Trunc* on SQLite call Python for every row)."""

    output_field = IntegerField()

    def __init__(self, expression: str, seconds: int) -> None:
        super().__init__(F(expression))
        self.seconds = seconds

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # '%%%%s' is '%%s' after the template is filled in, which the SQLite backend
        # sends as '%s' (a lone %s there is a placeholder: the slot was always 0).
        template = f"(CAST(strftime('%%%%s', %(expressions)s) AS INTEGER) / {self.seconds})"
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = f"FLOOR(EXTRACT(EPOCH FROM %(expressions)s) / {self.seconds})"
        return self.as_sql(compiler, connection, template=template, **extra)


def last_day(station_id: int, now: datetime | None = None) -> tuple[Chart, Chart]:
    """Power (kW) and per-phase current (A) of the last 24 hours, in 5-minute slots."""
    end = now or timezone.now()
    start = end - timedelta(hours=24)
    slot_s = SLOT_MINUTES * 60
    rows = (
        Reading.objects.filter(station_id=station_id, at__gte=start, at__lte=end)
        .annotate(slot=EpochSlot("at", slot_s))
        .values("slot")
        .annotate(
            power=Avg("power_w"),
            i1=Avg("current_1_a"),
            i2=Avg("current_2_a"),
            i3=Avg("current_3_a"),
        )
        .order_by("slot")
    )
    power: list[tuple[datetime, float]] = []
    phases: dict[str, list[tuple[datetime, float]]] = {"i1": [], "i2": [], "i3": []}
    for row in rows:
        at = datetime.fromtimestamp(int(row["slot"]) * slot_s, tz=UTC)
        if row["power"] is not None:
            power.append((at, row["power"] / 1000))
        for key, points in phases.items():
            if row[key] is not None:
                points.append((at, row[key]))
    power_chart = _chart("Power", "kW", [Series("power", "line-power", power)], start, end)
    current_chart = _chart(
        "Current per phase",
        "A",
        [Series(f"phase {n}", f"line-phase{n}", phases[f"i{n}"]) for n in (1, 2, 3)],
        start,
        end,
    )
    return power_chart, current_chart


@dataclass(frozen=True)
class Day:
    day: date
    energy_kwh: float
    share: float  # of the month's biggest day, for the bar's length


def energy_per_day(station_id: int, days: int = 30, now: datetime | None = None) -> list[Day]:
    """Energy charged on each local calendar day: the meter's rise over the day.

    The meter only rises, so a day needs two readings, its first and its last:
    one query of indexed look-ups, however many readings a day holds."""
    end = now or timezone.now()
    today = timezone.localdate(end)
    dates = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    # Local midnights: exact across daylight saving changes.
    midnights = [local_midnight(day) for day in [*dates, today + timedelta(days=1)]]
    adapt = connection.ops.adapt_datetimefield_value
    columns: list[str] = []
    params: list[Any] = []
    for n in range(days):
        for order in ("ASC", "DESC"):
            columns.append(METER_READING.format(reading=Reading._meta.db_table, order=order))
            params += [station_id, adapt(midnights[n]), adapt(midnights[n + 1]), adapt(end)]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)}", params)
        found = cursor.fetchone()
    firsts, lasts = found[0::2], found[1::2]
    energies = []
    for n, day in enumerate(dates):
        first, last = firsts[n], lasts[n]
        # Up to the next day's first reading, so energy across midnight is not lost.
        following = firsts[n + 1] if n + 1 < days else None
        top = following if following is not None else last
        rise = top - first if first is not None and top is not None else 0.0
        energies.append((day, max(0.0, rise)))
    biggest = max((kwh for _, kwh in energies), default=0.0) or 1.0
    return [Day(day, kwh, kwh / biggest) for day, kwh in energies]


# The first (ASC) or last (DESC) meter reading of a station in [from, to) up to
# now. Written as SQL: compiling 60 of them through the ORM took half the page's
# 50 ms (a station with a year of readings, bench/pages.py).
METER_READING = (
    "(SELECT total_energy_kwh FROM {reading} WHERE station_id = %s"
    " AND total_energy_kwh IS NOT NULL AND at >= %s AND at < %s AND at <= %s"
    " ORDER BY at {order} LIMIT 1)"
)


def _chart(title: str, unit: str, series: list[Series], start: datetime, end: datetime) -> Chart:
    highest = max((v for s in series for _, v in s.points), default=0.0)
    top = _nice_ceiling(highest)
    span = (end - start).total_seconds()

    def place(at: datetime, value: float) -> str:
        x = PAD + (WIDTH - 2 * PAD) * (at - start).total_seconds() / span
        y = HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / top
        return f"{x:.1f},{y:.1f}"

    lines = [(s, " ".join(place(at, value) for at, value in s.points)) for s in series]
    return Chart(title, unit, top, lines, start, end)


def _nice_ceiling(value: float) -> float:
    """A round top for the axis: 1, 2, 5, 10, 20, 50 …"""
    step = 1.0
    while step < value:
        for factor in (2.0, 2.5, 2.0):
            step *= factor
            if step >= value:
                break
    return step
