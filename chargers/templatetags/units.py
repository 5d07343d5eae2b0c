"""Numbers as the dashboard writes them; static/js/live.js formats live frames the same way."""

from datetime import timedelta
from typing import Any

from django import template

register = template.Library()

DASH = "\u2013"  # an en dash: "no value"


def _number(value: Any, digits: int, unit: str, scale: float = 1.0) -> str:
    if value is None or value == "":
        return DASH
    return f"{float(value) / scale:.{digits}f} {unit}"


@register.filter
def kw(watts: Any) -> str:
    return _number(watts, 1, "kW", 1000)


@register.filter
def kwh(value: Any, digits: int = 2) -> str:
    return _number(value, digits, "kWh")


@register.filter
def amps(value: Any) -> str:
    return _number(value, 1, "A")


@register.filter
def span(duration: timedelta | None) -> str:
    """A duration as "2 h 05 min"."""
    if duration is None:
        return DASH
    minutes = max(0, int(duration.total_seconds() // 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
