"""Command builders speak A, kWh and s; the wire speaks mA and 0.1 Wh (PROTOCOL.md section 3)."""

import contextlib
import math
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargers.kecontact import commands
from chargers.kecontact.commands import Command, check_supported, parse_command
from chargers.kecontact.errors import InvalidValue, Unsupported
from chargers.kecontact.products import parse_product

TAG = "04A1B2C3D4E5F600"


# Wire text of each builder.


def test_it_builds_curr_in_milliamps() -> None:
    assert commands.set_current(16).wire == "curr 16000"


def test_it_builds_curr_from_fractional_amps() -> None:
    assert commands.set_current(16.5).wire == "curr 16500"


def test_it_builds_currtime_in_milliamps_and_seconds() -> None:
    assert commands.set_current_timed(10, 60).wire == "currtime 10000 60"


def test_it_builds_currtime_zero_to_stop_charging() -> None:
    assert commands.set_current_timed(0, 1).wire == "currtime 0 1"


def test_it_builds_setenergy_in_tenths_of_watt_hours() -> None:
    assert commands.set_energy(20).wire == "setenergy 200000"


def test_it_builds_setenergy_zero_to_switch_the_cap_off() -> None:
    assert commands.set_energy(0).wire == "setenergy 0"


def test_it_builds_display_with_dollars_for_spaces() -> None:
    assert commands.display("Hello World").wire == "display 0 0 0 0 Hello$World"


def test_it_builds_display_with_times_when_given() -> None:
    assert commands.display("Hi", 5, 10).wire == "display 1 5 10 0 Hi"


def test_it_builds_start_with_a_padded_upper_case_tag() -> None:
    command = commands.start("04a1b2")

    assert command.wire == "start 04A1B20000000000 00000000000000000000"


def test_it_builds_start_with_a_tag_class() -> None:
    command = commands.start(TAG, "01020304050607080910")

    assert command.wire == f"start {TAG} 01020304050607080910"


def test_it_builds_stop_with_the_tag() -> None:
    assert commands.stop("04:a1:b2:c3:d4:e5:f6:00").wire == f"stop {TAG}"


def test_it_builds_failsafe() -> None:
    assert commands.failsafe(60, 10, persist=True).wire == "failsafe 60 10000 1"


def test_it_builds_failsafe_off() -> None:
    assert commands.failsafe(0).wire == "failsafe 0 0 0"


def test_it_builds_x2_for_three_phases() -> None:
    assert commands.switch_phases(True).wire == "x2 1"


def test_it_builds_x2_for_one_phase() -> None:
    assert commands.switch_phases(False).wire == "x2 0"


def test_it_builds_x2src_for_udp() -> None:
    assert commands.set_phase_switch_source(4).wire == "x2src 4"


def test_it_builds_output() -> None:
    assert commands.set_output(10).wire == "output 10"


def test_it_builds_report() -> None:
    assert commands.report(100).wire == "report 100"


def test_it_builds_enable_and_disable() -> None:
    assert (commands.enable(True).wire, commands.enable(False).wire) == ("ena 1", "ena 0")


def test_it_builds_unlock() -> None:
    assert commands.unlock().wire == "unlock"


def test_it_builds_identify() -> None:
    assert commands.identify().wire == "i"


def test_it_builds_setdatetime_in_unix_seconds() -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)

    assert commands.set_datetime(when).wire == "setdatetime 1704067200"


def test_it_builds_setdatetime_from_seconds() -> None:
    assert commands.set_datetime(1704067200).wire == "setdatetime 1704067200"


# Out-of-range values.


def test_it_refuses_a_current_below_6_amps() -> None:
    with pytest.raises(InvalidValue, match=r"6 to 63 A.*got 5 A"):
        commands.set_current(5)


def test_it_refuses_a_current_above_63_amps() -> None:
    with pytest.raises(InvalidValue, match=r"6 to 63 A.*got 64 A"):
        commands.set_current(64)


def test_it_refuses_zero_for_a_permanent_current() -> None:
    with pytest.raises(InvalidValue, match="current must be 6 to 63 A"):
        commands.set_current(0)


