"""The pure desired-state function: windows, priorities, caps, overrides, DST days."""

import zoneinfo
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta

from chargers.rules.desired import (
    FULL_SPEED_A,
    Cause,
    DesiredState,
    Kind,
    OverrideKind,
    OverrideSpec,
    RuleSpec,
    Usage,
    boundaries,
    desired_state,
    timeline,
)

VIENNA = zoneinfo.ZoneInfo("Europe/Vienna")


def known(cause: Cause | None) -> Cause:
    assert cause is not None
    return cause


def at(text: str) -> datetime:
    """A local Vienna time, as the instant the gateway compares."""
    return datetime.fromisoformat(text).replace(tzinfo=VIENNA).astimezone(UTC)


def night(current_a: int = 16, priority: int = 0, rule_id: int = 1) -> RuleSpec:
    return RuleSpec(
        rule_id,
        "Night",
        Kind.CURRENT,
        priority,
        starts_at=time(22),
        ends_at=time(6),
        current_a=current_a,
    )


def day_slow(current_a: int = 10, priority: int = 0, rule_id: int = 2) -> RuleSpec:
    return RuleSpec(
        rule_id,
        "Day",
        Kind.CURRENT,
        priority,
        starts_at=time(6),
        ends_at=time(22),
        current_a=current_a,
    )


def state(
    moment: datetime,
    rules: list[RuleSpec],
    usage: Usage | None = None,
    overrides: Sequence[OverrideSpec] = (),
) -> DesiredState:
    return desired_state(moment, rules, list(overrides), usage or Usage(moment), VIENNA)


def test_it_applies_the_window_holding_at_the_moment_and_says_until_when() -> None:
    rules = [night(), day_slow()]
    by_day = state(at("2025-06-04T12:00"), rules)
    at_night = state(at("2025-06-04T23:30"), rules)
    assert by_day.current_a == 10 and known(by_day.current_cause).rule_id == 2
    assert known(by_day.current_cause).until == at("2025-06-04T22:00")
    assert at_night.current_a == 16 and known(at_night.current_cause).until == at(
        "2025-06-05T06:00"
    )


def test_a_window_across_midnight_holds_after_midnight_and_respects_its_start_day() -> None:
    weekdays_night = RuleSpec(
        1,
        "Night",
        Kind.CURRENT,
        weekdays=frozenset({4}),
        starts_at=time(22),
        ends_at=time(6),
        current_a=8,
    )  # Friday night only
    assert state(at("2025-06-07T03:00"), [weekdays_night]).current_a == 8  # Saturday 03:00
    assert state(at("2025-06-08T03:00"), [weekdays_night]).current_a == FULL_SPEED_A


def test_the_lowest_limit_wins_unless_a_higher_priority_says_otherwise() -> None:
    low, high = night(current_a=10, rule_id=1), night(current_a=20, priority=5, rule_id=2)
    assert state(at("2025-06-04T23:00"), [low, night(current_a=14, rule_id=3)]).current_a == 10
    assert state(at("2025-06-04T23:00"), [low, high]).current_a == 20


def test_outside_every_charging_window_the_station_is_off_with_the_reason() -> None:
    off_peak = RuleSpec(3, "Off-peak", Kind.WINDOW, starts_at=time(22), ends_at=time(6))
    outside = state(at("2025-06-04T12:00"), [off_peak])
    inside = state(at("2025-06-04T23:00"), [off_peak])
    assert outside.enabled is False and "outside the charging window 22:00-06:00" in (
        known(outside.enabled_cause).text
    )
    assert known(outside.enabled_cause).until == at("2025-06-04T22:00")
    assert inside.enabled is True


def test_a_session_cap_becomes_the_stations_own_setenergy_and_stops_it_when_reached() -> None:
    cap = RuleSpec(4, "20 kWh", Kind.SESSION_CAP, energy_kwh=20)
    moment = at("2025-06-04T12:00")
    charging = state(moment, [cap], Usage(moment, True, 7, None, session_kwh=5))
    reached = state(moment, [cap], Usage(moment, True, 7, None, session_kwh=20))
    unplugged = state(moment, [cap], Usage(moment, False, None, None, session_kwh=20))
    assert charging.session_cap_kwh == 20 and charging.enabled is True
    assert reached.enabled is False and known(reached.enabled_cause).until_unplugged
    assert unplugged.enabled is True  # the next car may charge


def test_a_daily_cap_counts_the_day_and_allows_charging_again_the_next_day() -> None:
    cap = RuleSpec(5, "Daily", Kind.DAILY_CAP, energy_kwh=10)
    moment = at("2025-06-04T20:00")
    usage = Usage(moment, True, 8, None, session_kwh=2, day_kwh=6)
    assert state(moment, [cap], usage).session_cap_kwh == 6  # 2 so far + 4 left today
    spent = Usage(moment, True, 8, None, session_kwh=6, day_kwh=10)
    blocked = state(moment, [cap], spent)
    assert blocked.enabled is False and known(blocked.enabled_cause).until == at("2025-06-05T00:00")
    assert state(at("2025-06-05T00:01"), [cap], spent).enabled is True


