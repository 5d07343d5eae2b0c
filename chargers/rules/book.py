"""Rules, overrides and fallbacks read from the database into the pure specs of desired.py.

The gateway loads one `RuleBook` and keeps it until `version()` changes, so that a
poll costs no query for rules; pages load the book of one station.
"""

import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from django.conf import settings
from django.db.models import Count, Max, Q, QuerySet, Sum
from django.utils import timezone

from chargers.models import Fallback, Override, Reading, Rule, Session, Station

from .desired import (
    ALL_WEEK,
    Kind,
    OverrideKind,
    OverrideSpec,
    RuleSpec,
    Usage,
    day_start,
    week_start,
)
from .desired import local_instant as _local_instant
from .reconcile import FallbackSpec

OVERRIDE_AFTERMATH = timedelta(days=1)


def zone() -> tzinfo:
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def local_instant(day: date, at: time) -> datetime:
    """A local wall time of the household as an instant (see desired.local_instant)."""
    return _local_instant(day, at, zone())


def rule_spec(rule: Rule) -> RuleSpec:
    return RuleSpec(
        id=rule.pk,
        name=rule.name,
        kind=Kind(rule.kind),
        priority=rule.priority,
        weekdays=frozenset(int(d) for d in rule.weekdays) if rule.weekdays else ALL_WEEK,
        starts_at=rule.starts_at,
        ends_at=rule.ends_at,
        current_a=rule.current_a,
        energy_kwh=float(rule.energy_kwh) if rule.energy_kwh is not None else None,
        card_owner_id=rule.card_owner_id,
    )


def override_spec(override: Override) -> OverrideSpec:
    by = override.created_by.get_username() if override.created_by else ""
    return OverrideSpec(
        id=override.pk,
        kind=OverrideKind(override.kind),
        created_at=override.created_at,
        current_a=override.current_a,
        until=override.until,
        session_id=override.session_id,
        by=by,
        ended_at=override.ended_at,
    )


@dataclass
class RuleBook:
    """Every rule that holds, indexed by station."""

    rules: dict[int, list[RuleSpec]] = field(default_factory=lambda: defaultdict(list))
    everywhere: list[RuleSpec] = field(default_factory=list)  # card-owner caps without stations
    overrides: dict[int, list[OverrideSpec]] = field(default_factory=lambda: defaultdict(list))
    fallbacks: dict[int, FallbackSpec] = field(default_factory=dict)

    def rules_for(self, station_id: int) -> list[RuleSpec]:
        return [*self.rules.get(station_id, ()), *self.everywhere]

    def overrides_for(self, station_id: int) -> list[OverrideSpec]:
        return list(self.overrides.get(station_id, ()))

    def concerns(self, station_id: int) -> bool:
        return bool(
            self.everywhere
            or self.rules.get(station_id)
            or self.overrides.get(station_id)
            or station_id in self.fallbacks
        )

    @property
    def all_rules(self) -> list[RuleSpec]:
        seen: dict[int, RuleSpec] = {r.id: r for rules in self.rules.values() for r in rules}
        return [*seen.values(), *self.everywhere]

    @property
    def needs_period_usage(self) -> bool:
        return any(r.kind in (Kind.DAILY_CAP, Kind.WEEKLY_CAP) for r in self.all_rules)


def _station_ids(rule: Rule, site_stations: dict[int, list[int]]) -> set[int]:
    ids = {s.pk for s in rule.stations.all()}
    if rule.site_id is not None:
        ids.update(site_stations.get(rule.site_id, ()))
    return ids