def test_it_refuses_a_timed_current_below_6_amps() -> None:
    with pytest.raises(InvalidValue, match=r"0 or 6 to 63 A.*got 3 A"):
        commands.set_current_timed(3, 60)


def test_it_refuses_a_currtime_delay_beyond_860400_seconds() -> None:
    with pytest.raises(InvalidValue, match=r"delay.*860400.*got 860401"):
        commands.set_current_timed(10, 860401)


def test_it_refuses_a_fractional_currtime_delay() -> None:
    with pytest.raises(InvalidValue, match="delay must be a whole number"):
        commands.set_current_timed(10, 1.5)  # type: ignore[arg-type]


def test_it_refuses_a_failsafe_timeout_below_10_seconds() -> None:
    with pytest.raises(InvalidValue, match=r"failsafe timeout.*10 to 600.*got 5"):
        commands.failsafe(5, 10)


def test_it_refuses_a_failsafe_timeout_above_600_seconds() -> None:
    with pytest.raises(InvalidValue, match=r"failsafe timeout.*10 to 600.*got 601"):
        commands.failsafe(601, 10)


def test_it_refuses_a_failsafe_current_below_6_amps() -> None:
    with pytest.raises(InvalidValue, match=r"failsafe current.*got 2 A"):
        commands.failsafe(60, 2)


def test_it_refuses_a_reserved_output_value() -> None:
    with pytest.raises(InvalidValue, match=r"output must be 0, 1 or 10-150.*got 5"):
        commands.set_output(5)


def test_it_refuses_an_output_above_150() -> None:
    with pytest.raises(InvalidValue, match=r"output must be 0, 1 or 10-150.*got 151"):
        commands.set_output(151)


def test_it_refuses_display_text_of_24_characters() -> None:
    with pytest.raises(InvalidValue, match="at most 23 characters, got 24"):
        commands.display("x" * 24)


def test_it_refuses_display_text_with_a_dollar() -> None:
    with pytest.raises(InvalidValue, match="without '\\$'"):
        commands.display("5$ left")


def test_it_refuses_display_text_that_is_not_ascii() -> None:
    with pytest.raises(InvalidValue, match="printable ASCII"):
        commands.display("Grüß")


def test_it_refuses_a_display_time_beyond_65535() -> None:
    with pytest.raises(InvalidValue, match=r"maximum display time.*got 65536"):
        commands.display("Hi", 0, 65536)


def test_it_refuses_an_rfid_tag_that_is_not_hex() -> None:
    with pytest.raises(InvalidValue, match=r"RFID tag must be hexadecimal.*'XYZ'"):
        commands.start("XYZ")


def test_it_refuses_an_empty_rfid_tag() -> None:
    with pytest.raises(InvalidValue, match="RFID tag must be hexadecimal"):
        commands.stop("")


def test_it_refuses_an_rfid_tag_longer_than_16_hex_digits() -> None:
    with pytest.raises(InvalidValue, match="RFID tag must be at most 16 hex digits, got 17"):
        commands.start("0" * 17)


def test_it_refuses_an_rfid_class_longer_than_20_hex_digits() -> None:
    with pytest.raises(InvalidValue, match="RFID class must be at most 20 hex digits, got 21"):
        commands.start(TAG, "0" * 21)


def test_it_refuses_negative_energy() -> None:
    with pytest.raises(InvalidValue, match=r"energy must be 0 \(off\) or a positive"):
        commands.set_energy(-1)


def test_it_refuses_energy_beyond_the_wire_maximum() -> None:
    with pytest.raises(InvalidValue, match=r"energy in 0\.1 Wh must be 0 to 999999999"):
        commands.set_energy(100_000)


def test_it_refuses_an_unknown_report() -> None:
    with pytest.raises(InvalidValue, match="report must be 1, 2, 3 or 100-130, got 4"):
        commands.report(4)


def test_it_refuses_an_x2src_beyond_4() -> None:
    with pytest.raises(InvalidValue, match="x2src must be 0 to 4, got 5"):
        commands.set_phase_switch_source(5)


