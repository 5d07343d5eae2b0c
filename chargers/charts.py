"""The station page's charts: readings downsampled by the database, drawn as small SVGs.

The database groups readings into slots (5 minutes for the day, calendar days
for the month), so a year of readings costs one indexed range scan and the
page handles a few hundred points, never every row.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Avg, Max, Min, Value
from django.db.models.functions import ExtractMinute, Floor, TruncDate, TruncHour
from django.utils import timezone

from chargers.models import Reading

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


def last_day(station_id: int, now: datetime | None = None) -> tuple[Chart, Chart]:
    """Power (kW) and per-phase current (A) of the last 24 hours, in 5-minute slots."""
    end = now or timezone.now()
    start = end - timedelta(hours=24)
    rows = (
        Reading.objects.filter(station_id=station_id, at__gte=start, at__lte=end)
        .annotate(hour=TruncHour("at"), slot=Floor(ExtractMinute("at") / Value(SLOT_MINUTES)))
        .values("hour", "slot")
        .annotate(
            power=Avg("power_w"),
            i1=Avg("current_1_a"),
            i2=Avg("current_2_a"),
            i3=Avg("current_3_a"),
        )
        .order_by("hour", "slot")
    )
    power: list[tuple[datetime, float]] = []
    phases: dict[str, list[tuple[datetime, float]]] = {"i1": [], "i2": [], "i3": []}
    for row in rows:
        at = row["hour"] + timedelta(minutes=int(row["slot"]) * SLOT_MINUTES)
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
    """Energy charged on each local calendar day: the meter's rise over the day."""
    end = now or timezone.now()
    start = timezone.localtime(end).replace(hour=0, minute=0, second=0, microsecond=0)
    start -= timedelta(days=days - 1)
    rows = (
        Reading.objects.filter(station_id=station_id, at__gte=start, at__lte=end)
        .exclude(total_energy_kwh=None)
        .annotate(day=TruncDate("at", tzinfo=timezone.get_current_timezone()))
        .values("day")
        .annotate(low=Min("total_energy_kwh"), high=Max("total_energy_kwh"))
        .order_by("day")
    )
    by_day = {row["day"]: max(0.0, row["high"] - row["low"]) for row in rows}
    first = start.date()
    dates = [first + timedelta(days=n) for n in range(days)]
    energies = [(day, by_day.get(day, 0.0)) for day in dates]
    biggest = max((kwh for _, kwh in energies), default=0.0) or 1.0
    return [Day(day, kwh, kwh / biggest) for day, kwh in energies]


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
