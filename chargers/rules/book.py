"""Rules, overrides and fallbacks read from the database into the pure specs of desired.py.

The gateway loads one `RuleBook` and keeps it until `version()` changes, so that a
poll costs no query for rules; pages load the book of one station.
"""

import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, tzinfo

from django.conf import settings
from django.db.models import Count, Max, OuterRef, Q, Subquery, Sum
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


@dataclass(frozen=True)
class Running:
    """What a station is doing now, for its caps: the car, its session, the energy so far."""

    station_id: int
    car_connected: bool
    session_id: int | None
    session_kwh: float


def _totals(key: str, ids: Iterable[int], start: datetime) -> dict[int, float]:
    """Energy of the sessions started since `start`, per station or per card owner."""
    found = (
        Session.objects.filter(**{f"{key}__in": list(ids)}, started_at__gte=start)
        .values(key)
        .annotate(kwh=Sum("energy_kwh"))
    )
    return {row[key]: float(row["kwh"] or 0.0) for row in found}


def _began_since(session: Session | None, start: datetime) -> bool:
    return session is not None and session.started_at is not None and session.started_at >= start


def _first_readings(station_ids: list[int], start: datetime) -> dict[int, float | None]:
    """Each station's first session energy read at or after `start`, in one query."""
    if not station_ids:
        return {}
    first = Reading.objects.filter(
        station_id=OuterRef("pk"), at__gte=start, session_energy_kwh__isnull=False
    ).order_by("at")
    found = Station.objects.filter(pk__in=station_ids).annotate(
        first=Subquery(first.values("session_energy_kwh")[:1])
    )
    return dict(found.values_list("pk", "first"))


def _running_share(
    session: Session | None, live_kwh: float, start: datetime, first: float | None
) -> float:
    """The running session's energy since `start`: all of it if it began later, else
    what it gained since the first reading after `start`."""
    if session is None:
        return 0.0
    if session.started_at is None or session.started_at >= start:
        return live_kwh
    return max(0.0, live_kwh - (first if first is not None else live_kwh))


def usages(now: Sequence[Running], moment: datetime, periods: bool) -> dict[int, Usage]:
    """What each station and its running session's card owner used, for the caps.

    A fixed number of queries however many stations (the dashboard explains every
    card); without `periods` (no daily or weekly cap applies) one query at most."""
    session_ids = [r.session_id for r in now if r.session_id is not None]
    fields = ("pk", "started_at", "owner_id", "energy_kwh")
    sessions = Session.objects.only(*fields).in_bulk(session_ids) if session_ids else {}
    running = {r.station_id: sessions.get(r.session_id) for r in now if r.session_id is not None}
    found = {
        r.station_id: Usage(
            measured_at=moment,
            car_connected=r.car_connected,
            session_id=r.session_id,
            owner_id=(session.owner_id if (session := running.get(r.station_id)) else None),
            session_kwh=r.session_kwh,
        )
        for r in now
    }
    if not periods:
        return found
    here = zone()
    owner_ids = {u.owner_id for u in found.values() if u.owner_id is not None}
    totals: dict[int, dict[str, float]] = defaultdict(dict)
    for name, start in (("day", day_start(moment, here)), ("week", week_start(moment, here))):
        by_station = _totals("station_id", found, start)
        by_owner = _totals("owner_id", owner_ids, start) if owner_ids else {}
        earlier = [pk for pk, s in running.items() if s is not None and not _began_since(s, start)]
        first = _first_readings(earlier, start)
        for r in now:
            session = running.get(r.station_id)
            share = _running_share(session, r.session_kwh, start, first.get(r.station_id))
            # The running session counts with its live energy, not the energy stored for it.
            stored = session.energy_kwh if session and _began_since(session, start) else 0.0
            totals[r.station_id][name] = by_station.get(r.station_id, 0.0) - stored + share
            owner = found[r.station_id].owner_id
            if owner is not None:
                totals[r.station_id][f"owner_{name}"] = by_owner.get(owner, 0.0) - stored + share
    return {
        pk: replace(
            usage,
            day_kwh=totals[pk]["day"],
            week_kwh=totals[pk]["week"],
            owner_day_kwh=totals[pk].get("owner_day", 0.0),
            owner_week_kwh=totals[pk].get("owner_week", 0.0),
        )
        for pk, usage in found.items()
    }


def usage(
    station_id: int,
    moment: datetime,
    car_connected: bool,
    session_id: int | None,
    session_kwh: float,
    periods: bool,
) -> Usage:
    """What one station and its running session's card owner used (see `usages`)."""
    now = Running(station_id, car_connected, session_id, session_kwh)
    return usages([now], moment, periods)[station_id]
