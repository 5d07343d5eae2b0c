"""What report 2 proves about a command: shown, shows something else, or cannot show it."""

from pathlib import Path

import pytest

from chargers.kecontact import commands
from chargers.kecontact.codec import Report2, decode
from chargers.kecontact.commands import Command
from chargers.kecontact.effects import Proof, Verdict, effect_in_report2, shows_effect

CAPTURES = Path(__file__).resolve().parent / "captures"


def p20_report2() -> Report2:
    report = decode((CAPTURES / "guide-p20-report2.txt").read_bytes())
    assert isinstance(report, Report2)
    return report


# Report 2 shows the effect.


@pytest.mark.parametrize(
    ("command", "status", "detail"),
    [
        (commands.set_current(10), Report2(user_current_a=10.0), "Curr user = 10 A"),
        (
            commands.set_current_timed(16, 60),
            Report2(timer_current_a=16.0, timer_seconds_left=58),
            "Curr timer = 16 A, Tmo CT = 58 s",
        ),
        (commands.set_energy(6.5302), Report2(energy_limit_kwh=6.5302), "Setenergy = 6.5302 kWh"),
        (commands.enable(False), Report2(enabled_user=False), "Enable user = off"),
        (commands.set_output(1), Report2(output=1), "Output = 1"),
        (commands.set_phase_switch_source(4), Report2(x2_source=4), "X2 phaseSwitch source = 4"),
        (commands.switch_phases(True), Report2(x2_phase_switch=1), "X2 phaseSwitch = 3 phases"),
        (commands.switch_phases(False), Report2(x2_phase_switch=0), "X2 phaseSwitch = 1 phase"),
        (
            commands.failsafe(60, 6),
            Report2(failsafe_timeout_s=60, failsafe_current_a=6.0),
            "Tmo FS = 60 s, Curr FS = 6 A",
        ),
    ],
    ids=lambda value: value.wire if isinstance(value, Command) else "",
)
def test_it_sees_the_effect_in_report_2(command: Command, status: Report2, detail: str) -> None:
    assert effect_in_report2(command, status) == Verdict(Proof.SHOWN, f"report 2 shows {detail}")


def test_it_takes_a_timer_that_already_ran_out_as_shown() -> None:
    verdict = effect_in_report2(
        commands.set_current_timed(0, 1), Report2(timer_current_a=0.0, timer_seconds_left=0)
    )

    assert verdict.proof is Proof.SHOWN


def test_it_sees_the_setting_in_a_real_p30_capture() -> None:
    status = decode((CAPTURES / "p30c-report2-x2.txt").read_bytes())
    assert isinstance(status, Report2)

    assert effect_in_report2(commands.set_current(10), status).proof is Proof.SHOWN


# Report 2 shows something else.


@pytest.mark.parametrize(
    ("command", "status", "detail"),
    [
        (
            commands.set_current(10),
            Report2(user_current_a=63.0),
            "Curr user = 63 A instead of 10 A",
        ),
        (
            commands.set_current_timed(16, 60),
            Report2(timer_current_a=10.0, timer_seconds_left=30),
            "Curr timer = 10 A instead of 16 A",
        ),
        (
            commands.set_energy(10),
            Report2(energy_limit_kwh=0.0),
            "Setenergy = 0 kWh instead of 10 kWh",
        ),
        (commands.enable(False), Report2(enabled_user=True), "Enable user = on instead of off"),
        (commands.set_output(1), Report2(output=0), "Output = 0 instead of 1"),
        (
            commands.set_phase_switch_source(4),
            Report2(x2_source=0),
            "X2 phaseSwitch source = 0 instead of 4",
        ),
        (
            commands.switch_phases(False),
            Report2(x2_phase_switch=1),
            "X2 phaseSwitch = 3 phases instead of 1 phase",
        ),
        (
            commands.failsafe(60, 6),
            Report2(failsafe_timeout_s=0, failsafe_current_a=0.0),
            "Tmo FS = 0 s instead of 60 s, Curr FS = 0 A instead of 6 A",
        ),
    ],
    ids=lambda value: value.wire if isinstance(value, Command) else "",
)
def test_it_names_what_report_2_shows_instead(
    command: Command, status: Report2, detail: str
) -> None:
    assert effect_in_report2(command, status) == Verdict(Proof.DIFFERS, f"report 2 shows {detail}")


def test_it_takes_an_older_timer_with_more_time_left_as_not_applied() -> None:
    verdict = effect_in_report2(
        commands.set_current_timed(16, 60), Report2(timer_current_a=16.0, timer_seconds_left=590)
    )

    assert verdict == Verdict(
        Proof.DIFFERS, "report 2 shows Tmo CT = 590 s instead of at most 60 s"
    )


# Report 2 cannot show it.


@pytest.mark.parametrize(
    "command",
    [
        commands.display("Hello"),
        commands.start("04a1b2c3d4e5f600"),
        commands.stop("04a1b2c3d4e5f600"),
        commands.unlock(),
        commands.set_datetime(1716283956),
        commands.report(3),
        commands.identify(),
    ],
    ids=lambda command: command.name,
)
def test_it_claims_nothing_for_commands_report_2_cannot_show(command: Command) -> None:
    full = p20_report2()

    assert not shows_effect(command)
    assert effect_in_report2(command, full) == Verdict(
        Proof.NOT_SHOWN, f"report 2 cannot show the effect of `{command.name}`"
    )


@pytest.mark.parametrize(
    ("command", "missing"),
    [
        (commands.set_current_timed(16, 60), "Curr timer or Tmo CT"),
        (commands.set_energy(10), "Setenergy"),
        (commands.set_phase_switch_source(4), "X2 phaseSwitch source"),
        (commands.switch_phases(True), "X2 phaseSwitch"),
    ],
    ids=lambda value: value.name if isinstance(value, Command) else "",
)
def test_it_claims_nothing_from_fields_a_p20_does_not_report(
    command: Command, missing: str
) -> None:
    assert shows_effect(command)
    assert effect_in_report2(command, p20_report2()) == Verdict(
        Proof.NOT_SHOWN,
        f"report 2 of this station has no {missing}, "
        f"so it cannot show the effect of `{command.name}`",
    )


def test_it_still_proves_what_a_p20_does_report() -> None:
    assert effect_in_report2(commands.set_current(63), p20_report2()) == Verdict(
        Proof.SHOWN, "report 2 shows Curr user = 63 A"
    )


def test_it_claims_nothing_from_half_of_the_fields_it_needs() -> None:
    verdict = effect_in_report2(commands.failsafe(60, 6), Report2(failsafe_timeout_s=60))

    assert verdict.proof is Proof.NOT_SHOWN
    assert "no Curr FS" in verdict.detail


def test_it_reads_commands_parsed_from_wire_text() -> None:
    command = commands.parse_command("currtime 10000 60")

    verdict = effect_in_report2(command, Report2(timer_current_a=10.0, timer_seconds_left=60))

    assert verdict.proof is Proof.SHOWN
