"""Reconciliation: which commands close the gap between desired state and report 2."""

from chargers.kecontact.codec import Report2
from chargers.rules.desired import FULL_SPEED_A, Cause, DesiredState
from chargers.rules.reconcile import Abilities, FallbackSpec, Recent, plan

P30 = Abilities(current_timer=True, energy_limit=True)
P20 = Abilities(current_timer=False, energy_limit=False)
TEN_A = DesiredState(current_a=10, current_cause=Cause("rule “Day”", rule_id=3))


def report(**fields: object) -> Report2:
    defaults: dict[str, object] = dict(
        enabled_user=True,
        user_current_a=63.0,
        timer_current_a=0.0,
        timer_seconds_left=0,
        energy_limit_kwh=0.0,
        failsafe_timeout_s=0,
        failsafe_current_a=0.0,
    )
    return Report2(**(defaults | fields))  # type: ignore[arg-type]


def wires(*args: object, **kwargs: object) -> list[str]:
    return [a.wire for a in plan(*args, **kwargs)]  # type: ignore[arg-type]


def test_it_sends_currtime_when_the_limit_differs_and_names_the_rule() -> None:
    (action,) = plan(TEN_A, report(timer_current_a=16.0), P30, True, [])
    assert action.wire == "currtime 10000 1" and action.rule_id == 3


def test_it_sends_nothing_when_the_station_shows_the_limit() -> None:
    assert wires(TEN_A, report(timer_current_a=10.0), P30, True, []) == []


def test_a_p20_gets_curr_instead_of_currtime() -> None:
    assert wires(TEN_A, report(user_current_a=63.0, timer_current_a=None), P20, True, []) == [
        "curr 10000"
    ]


def test_no_second_command_while_one_for_the_same_difference_is_in_flight() -> None:
    in_flight = [Recent("currtime 12000 1", "sent", 1.0)]
    assert wires(TEN_A, report(timer_current_a=16.0), P30, True, in_flight) == []


def test_a_refused_command_is_not_repeated_for_a_while_but_a_different_one_is() -> None:
    refused = [Recent("currtime 10000 1", "refused", 60.0)]
    assert wires(TEN_A, report(timer_current_a=16.0), P30, True, refused) == []
    later = [Recent("currtime 10000 1", "refused", 3600.0)]
    assert wires(TEN_A, report(timer_current_a=16.0), P30, True, later) == ["currtime 10000 1"]


def test_a_limit_just_done_is_not_repeated_unless_another_came_after_it() -> None:
    done = [Recent("currtime 10000 1", "verified", 10.0)]
    assert wires(TEN_A, report(timer_current_a=16.0), P30, True, done) == []
    # An override took the station to full speed and ended: the rule's limit returns at once.
    then_full = [*done, Recent("currtime 63000 1", "verified", 5.0)]
    assert wires(TEN_A, report(timer_current_a=63.0), P30, True, then_full) == ["currtime 10000 1"]


def test_a_limit_done_is_sent_again_when_a_later_report_shows_the_station_lost_it() -> None:
    # A reboot, a re-plug or someone at the station: report 2 read after the row says 16 A.
    undone = [Recent("currtime 10000 1", "verified", 10.0, before_report=True)]
    assert wires(TEN_A, report(timer_current_a=16.0), P30, True, undone) == ["currtime 10000 1"]


def test_a_station_that_keeps_undoing_a_limit_gets_it_only_after_the_quiet_time() -> None:
    # Another program sets the station back each time: a command each poll would not win.
    undone = [
        Recent("currtime 10000 1", "verified", age, before_report=True) for age in (10, 60, 120)
    ]
    assert wires(TEN_A, report(timer_current_a=16.0), P30, True, undone) == []
    # Keep-alives with the same text are no sign of a fight.
    fed = [
        Recent("currtime 10000 1", "verified", age, before_report=True, keep_alive=age > 10)
        for age in (10, 60, 120)
    ]
    assert wires(TEN_A, report(timer_current_a=16.0), P30, True, fed) == ["currtime 10000 1"]


def test_a_refused_command_is_tried_again_once_the_station_restarted_or_a_car_came() -> None:
    refused = [Recent("currtime 10000 1", "refused", 60.0, before_report=True)]
    assert wires(TEN_A, report(timer_current_a=16.0), P30, True, refused) == []
    news = [Recent("currtime 10000 1", "refused", 60.0, before_report=True, before_news=True)]
    assert wires(TEN_A, report(timer_current_a=16.0), P30, True, news) == ["currtime 10000 1"]


def test_full_speed_accepts_a_station_without_a_timer() -> None:
    full = DesiredState(current_a=FULL_SPEED_A, current_cause=Cause("no limit"))
    assert wires(full, report(timer_current_a=0.0), P30, True, []) == []
    assert wires(full, report(timer_current_a=10.0), P30, True, []) == ["currtime 63000 1"]


def test_disabled_means_ena_0_and_no_current_command_that_would_enable_it_again() -> None:
    off = DesiredState(current_a=10, enabled=False, enabled_cause=Cause("window", rule_id=1))
    assert wires(off, report(timer_current_a=16.0), P30, True, []) == ["ena 0"]


def test_the_session_cap_is_set_only_while_a_car_is_plugged_in() -> None:
    cap = DesiredState(session_cap_kwh=20.0, manages_energy=True, cap_cause=Cause("cap", rule_id=9))
    assert wires(cap, report(), P30, True, []) == ["setenergy 200000"]
    assert wires(cap, report(), P30, False, []) == []
    assert wires(cap, report(energy_limit_kwh=20.0), P30, True, []) == []


def test_the_failsafe_is_armed_and_fed_before_it_could_trip() -> None:
    fallback = FallbackSpec(timeout_s=60, current_a=6)
    unarmed = wires(DesiredState(), report(), P30, True, [], fallback, float("inf"))
    assert unarmed == ["currtime 63000 1", "failsafe 60 6000 0"]
    armed = report(failsafe_timeout_s=60, failsafe_current_a=6.0)
    assert wires(DesiredState(), armed, P30, True, [], fallback, 10.0) == []
    assert wires(DesiredState(), armed, P30, True, [], fallback, 31.0) == ["currtime 63000 1"]
    assert wires(
        DesiredState(),
        report(enabled_user=False, failsafe_timeout_s=60, failsafe_current_a=6.0),
        P30,
        True,
        [],
        fallback,
        31.0,
    ) == ["ena 0"]


def test_a_limit_command_of_this_pass_feeds_the_failsafe_without_a_keep_alive() -> None:
    fallback = FallbackSpec(timeout_s=60, current_a=6)
    armed = report(failsafe_timeout_s=60, failsafe_current_a=6.0, timer_current_a=16.0)
    assert wires(TEN_A, armed, P30, True, [], fallback, 50.0) == ["currtime 10000 1"]