def test_it_refuses_a_negative_unix_time() -> None:
    with pytest.raises(InvalidValue, match="Unix time must be 0 to"):
        commands.set_datetime(-1)


@pytest.mark.parametrize("amps", [math.inf, -math.inf, math.nan, 1e306])
def test_it_refuses_a_current_that_is_not_finite(amps: float) -> None:
    with pytest.raises(InvalidValue, match="current"):
        commands.set_current(amps)


@pytest.mark.parametrize("kwh", [math.inf, math.nan])
def test_it_refuses_energy_that_is_not_finite(kwh: float) -> None:
    with pytest.raises(InvalidValue, match="energy"):
        commands.set_energy(kwh)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_it_never_raises_anything_but_invalid_value_for_a_current(amps: float) -> None:
    with contextlib.suppress(InvalidValue):
        commands.set_current_timed(amps, 60)


# Parsing wire text.


BUILT: list[Callable[[], Command]] = [
    commands.identify,
    lambda: commands.report(1),
    lambda: commands.report(130),
    lambda: commands.enable(True),
    lambda: commands.enable(False),
    lambda: commands.set_current(16),
    lambda: commands.set_current(16.5),
    lambda: commands.set_current_timed(10, 60),
    lambda: commands.set_current_timed(0, 1),
    lambda: commands.set_current_timed(32, 0),
    lambda: commands.set_energy(20),
    lambda: commands.set_energy(0),
    lambda: commands.set_output(0),
    lambda: commands.set_output(150),
    lambda: commands.start("04a1b2"),
    lambda: commands.start(TAG, "01020304050607080910"),
    lambda: commands.stop(TAG),
    lambda: commands.set_datetime(1704067200),
    lambda: commands.display("Hello World"),
    lambda: commands.display("Hi", 5, 10),
    lambda: commands.display("two  spaces"),
    lambda: commands.unlock(),
    lambda: commands.failsafe(60, 10, persist=True),
    lambda: commands.failsafe(0),
    lambda: commands.set_phase_switch_source(4),
    lambda: commands.switch_phases(True),
    lambda: commands.switch_phases(False),
]


@pytest.mark.parametrize("build", BUILT, ids=lambda build: build().wire)
def test_it_parses_every_builders_wire_text_back(build: Callable[[], Command]) -> None:
    command = build()

    assert parse_command(command.wire) == command


def test_it_parses_command_names_in_any_case() -> None:
    assert parse_command("CURR 16000") == commands.set_current(16)


@pytest.mark.parametrize("text", ["reboot", "curr16000", "setcurrent 16000", "ena on"])
def test_it_rejects_unknown_commands(text: str) -> None:
    with pytest.raises(InvalidValue):
        parse_command(text)


def test_it_names_the_unknown_command() -> None:
    with pytest.raises(InvalidValue, match="unknown command or wrong arguments: 'reboot'"):
        parse_command("reboot")