def load(station_ids: Iterable[int] | None = None, moment: datetime | None = None) -> RuleBook:
    """The rules, overrides and fallbacks in force at `moment` (the gateway's protocol
    clock; now by default), for all stations or some."""
    book = RuleBook()
    site_stations: dict[int, list[int]] = defaultdict(list)
    for pk, site_id in Station.objects.exclude(site=None).values_list("pk", "site_id"):
        site_stations[site_id].append(pk)
    wanted = set(station_ids) if station_ids is not None else None
    for rule in Rule.objects.filter(paused=False).prefetch_related("stations"):
        spec = rule_spec(rule)
        ids = _station_ids(rule, site_stations)
        if not ids and rule.card_owner_id is not None:
            book.everywhere.append(spec)
            continue
        for pk in ids:
            if wanted is None or pk in wanted:
                book.rules[pk].append(spec)
    # Overrides over for less than a day are kept: the state they took is handed back.
    since = (moment or timezone.now()) - OVERRIDE_AFTERMATH
    overrides = Override.objects.filter(Q(ended_at=None) | Q(ended_at__gt=since)).filter(
        Q(until=None) | Q(until__gt=since)
    )
    if wanted is not None:
        overrides = overrides.filter(station_id__in=wanted)
    for override in overrides.select_related("created_by"):
        book.overrides[override.station_id].append(override_spec(override))
    fallbacks = Fallback.objects.all()
    if wanted is not None:
        fallbacks = fallbacks.filter(station_id__in=wanted)
    for fallback in fallbacks:
        book.fallbacks[fallback.station_id] = (
            FallbackSpec(fallback.timeout_s, fallback.current_a)
            if fallback.enabled
            else FallbackSpec(0, 0)
        )
    return book


def version() -> tuple[object, ...]:
    """Changes whenever a rule, override or fallback is added, changed or deleted."""
    marks: list[object] = []
    for model in (Rule, Override, Fallback):
        stamp = "updated_at" if model is not Override else "created_at"
        found = model.objects.aggregate(n=Count("pk"), last=Max(stamp), top=Max("pk"))
        marks += [found["n"], found["last"], found["top"]]
    ended = Override.objects.aggregate(last=Max("ended_at"))["last"]
    return (*marks, ended)


def _since(sessions: "QuerySet[Session]", start: datetime, running_id: int | None) -> float:
    found = sessions.filter(started_at__gte=start)
    if running_id is not None:
        found = found.exclude(pk=running_id)
    return float(found.aggregate(kwh=Sum("energy_kwh"))["kwh"] or 0.0)


def _running_share(
    station_id: int, session: Session | None, live_kwh: float, start: datetime
) -> float:
    """The running session's energy since `start`: all of it if it began later, else
    what it gained since the first reading after `start`."""
    if session is None:
        return 0.0
    if session.started_at is None or session.started_at >= start:
        return live_kwh
    first = (
        Reading.objects.filter(
            station_id=station_id, at__gte=start, session_energy_kwh__isnull=False
        )
        .order_by("at")
        .values_list("session_energy_kwh", flat=True)
        .first()
    )
    return max(0.0, live_kwh - (first if first is not None else live_kwh))


def usage(
    station_id: int,
    moment: datetime,
    car_connected: bool,
    session_id: int | None,
    session_kwh: float,
    periods: bool,
) -> Usage:
    """What the station and its running session's card owner used, for the caps.

    Without `periods` (no daily or weekly cap applies) this costs one query at most."""
    session = (
        Session.objects.filter(pk=session_id).only("pk", "started_at", "owner_id").first()
        if session_id is not None
        else None
    )
    owner_id = session.owner_id if session else None
    base = Usage(
        measured_at=moment,
        car_connected=car_connected,
        session_id=session_id,
        owner_id=owner_id,
        session_kwh=session_kwh,
    )
    if not periods:
        return base
    here = zone()
    totals: dict[str, float] = {}
    for name, start in (("day", day_start(moment, here)), ("week", week_start(moment, here))):
        running = _running_share(station_id, session, session_kwh, start)
        station_sessions = Session.objects.filter(station_id=station_id)
        totals[name] = _since(station_sessions, start, session_id) + running
        if owner_id is not None:
            owner_sessions = Session.objects.filter(owner_id=owner_id)
            totals[f"owner_{name}"] = _since(owner_sessions, start, session_id) + running
    return Usage(
        measured_at=moment,
        car_connected=car_connected,
        session_id=session_id,
        owner_id=owner_id,
        session_kwh=session_kwh,
        day_kwh=totals["day"],
        week_kwh=totals["week"],
        owner_day_kwh=totals.get("owner_day", 0.0),
        owner_week_kwh=totals.get("owner_week", 0.0),
    )
