"""What pages say about a station's rules: the limit in force now, and the coming week."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.formats import date_format

from chargers.models import Session, Station

from . import book as rule_book
from .desired import FULL_SPEED_A, Cause, DesiredState, Span, Usage, desired_state, timeline

PREVIEW_DAYS = 7


@dataclass(frozen=True)
class StationRules:
    """A station's book and what it uses now, read in a few queries."""

    station: Station
    book: rule_book.RuleBook
    usage: Usage

    def desired(self, moment: datetime) -> DesiredState:
        pk = self.station.pk
        return desired_state(
            moment,
            self.book.rules_for(pk),
            self.book.overrides_for(pk),
            self.usage,
            rule_book.zone(),
        )

    def timeline(self, start: datetime, days: int = PREVIEW_DAYS) -> list[Span]:
        pk = self.station.pk
        return timeline(
            start,
            start + timedelta(days=days),
            self.book.rules_for(pk),
            self.book.overrides_for(pk),
            self.usage,
            rule_book.zone(),
        )


def for_station(station: Station, moment: datetime | None = None) -> StationRules:
    moment = moment or timezone.now()
    running = Session.objects.filter(station=station, ended_at=None).order_by("-started_at").first()
    car = station.plug is not None and station.plug >= 5
    usage = rule_book.usage(
        station.pk,
        moment,
        car,
        running.pk if running and car else None,
        station.session_energy_kwh or 0.0,
        periods=True,
    )
    return StationRules(station, rule_book.load([station.pk]), usage)


def _when(moment: datetime) -> str:
    local = timezone.localtime(moment)
    if local.date() == timezone.localdate():
        return date_format(local, "H:i")
    return date_format(local, "D H:i")


def describe_cause(cause: Cause | None) -> str:
    if cause is None:
        return ""
    if cause.until is not None:
        return f"{cause.text}, until {_when(cause.until)}"
    if cause.until_unplugged:
        return f"{cause.text}, until the car is unplugged"
    return cause.text


def describe_state(state: DesiredState) -> str:
    if state.enabled is False:
        return f"Charging off: {describe_cause(state.enabled_cause)}."
    parts = []
    if state.current_a is not None and state.current_a < FULL_SPEED_A:
        parts.append(f"At most {state.current_a} A: {describe_cause(state.current_cause)}.")
    if state.session_cap_kwh is not None:
        parts.append(
            f"Stops at {state.session_cap_kwh:g} kWh this session: "
            f"{describe_cause(state.cap_cause)}."
        )
    if state.enabled is True and state.enabled_cause and state.enabled_cause.override_id:
        parts.insert(0, f"{describe_cause(state.enabled_cause)}.")
    return " ".join(parts) or "No rule limits this station now."


def explain_now(station: Station) -> str:
    return describe_state(for_station(station).desired(timezone.now()))


def car_connected(station: Station) -> bool:
    return station.plug is not None and station.plug >= 5


def desired_now(
    stations: Sequence[Station],
    running: dict[int, Session],
    moment: datetime,
    book: rule_book.RuleBook,
) -> dict[int, DesiredState]:
    """Every station's desired state from one book, in a fixed number of queries."""
    now = [
        rule_book.Running(
            s.pk,
            car_connected(s),
            running[s.pk].pk if s.pk in running and car_connected(s) else None,
            s.session_energy_kwh or 0.0,
        )
        for s in stations
        if book.concerns(s.pk)
    ]
    usages = rule_book.usages(now, moment, book.needs_period_usage)
    here = rule_book.zone()
    return {
        pk: desired_state(moment, book.rules_for(pk), book.overrides_for(pk), usage, here)
        for pk, usage in usages.items()
    }


def card_fields(state: DesiredState) -> dict[str, Any]:
    """What a dashboard card says of the rules, for the first render and the live frames
    (recorder.status_payload). An override is kept apart from the rules: kiosk screens
    show nothing of it (consumers.REDACTED_FIELDS), and it names who made it."""
    causes = (state.enabled_cause, state.current_cause)
    override = next((c for c in causes if c is not None and c.override_id), None)
    if override is not None:
        said = describe_cause(override)
        return {
            "rule_text": "",
            "rule_current_a": None,
            "rule_current_why": "",
            "rule_off_why": "",
            "override_id": override.override_id,
            "override_text": f"{said[:1].upper()}{said[1:]}.",
        }
    ruled = state.current_cause is not None and state.current_cause.rule_id is not None
    off = state.enabled is False and state.enabled_cause is not None
    return {
        "rule_text": describe_state(state) if state.is_managed else "",
        "rule_current_a": state.current_a if ruled else None,
        "rule_current_why": describe_cause(state.current_cause) if ruled else "",
        "rule_off_why": describe_cause(state.enabled_cause) if off else "",
        "override_id": None,
        "override_text": "",
    }