def test_a_card_owner_cap_applies_only_to_that_owners_sessions() -> None:
    cap = RuleSpec(6, "Company card", Kind.WEEKLY_CAP, energy_kwh=30, card_owner_id=42)
    moment = at("2025-06-04T12:00")
    theirs = Usage(moment, True, 1, 42, session_kwh=5, owner_week_kwh=30)
    someone_else = Usage(moment, True, 1, 7, session_kwh=5, week_kwh=30)
    assert state(moment, [cap], theirs).enabled is False
    assert state(moment, [cap], someone_else).enabled is None


def test_an_override_beats_rules_until_it_expires() -> None:
    moment = at("2025-06-04T23:00")
    pause = OverrideSpec(
        1,
        OverrideKind.PAUSE,
        created_at=moment - timedelta(minutes=1),
        until=at("2025-06-05T06:00"),
    )
    assert state(moment, [night()], overrides=[pause]).enabled is False
    after = state(at("2025-06-05T06:00"), [night()], overrides=[pause])
    assert after.enabled is True and after.current_a == FULL_SPEED_A  # the pause is over


def test_full_speed_until_unplugged_ends_when_the_car_leaves() -> None:
    moment = at("2025-06-04T23:00")
    full = OverrideSpec(2, OverrideKind.FULL_SPEED, created_at=moment, session_id=9)
    plugged = Usage(moment, True, 9, None)
    assert state(moment, [night()], plugged, [full]).current_a == FULL_SPEED_A
    assert state(moment, [night()], Usage(moment, True, 10, None), [full]).current_a == 16


def test_spring_forward_night_window_happens_once_and_lasts_an_hour_less() -> None:
    start, end = at("2025-03-29T12:00"), at("2025-03-31T12:00")
    windows = list(night().occurrences(start, end, VIENNA))
    hours = [(o.astimezone(VIENNA).hour, c.astimezone(VIENNA).hour) for o, c in windows]
    assert hours == [(22, 6), (22, 6)]
    the_night = [w for w in windows if w[0] == at("2025-03-29T22:00")]
    assert len(the_night) == 1 and the_night[0][1] - the_night[0][0] == timedelta(hours=7)


def test_fall_back_window_at_the_repeated_hour_is_applied_once() -> None:
    repeated = RuleSpec(1, "2-3", Kind.CURRENT, starts_at=time(2), ends_at=time(3), current_a=8)
    start, end = at("2025-10-25T12:00"), at("2025-10-27T00:00")
    windows = list(repeated.occurrences(start, end, VIENNA))
    assert len(windows) == 1  # one window on Sunday 26 October
    opens, closes = windows[0]
    assert closes - opens == timedelta(hours=2)  # 02:00 CEST to 03:00 CET: the hour lived twice
    spans = timeline(start, end, [repeated], [], Usage(start), VIENNA)
    limited = [s for s in spans if s.state.current_a == 8]
    assert len(limited) == 1 and limited[0].start == opens


def test_a_window_starting_in_the_spring_gap_is_not_skipped() -> None:
    gap = RuleSpec(1, "2:30", Kind.CURRENT, starts_at=time(2, 30), ends_at=time(5), current_a=8)
    windows = list(gap.occurrences(at("2025-03-30T00:00"), at("2025-03-30T12:00"), VIENNA))
    assert len(windows) == 1
    assert windows[0][0].astimezone(VIENNA).hour == 3  # starts when the clocks jump to 03:00


def test_boundaries_and_timeline_agree_with_the_function_at_every_moment() -> None:
    rules = [
        night(),
        day_slow(),
        RuleSpec(3, "Off-peak", Kind.WINDOW, starts_at=time(1), ends_at=time(5)),
    ]
    start = at("2025-03-28T00:00")
    spans = timeline(start, start + timedelta(days=7), rules, [], Usage(start), VIENNA)
    for span in spans:
        middle = span.start + (span.end - span.start) / 2
        assert state(middle, rules).same_limits(span.state)
    assert len(boundaries(start, start + timedelta(days=1), rules, [], VIENNA)) >= 4


def test_a_pause_that_is_over_allows_charging_again_even_without_rules() -> None:
    moment = at("2025-06-04T23:00")
    pause = OverrideSpec(
        1, OverrideKind.PAUSE, created_at=moment - timedelta(hours=1), until=moment
    )
    after = state(moment, [], overrides=[pause])
    assert after.enabled is True and known(after.enabled_cause).text == "the override is over"
    assert after.current_a is None  # a pause took no current, so it gives none back
    ended = OverrideSpec(2, OverrideKind.PAUSE, created_at=moment, ended_at=moment)
    assert state(moment, [], overrides=[ended]).enabled is True
