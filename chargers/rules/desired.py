"""The desired state of one station at one moment, from rules, overrides and what was used.

Pure: no database, no clock. The gateway, the preview timeline and the dashboard's
"limit in force" all call `desired_state`, so they can never disagree. Windows are
laid out per local calendar day and compared as instants, so on the days daylight
saving time starts or ends each window happens exactly once.
"""

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import Enum

# `currtime 63000` is KEBA's highest value: the station then offers what its hardware allows.
FULL_SPEED_A = 63
ENERGY_EPSILON_KWH = 0.0001  # the station counts in 0.1 Wh
ALL_WEEK = frozenset(range(7))


class Kind(Enum):
    CURRENT = "current"
    WINDOW = "window"
    SESSION_CAP = "session cap"
    DAILY_CAP = "daily cap"
    WEEKLY_CAP = "weekly cap"


class OverrideKind(Enum):
    FULL_SPEED = "full speed"
    PAUSE = "pause"
    CURRENT = "current"


@dataclass(frozen=True)
class RuleSpec:
    id: int
    name: str
    kind: Kind
    priority: int = 0
    weekdays: frozenset[int] = ALL_WEEK  # 0 = Monday
    starts_at: time | None = None  # None with ends_at None: all day
    ends_at: time | None = None
    current_a: int | None = None
    energy_kwh: float | None = None
    card_owner_id: int | None = None  # a cap counted across stations for this person

    @property
    def label(self) -> str:
        return f"rule “{self.name}”"

    @property
    def is_cap(self) -> bool:
        return self.kind in (Kind.SESSION_CAP, Kind.DAILY_CAP, Kind.WEEKLY_CAP)

    @property
    def hours(self) -> str:
        if self.starts_at is None or self.ends_at is None:
            return "all day"
        return f"{self.starts_at:%H:%M}-{self.ends_at:%H:%M}"

    def occurrences(
        self, start: datetime, end: datetime, zone: tzinfo
    ) -> Iterator[tuple[datetime, datetime]]:
        """The rule's windows, as UTC instants, that overlap [start, end).

        A window belongs to the local day it starts on; one that ends at or before
        its start time ends the next day. A start inside the spring-forward gap is
        taken as the instant the clocks jump to, an ambiguous one (fall back) as its
        first occurrence: neither skipped nor applied twice."""
        first = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date()
        day = first
        while day <= last:
            if day.weekday() in self.weekdays:
                opens, closes = self._window_on(day, zone)
                if opens < end and closes > start:
                    yield opens, closes
            day += timedelta(days=1)

    def _window_on(self, day: date, zone: tzinfo) -> tuple[datetime, datetime]:
        if self.starts_at is None or self.ends_at is None:
            return local_instant(day, time(0), zone), local_instant(
                day + timedelta(days=1), time(0), zone
            )
        closing_day = day + timedelta(days=1) if self.ends_at <= self.starts_at else day
        return local_instant(day, self.starts_at, zone), local_instant(
            closing_day, self.ends_at, zone
        )

    def window_at(self, moment: datetime, zone: tzinfo) -> tuple[datetime, datetime] | None:
        for opens, closes in self.occurrences(moment, moment + timedelta(microseconds=1), zone):
            if opens <= moment < closes:
                return opens, closes
        return None


@dataclass(frozen=True)
class OverrideSpec:
    id: int
    kind: OverrideKind
    created_at: datetime
    current_a: int | None = None
    until: datetime | None = None  # None: until the car leaves
    session_id: int | None = None  # the session it was made for
    by: str = ""
    ended_at: datetime | None = None  # ended by a person before its time

    def holds(self, moment: datetime, usage: "Usage") -> bool:
        if moment < self.created_at or (self.until is not None and moment >= self.until):
            return False
        if self.ended_at is not None and moment >= self.ended_at:
            return False
        if self.session_id is not None:
            return usage.car_connected and usage.session_id == self.session_id
        return True

    @property
    def label(self) -> str:
        what = {
            OverrideKind.FULL_SPEED: "full speed",
            OverrideKind.PAUSE: "paused",
            OverrideKind.CURRENT: f"{self.current_a} A",
        }[self.kind]
        return f"override “{what}”" + (f" by {self.by}" if self.by else "")


@dataclass(frozen=True)
class Usage:
    """What the station (and its running session's card owner) used, measured at a moment.

    Period totals count only while the moment is in the period they were measured in."""

    measured_at: datetime | None = None
    car_connected: bool = False
    session_id: int | None = None
    owner_id: int | None = None  # the running session's card owner
    session_kwh: float = 0.0
    day_kwh: float = 0.0  # this station, since local midnight
    week_kwh: float = 0.0  # this station, since Monday 00:00 local
    owner_day_kwh: float = 0.0  # the owner, on every station
    owner_week_kwh: float = 0.0


@dataclass(frozen=True)
class Cause:
    text: str
    rule_id: int | None = None
    override_id: int | None = None
    until: datetime | None = None  # when this cause stops holding, if known
    until_unplugged: bool = False


