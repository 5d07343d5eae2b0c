"""What a session costs under a set of tariffs: pure arithmetic, no database.

A session is split wherever the price can change (local midnight, each tariff's
start and end time) and each piece is charged the energy the session's readings
show for it. Times are compared in UTC: on a DST change day a local clock hour
is not an hour, and Python compares datetimes of one zone by their wall clock.
"""

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


class CostError(Exception):
    """A session cannot be priced; the text says why."""


class NoTariff(CostError):
    pass


class MixedCurrencies(CostError):
    pass


@dataclass(frozen=True)
class TariffRule:
    valid_from: date
    price_per_kwh: Decimal
    currency: str
    starts_at: time | None = None  # local; None for all day
    ends_at: time | None = None  # may be earlier than starts_at: the window crosses midnight

    @property
    def is_all_day(self) -> bool:
        return self.starts_at is None or self.ends_at is None

    def covers(self, local: time) -> bool:
        if self.starts_at is None or self.ends_at is None:
            return True
        if self.starts_at < self.ends_at:
            return self.starts_at <= local < self.ends_at
        return local >= self.starts_at or local < self.ends_at


@dataclass(frozen=True)
class CostPart:
    start: datetime
    end: datetime
    energy_kwh: float
    rule: TariffRule | None


@dataclass(frozen=True)
class Cost:
    amount: Decimal
    currency: str
    parts: tuple[CostPart, ...]


def rule_at(rules: Iterable[TariffRule], local: datetime) -> TariffRule | None:
    """The price in force at a local moment: the newest price list, then the most specific hour."""
    in_force = [rule for rule in rules if rule.valid_from <= local.date()]
    if not in_force:
        return None
    newest = max(rule.valid_from for rule in in_force)
    candidates = [rule for rule in in_force if rule.valid_from == newest]
    for rule in sorted(candidates, key=lambda rule: rule.is_all_day):
        if rule.covers(local.time()):
            return rule
    return None


def _boundaries(
    start: datetime, end: datetime, rules: Sequence[TariffRule], zone: tzinfo
) -> list[datetime]:
    """Every moment strictly inside the session where the price may change, in UTC."""
    times = {time.min}
    for rule in rules:
        times.update(moment for moment in (rule.starts_at, rule.ends_at) if moment is not None)
    day = start.astimezone(zone).date()
    last_day = end.astimezone(zone).date()
    found: set[datetime] = set()
    while day <= last_day:
        for moment in times:
            # A local time that does not exist (02:30 when clocks go forward)
            # resolves to the moment just after the gap; that is where it starts.
            at = datetime.combine(day, moment, tzinfo=zone).astimezone(UTC)
            if start < at < end:
                found.add(at)
        day += timedelta(days=1)
    return sorted(found)


class EnergyCurve:
    """A session's energy over time, from its start (0 kWh) to its end (its final energy)."""

    def __init__(
        self,
        start: datetime,
        end: datetime,
        energy_kwh: float,
        readings: Iterable[tuple[datetime, float]],
    ) -> None:
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        inside = sorted((at.astimezone(UTC), kwh) for at, kwh in readings if start < at < end)
        points = [(start, 0.0), *inside, (end, energy_kwh)]
        # The session counter only grows. A reading higher than a later one is
        # stale (E pres keeps the last session's value until a new one resets it),
        # so walk back from the final energy and keep each point at most the next.
        cleaned: list[tuple[datetime, float]] = []
        ceiling = energy_kwh
        for at, kwh in reversed(points):
            ceiling = max(0.0, min(kwh, ceiling))
            cleaned.append((at, ceiling))
        self.points = list(reversed(cleaned))

    def at(self, moment: datetime) -> float:
        points = self.points
        if moment <= points[0][0]:
            return points[0][1]
        for (t0, e0), (t1, e1) in itertools.pairwise(points):
            if t0 <= moment <= t1:
                span = (t1 - t0).total_seconds()
                if span <= 0:
                    return e1
                return e0 + (e1 - e0) * (moment - t0).total_seconds() / span
        return points[-1][1]


def session_cost(
    rules: Sequence[TariffRule],
    start: datetime,
    end: datetime,
    energy_kwh: float,
    readings: Iterable[tuple[datetime, float]],
    zone: tzinfo,
) -> Cost:
    """The cost of a session; raises NoTariff or MixedCurrencies when it has none."""
    curve = EnergyCurve(start, end, energy_kwh, readings)
    start, end = curve.points[0][0], curve.points[-1][0]
    edges = [start, *_boundaries(start, end, rules, zone), end]
    parts: list[CostPart] = []
    for left, right in itertools.pairwise(edges):
        # The price of a piece is the price at its middle: boundaries are exact.
        middle = (left + (right - left) / 2).astimezone(zone)
        energy = curve.at(right) - curve.at(left)
        parts.append(CostPart(left, right, energy, rule_at(rules, middle)))
    if not parts:  # a session that ended as it started
        parts.append(CostPart(start, end, 0.0, rule_at(rules, start.astimezone(zone))))
    unpriced = [part for part in parts if part.rule is None and part.energy_kwh > 0]
    if unpriced or all(part.rule is None for part in parts):
        first = (unpriced or parts)[0]
        raise NoTariff(f"no tariff was in force on {first.start.astimezone(zone):%Y-%m-%d %H:%M}")
    currencies = {part.rule.currency for part in parts if part.rule is not None}
    if len(currencies) > 1:
        raise MixedCurrencies(f"the session spans tariffs in {', '.join(sorted(currencies))}")
    amount = sum(
        (
            Decimal(str(round(part.energy_kwh, 4))) * part.rule.price_per_kwh
            for part in parts
            if part.rule is not None
        ),
        Decimal(0),
    )
    return Cost(amount.quantize(CENT, ROUND_HALF_UP), currencies.pop(), tuple(parts))
