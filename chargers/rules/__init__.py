"""Rules that hold: time-window current limits, charging windows, energy caps,
manual overrides and the safe fallback. `desired` and `reconcile` are pure; the
gateway enforces (chargers/gateway/enforcement.py); `explain_now` is for pages."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chargers.models import Station


def explain_now(station: "Station") -> str:
    """One sentence for the dashboard: which rule limits the station now, and until when."""
    from .explain import explain_now as explain

    return explain(station)
