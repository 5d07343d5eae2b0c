"""The coming week of one station as rows of a timeline, one per local day.

Built from `timeline()`, the same function the gateway enforces, so what the
page draws is what the station will be told."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.utils import timezone

from . import book
from .desired import FULL_SPEED_A, DesiredState, Span
from .explain import describe_cause

HOURS_PER_DAY = 24
# The SVG's units: a label column, then the day's 24 hours; one row per day.
LABEL_W, DAY_W, ROW_H = 110, 880, 10


@dataclass(frozen=True)
class Bar:
    start: datetime
    end: datetime
    x: float  # share of the day, 0..1, by local wall time
    width: float
    label: str
    tone: str  # "off", "limited", "full", "free"
    title: str

    @property
    def left(self) -> float:
        return round(LABEL_W + self.x * DAY_W, 1)

    @property
    def px(self) -> float:
        return round(self.width * DAY_W, 1)


@dataclass(frozen=True)
class Day:
    day: date
    bars: list[Bar]
    index: int

    @property
    def top(self) -> int:
        return self.index * ROW_H + 1

    @property
    def baseline(self) -> int:
        return self.index * ROW_H + 8


def describe_limit(state: DesiredState) -> tuple[str, str, str]:
    """Short label, tone and the sentence saying why."""
    if state.enabled is False:
        return "off", "off", describe_cause(state.enabled_cause)
    if state.current_a is not None and state.current_a < FULL_SPEED_A:
        return f"{state.current_a} A", "limited", describe_cause(state.current_cause)
    if state.current_a is not None or state.enabled is not None:
        cause = state.enabled_cause or state.current_cause
        return "full", "full", describe_cause(cause)
    return "", "free", "no rule"


def _share(moment: datetime) -> float:
    local = timezone.localtime(moment).time()
    return (local.hour * 3600 + local.minute * 60 + local.second) / (HOURS_PER_DAY * 3600)


def days(spans: list[Span], start: datetime, count: int) -> list[Day]:
    first = timezone.localtime(start).date()
    rows = []
    for n in range(count):
        day = first + timedelta(days=n)
        opens = max(book.local_instant(day, time(0)), start)
        closes = book.local_instant(day + timedelta(days=1), time(0))
        bars = []
        for span in spans:
            begin, end = max(span.start, opens), min(span.end, closes)
            if begin >= end:
                continue
            label, tone, why = describe_limit(span.state)
            x = _share(begin)
            right = 1.0 if end == closes else _share(end)
            bars.append(Bar(begin, end, x, max(right - x, 0.0), label, tone, why))
        rows.append(Day(day, bars, n))
    return rows


def height(count: int) -> int:
    return count * ROW_H + 2