@dataclass(frozen=True)
class DesiredState:
    """What the station should do. A part that is None is not managed: nothing asks for it."""

    current_a: int | None = None
    current_cause: Cause | None = None
    enabled: bool | None = None
    enabled_cause: Cause | None = None
    session_cap_kwh: float | None = None  # the `setenergy` target of the running session
    cap_cause: Cause | None = None
    manages_energy: bool = False  # a cap rule applies to the station, whether or not it limits now

    @property
    def is_managed(self) -> bool:
        return self.current_a is not None or self.enabled is not None or self.manages_energy

    def same_limits(self, other: "DesiredState") -> bool:
        return (self.current_a, self.enabled, self.current_cause, self.enabled_cause) == (
            other.current_a,
            other.enabled,
            other.current_cause,
            other.enabled_cause,
        )


def local_instant(day: date, at: time, zone: tzinfo) -> datetime:
    # fold=0: a time in the spring gap maps past the jump, an ambiguous one to its first pass.
    return datetime.combine(day, at).replace(tzinfo=zone).astimezone(UTC)


def day_start(moment: datetime, zone: tzinfo) -> datetime:
    return local_instant(moment.astimezone(zone).date(), time(0), zone)


def week_start(moment: datetime, zone: tzinfo) -> datetime:
    local_day = moment.astimezone(zone).date()
    return local_instant(local_day - timedelta(days=local_day.weekday()), time(0), zone)


def next_day(moment: datetime, zone: tzinfo) -> datetime:
    return local_instant(moment.astimezone(zone).date() + timedelta(days=1), time(0), zone)


def next_week(moment: datetime, zone: tzinfo) -> datetime:
    local_day = moment.astimezone(zone).date()
    return local_instant(local_day + timedelta(days=7 - local_day.weekday()), time(0), zone)


def _top_priority(rules: Iterable[RuleSpec]) -> list[RuleSpec]:
    rules = list(rules)
    if not rules:
        return []
    top = max(r.priority for r in rules)
    return [r for r in rules if r.priority == top]


def _period_used(rule: RuleSpec, moment: datetime, usage: Usage, zone: tzinfo) -> float:
    if rule.kind is Kind.SESSION_CAP:
        return usage.session_kwh if usage.car_connected else 0.0
    measured = usage.measured_at
    if rule.kind is Kind.DAILY_CAP:
        same = measured is not None and day_start(measured, zone) == day_start(moment, zone)
        used = usage.owner_day_kwh if rule.card_owner_id is not None else usage.day_kwh
    else:
        same = measured is not None and week_start(measured, zone) == week_start(moment, zone)
        used = usage.owner_week_kwh if rule.card_owner_id is not None else usage.week_kwh
    return used if same else 0.0


def _cap_applies(rule: RuleSpec, usage: Usage) -> bool:
    return rule.card_owner_id is None or rule.card_owner_id == usage.owner_id


def _cap_cause(rule: RuleSpec, moment: datetime, zone: tzinfo, reached: bool) -> Cause:
    assert rule.energy_kwh is not None
    cap = f"{rule.energy_kwh:g} kWh"
    if rule.kind is Kind.SESSION_CAP:
        text = f"{rule.label}: {cap} per session" + (" reached" if reached else "")
        return Cause(text, rule_id=rule.id, until_unplugged=reached)
    period, until = (
        ("day", next_day(moment, zone))
        if rule.kind is Kind.DAILY_CAP
        else ("week", next_week(moment, zone))
    )
    whose = " for this card's owner" if rule.card_owner_id is not None else ""
    text = f"{rule.label}: {cap} per {period}{whose}" + (" reached" if reached else "")
    return Cause(text, rule_id=rule.id, until=until if reached else None)