def test_it_rejects_an_empty_command() -> None:
    with pytest.raises(InvalidValue, match="empty command"):
        parse_command("   ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("curr", "`curr` takes 1 number"),
        ("curr 16000 60", "`curr` takes 1 number"),
        ("currtime 10000", "`currtime` takes 2 number"),
        ("report", "`report` takes 1 number"),
        ("failsafe 60 10000", "`failsafe` takes 3 number"),
        ("x2 0 1", "`x2` takes 1 number"),
        ("ena", "`ena` takes 1 number"),
    ],
)
def test_it_rejects_the_wrong_number_of_arguments(text: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        parse_command(text)


@pytest.mark.parametrize("text", ["i now", "unlock 1", "stop", "start", "stop a b"])
def test_it_rejects_arguments_to_commands_that_take_other_counts(text: str) -> None:
    with pytest.raises(InvalidValue, match="unknown command or wrong arguments"):
        parse_command(text)


def test_it_rejects_a_word_where_a_number_belongs() -> None:
    with pytest.raises(InvalidValue, match="whole numbers"):
        parse_command("curr sixteen")


def test_it_applies_the_builders_limits_when_parsing() -> None:
    with pytest.raises(InvalidValue, match="got 5 A"):
        parse_command("curr 5000")


def test_it_rejects_a_parsed_ena_other_than_0_or_1() -> None:
    with pytest.raises(InvalidValue, match="ena must be 0 or 1, got 2"):
        parse_command("ena 2")


@given(st.floats(min_value=6, max_value=63, allow_nan=False))
def test_it_round_trips_any_valid_current(amps: float) -> None:
    command = commands.set_current(amps)

    assert parse_command(command.wire) == command


@given(st.integers(min_value=6000, max_value=63000))
def test_it_round_trips_any_valid_current_in_milliamps(milliamps: int) -> None:
    command = commands.set_current(milliamps / 1000)

    assert command.wire == f"curr {milliamps}"
    assert parse_command(command.wire) == command


# What each model may be sent.


P20 = parse_product("KC-P20-EC240130-000", "KEBA P20 v 2.5a3 (160613-061001)")
P30C = parse_product("KC-P30-EC240422-E00", "P30 v 3.10.57 (240521-093236)")
GERMAN = parse_product("KC-P30-EC220112-000-DE", "P30 v 3.10.57 (240521-093236)")
P40 = parse_product("KC-P40-EC240422-E00")

P30_ONLY: list[Command] = [
    commands.set_current_timed(10, 60),
    commands.set_energy(20),
    commands.start(TAG),
    commands.stop(TAG),
    commands.display("Hello"),
    commands.switch_phases(True),
    commands.set_phase_switch_source(4),
    commands.report(100),
]

P20_KNOWN: list[Command] = [
    commands.identify(),
    commands.report(1),
    commands.report(2),
    commands.report(3),
    commands.enable(False),
    commands.set_current(16),
    commands.set_output(1),
    commands.unlock(),
    commands.failsafe(60, 10),
]


@pytest.mark.parametrize("command", P30_ONLY, ids=str)
def test_it_refuses_p30_commands_on_a_p20_naming_the_model(command: Command) -> None:
    with pytest.raises(Unsupported, match="P20") as refused:
        check_supported(command, P20)

    assert command.name in str(refused.value)


@pytest.mark.parametrize("command", P20_KNOWN, ids=str)
def test_it_allows_a_p20_the_commands_it_knows(command: Command) -> None:
    check_supported(command, P20)


def test_it_refuses_display_on_the_german_edition() -> None:
    with pytest.raises(Unsupported, match="German edition") as refused:
        check_supported(commands.display("Hello"), GERMAN)

    assert "KC-P30-EC220112-000-DE" in str(refused.value)


def test_it_refuses_setenergy_on_the_german_edition() -> None:
    with pytest.raises(Unsupported, match="setenergy"):
        check_supported(commands.set_energy(20), GERMAN)


def test_it_allows_currtime_on_the_german_edition() -> None:
    check_supported(commands.set_current_timed(10, 60), GERMAN)


@pytest.mark.parametrize("command", P20_KNOWN + P30_ONLY, ids=str)
def test_it_refuses_everything_on_a_p40_pointing_to_modbus(command: Command) -> None:
    with pytest.raises(Unsupported, match="Modbus") as refused:
        check_supported(command, P40)

    assert "P40" in str(refused.value)


@pytest.mark.parametrize("command", P20_KNOWN + P30_ONLY, ids=str)
def test_it_allows_everything_on_a_p30_c_series_with_new_firmware(command: Command) -> None:
    check_supported(command, P30C)


def test_it_refuses_x2_on_a_p30_c_series_with_old_firmware() -> None:
    old = parse_product("KC-P30-EC240422-E00", "P30 v 3.09.1")

    with pytest.raises(Unsupported, match="x2"):
        check_supported(commands.switch_phases(True), old)


def test_it_marks_curr_idempotent_and_start_not() -> None:
    assert commands.set_current(16).idempotent
    assert not commands.start(TAG).idempotent


def test_it_expects_a_firmware_line_for_i_a_report_for_report_and_an_ack_otherwise() -> None:
    assert commands.identify().reply is commands.Reply.FIRMWARE
    assert commands.report(2).reply is commands.Reply.REPORT
    assert commands.set_current(16).reply is commands.Reply.ACK