def desired_state(
    moment: datetime,
    rules: Sequence[RuleSpec],
    overrides: Sequence[OverrideSpec],
    usage: Usage,
    zone: tzinfo,
) -> DesiredState:
    """The state `rules` (those that apply to the station) and `overrides` ask for at `moment`."""
    state = DesiredState()
    caps = [r for r in rules if r.is_cap and r.energy_kwh is not None and _cap_applies(r, usage)]
    if caps:
        state = replace(state, manages_energy=True)
    override = max(
        (o for o in overrides if o.holds(moment, usage)),
        key=lambda o: (o.created_at, o.id),
        default=None,
    )
    if override is not None:
        cause = Cause(
            override.label,
            override_id=override.id,
            until=override.until,
            until_unplugged=override.until is None,
        )
        if override.kind is OverrideKind.PAUSE:
            return replace(state, enabled=False, enabled_cause=cause)
        amps = override.current_a if override.kind is OverrideKind.CURRENT else FULL_SPEED_A
        return replace(
            state, enabled=True, enabled_cause=cause, current_a=amps, current_cause=cause
        )
    # An override that is over hands back what it took: a pause must not outlive it.
    over = [o for o in overrides if o.created_at <= moment]
    if over:
        back = Cause("the override is over")
        state = replace(state, enabled=True, enabled_cause=back)
        if any(o.kind is not OverrideKind.PAUSE for o in over):
            state = replace(state, current_a=FULL_SPEED_A, current_cause=back)

    # Charging windows: allowed only inside one of them.
    windows = [r for r in rules if r.kind is Kind.WINDOW]
    if windows:
        inside = [(r, r.window_at(moment, zone)) for r in windows]
        open_now = [(r, w) for r, w in inside if w is not None]
        if open_now:
            rule, (_, closes) = max(open_now, key=lambda rw: rw[1][1])
            text = f"{rule.label}: inside the charging window {rule.hours}"
            state = replace(state, enabled=True, enabled_cause=Cause(text, rule.id, until=closes))
        else:
            upcoming = [
                (opens, r)
                for r in windows
                for opens, _ in r.occurrences(moment, moment + timedelta(days=8), zone)
                if opens > moment
            ]
            opens, rule = min(upcoming, key=lambda o: o[0]) if upcoming else (None, windows[0])
            text = f"{rule.label}: outside the charging window {rule.hours}"
            state = replace(state, enabled=False, enabled_cause=Cause(text, rule.id, until=opens))

    # Energy caps: one reached disables the station until its period ends (or the car leaves).
    targets: list[tuple[float, RuleSpec]] = []
    for rule in _top_priority(caps) if caps else []:
        assert rule.energy_kwh is not None
        used = _period_used(rule, moment, usage, zone)
        left = rule.energy_kwh - used
        if left <= ENERGY_EPSILON_KWH and (
            usage.car_connected or rule.kind is not Kind.SESSION_CAP
        ):
            if state.enabled is not False:
                cause = _cap_cause(rule, moment, zone, reached=True)
                state = replace(state, enabled=False, enabled_cause=cause)
        elif usage.car_connected:
            # The station stops itself at `setenergy`: this session's energy plus what is left.
            targets.append((round(usage.session_kwh + left, 4), rule))
    if state.enabled is None and caps:
        state = replace(state, enabled=True, enabled_cause=Cause("no energy cap is reached"))
    if targets and state.enabled is not False:
        target, rule = min(targets, key=lambda t: t[0])
        state = replace(
            state, session_cap_kwh=target, cap_cause=_cap_cause(rule, moment, zone, reached=False)
        )

    # Current limits: the highest priority decides, the lowest limit among equals.
    limits = [r for r in rules if r.kind is Kind.CURRENT and r.current_a is not None]
    if limits:
        holding = [(r, r.window_at(moment, zone)) for r in limits]
        now = _top_priority(r for r, w in holding if w is not None)
        if now:
            rule = min(now, key=lambda r: (r.current_a or 0, r.id))
            window = dict((r.id, w) for r, w in holding)[rule.id]
            assert window is not None and rule.current_a is not None
            text = f"{rule.label}: at most {rule.current_a} A, {rule.hours}"
            state = replace(
                state,
                current_a=rule.current_a,
                current_cause=Cause(text, rule.id, until=window[1]),
            )
        else:
            state = replace(
                state,
                current_a=FULL_SPEED_A,
                current_cause=Cause("no current limit holds now: full speed"),
            )
    return state


@dataclass(frozen=True)
class Span:
    """A stretch of time in which the desired state stays the same."""

    start: datetime
    end: datetime
    state: DesiredState


def boundaries(
    start: datetime,
    end: datetime,
    rules: Sequence[RuleSpec],
    overrides: Sequence[OverrideSpec],
    zone: tzinfo,
) -> list[datetime]:
    """Every instant in (start, end) at which some rule or override may change the state."""
    found: set[datetime] = set()
    for rule in rules:
        if rule.kind in (Kind.CURRENT, Kind.WINDOW):
            for opens, closes in rule.occurrences(start, end, zone):
                found.update((opens, closes))
        elif rule.kind is Kind.DAILY_CAP:
            moment = next_day(start, zone)
            while moment < end:
                found.add(moment)
                moment = next_day(moment, zone)
        elif rule.kind is Kind.WEEKLY_CAP:
            moment = next_week(start, zone)
            while moment < end:
                found.add(moment)
                moment = next_week(moment, zone)
    for override in overrides:
        found.update(m for m in (override.created_at, override.until) if m is not None)
    return sorted(m for m in found if start < m < end)


def timeline(
    start: datetime,
    end: datetime,
    rules: Sequence[RuleSpec],
    overrides: Sequence[OverrideSpec],
    usage: Usage,
    zone: tzinfo,
) -> list[Span]:
    """The desired state from `start` to `end`, merged into spans: the preview's data."""
    cuts = [start, *boundaries(start, end, rules, overrides, zone), end]
    spans: list[Span] = []
    for begin, finish in itertools.pairwise(cuts):
        state = desired_state(begin, rules, overrides, usage, zone)
        if spans and spans[-1].state.same_limits(state):
            spans[-1] = replace(spans[-1], end=finish)
        else:
            spans.append(Span(begin, finish, state))
    return spans
