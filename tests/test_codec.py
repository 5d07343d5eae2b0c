"""Datagrams, clean and dirty, decode to typed messages in A, kWh, W and % (PROTOCOL.md 1, 4)."""

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargers.kecontact.codec import (
    PLAUSIBLE,
    Ack,
    ChargingState,
    EndReason,
    Firmware,
    PlugState,
    Report1,
    Report2,
    Report3,
    SessionReport,
    Started,
    StatusUpdate,
    decode,
    seconds_before,
)
from chargers.kecontact.errors import ImpossibleValue, Malformed
from chargers.kecontact.jsonable import to_jsonable

CAPTURES = Path(__file__).resolve().parent / "captures"
CAPTURE_FILES = sorted(CAPTURES.glob("*.txt"))


def capture(name: str) -> bytes:
    return (CAPTURES / name).read_bytes()


def datagram(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, indent=0).encode()


def decode_report1(fields: dict[str, Any]) -> Report1:
    message = decode(datagram(fields))
    assert isinstance(message, Report1)
    return message


def decode_report2(fields: dict[str, Any]) -> Report2:
    message = decode(datagram(fields))
    assert isinstance(message, Report2)
    return message


def decode_report3(fields: dict[str, Any]) -> Report3:
    message = decode(datagram(fields))
    assert isinstance(message, Report3)
    return message


def decode_session(fields: dict[str, Any]) -> SessionReport:
    message = decode(datagram(fields))
    assert isinstance(message, SessionReport)
    return message


def decode_status(fields: dict[str, Any]) -> StatusUpdate:
    message = decode(datagram(fields))
    assert isinstance(message, StatusUpdate)
    return message


def session_fields(**overrides: Any) -> dict[str, Any]:
    """A finished session as a P30 reports it, times as epoch seconds."""
    fields: dict[str, Any] = {
        "ID": "101",
        "Session ID": 35,
        "Curr HW": 32000,
        "E start": 7682533,
        "E pres": 65302,
        "started[s]": 1716283956,
        "ended[s]": 1716291156,
        "started": "2024-05-21 09:32:36.000",
        "ended": "2024-05-21 11:32:36.000",
        "reason": 1,
        "timeQ": 0,
        "RFID tag": "04a1b2c3d4e5f600",
        "RFID class": "01010400000000000000",
        "Serial": "22054282",
        "Sec": 534926,
    }
    fields.update(overrides)
    return fields


# Every capture decodes.


def test_it_has_captures_to_check() -> None:
    assert CAPTURE_FILES, f"no captures found in {CAPTURES}"


@pytest.mark.parametrize("path", CAPTURE_FILES, ids=lambda path: path.name)
def test_it_decodes_every_capture(path: Path) -> None:
    decode(path.read_bytes())


# Captures: report 3.


def test_it_reads_meter_values_of_a_p30_in_watts_amps_and_kwh() -> None:
    report = decode(capture("p30c-report3.txt"))

    assert report == Report3(
        voltage_1_v=229,
        voltage_2_v=230,
        voltage_3_v=231,
        current_1_a=7.0,
        current_2_a=8.0,
        current_3_a=9.0,
        power_w=5678.0,
        power_factor_percent=90.5,
        session_energy_kwh=6.5302,
        total_energy_kwh=774.7835,
        serial="22054282",
        uptime_s=534926,
    )


def test_it_reads_bare_members_without_braces_from_the_p20_guide() -> None:
    report = decode(capture("guide-p20-report3.txt"))

    assert isinstance(report, Report3)
    assert report.current_1_a == 99.999
    assert report.power_w == 99999.999
    assert report.power_factor_percent == 100.0
    assert report.session_energy_kwh == 99.9999
    assert report.total_energy_kwh == 999999.9999
    assert report.uptime_s == 4294967296


# Captures: report 2.


def test_it_reads_state_and_settings_of_a_p30() -> None:
    report = decode(capture("p30c-report2-x2.txt"))

    assert isinstance(report, Report2)
    assert report.state is ChargingState.CHARGING
    assert report.plug is PlugState.CAR_CONNECTED_LOCKED
    assert report.enabled_sys is False
    assert report.offered_current_a == 0.0
    assert report.duty_cycle_percent == 100.0
    assert report.hardware_current_a == 32.0
    assert report.user_current_a == 10.0
    assert report.energy_limit_kwh == 0.0
    assert report.serial == "22054282"


def test_it_reads_the_phase_switch_of_a_p30() -> None:
    report = decode(capture("p30c-report2-x2.txt"))

    assert isinstance(report, Report2)
    assert (report.x2_source, report.x2_phase_switch, report.phases) == (0, 0, 1)


def test_it_tolerates_a_trailing_comma_and_an_uptime_beyond_uint32() -> None:
    report = decode(capture("guide-p20-report2.txt"))

    assert isinstance(report, Report2)
    assert report.state is ChargingState.READY
    assert report.plug is PlugState.CABLE_IN_STATION
    assert report.offered_current_a == 32.0
    assert report.user_current_a == 63.0
    assert report.failsafe_current_a == 63.0
    assert report.uptime_s == 4294967296


def test_it_reads_fields_a_p20_lacks_as_none() -> None:
    report = decode(capture("guide-p20-report2.txt"))

    assert isinstance(report, Report2)
    assert report.auth_on is None
    assert report.timer_current_a is None
    assert report.energy_limit_kwh is None
    assert report.x2_phase_switch is None


# Captures: report 1.


def test_it_reads_the_identity_of_a_p30() -> None:
    report = decode(capture("p30c-report1.txt"))

    assert isinstance(report, Report1)
    assert report.product == "KC-P30-EC240422-E00"
    assert report.serial == "12345678"
    assert report.firmware == "P30 v 3.10.57 (240521-093236)"
    assert report.com_module is False
    assert report.clock_quality == 3
    assert (report.dip_switch_1, report.dip_switch_2) == (0x25, 0x02)
    assert report.uptime_s == 530786


def test_it_sees_udp_enabled_in_dip_switch_0x25() -> None:
    report = decode(capture("p30c-report1.txt"))

    assert isinstance(report, Report1)
    assert report.udp_enabled is True


def test_it_reads_the_product_info_from_report_1() -> None:
    report = decode(capture("p30c-report1.txt"))

    assert isinstance(report, Report1)
    assert report.product_info is not None
    assert report.product_info.label == "P30 c-series"


def test_it_strips_the_padded_product_string_of_a_p20() -> None:
    report = decode(capture("guide-p20-report1.txt"))

    assert isinstance(report, Report1)
    assert report.product == "KC-P20-ES240010-000"
    assert report.serial == "15017355"
    assert report.product_info is not None
    assert report.product_info.model == "P20"


def test_it_does_not_guess_udp_when_old_firmware_lacks_dip_switches() -> None:
    report = decode(capture("guide-p20-report1.txt"))

    assert isinstance(report, Report1)
    assert report.udp_enabled is None


# Captures: `i` and acks.


def test_it_reads_the_firmware_line_of_a_p30() -> None:
    assert decode(capture("p30-i.txt")) == Firmware("P30 v 3.10.27 (210105-174852)")


def test_it_reads_the_firmware_line_of_a_p20() -> None:
    message = decode(capture("guide-p20-i.txt"))

    assert message == Firmware("KEBA P20 v 2.5a3 (160613-061001):29309:143.0")


def test_it_reads_tch_ok() -> None:
    assert decode(capture("ack-ok.txt")) == Ack(True, "TCH-OK :done")


def test_it_reads_tch_err_with_its_text() -> None:
    assert decode(capture("ack-err-x2.txt")) == Ack(False, "TCH-ERR:X2 : not allowed now")


def test_it_reads_the_guides_spelling_of_tch_ok() -> None:
    assert decode(b"TCH-OK: done") == Ack(True, "TCH-OK: done")


# Session reports.


def test_it_reads_the_session_id_and_energies_in_kwh() -> None:
    session = decode_session(session_fields())

    assert session.report_id == 101
    assert session.session_id == 35
    assert session.start_energy_kwh == 768.2533
    assert session.session_energy_kwh == 6.5302
    assert session.hardware_current_a == 32.0


def test_it_reads_the_end_reason() -> None:
    session = decode_session(session_fields(reason=10))

    assert session.reason == EndReason.DEAUTHORIZED


@pytest.mark.parametrize("report_id", ["100", "115", "130"])
def test_it_reads_every_session_report_id(report_id: str) -> None:
    session = decode_session(session_fields(ID=report_id))

    assert session.report_id == int(report_id)


def test_it_treats_started_seconds_beyond_the_uptime_as_epoch() -> None:
    session = decode_session(session_fields())

    assert session.started_at() == datetime(2024, 5, 21, 9, 32, 36, tzinfo=UTC)
    assert session.ended_at() == datetime(2024, 5, 21, 11, 32, 36, tzinfo=UTC)


def test_it_gives_no_time_for_seconds_since_boot_without_a_receive_time() -> None:
    session = decode_session(session_fields(**{"started[s]": 1000, "Sec": 5000}))

    assert session.started_at() is None


def test_it_counts_seconds_since_boot_back_from_the_receive_time() -> None:
    received_at = datetime(2024, 5, 21, 12, 0, tzinfo=UTC)
    session = decode_session(session_fields(**{"started[s]": 1000, "Sec": 5000}))

    assert session.started_at(received_at) == received_at - timedelta(seconds=4000)


def test_it_prefers_the_text_timestamp_when_the_clock_is_synced() -> None:
    session = decode_session(
        session_fields(**{"started[s]": 1000, "Sec": 5000, "timeQ": 3}),
    )

    assert session.started_at() == datetime(2024, 5, 21, 9, 32, 36, tzinfo=UTC)


def test_it_ignores_the_text_timestamp_when_the_clock_is_not_synced() -> None:
    session = decode_session(
        session_fields(**{"started[s]": 1000, "Sec": 5000, "timeQ": 0}),
    )

    assert session.started_at() is None


def test_it_reads_the_rfid_tag_in_upper_case() -> None:
    session = decode_session(session_fields())

    assert session.rfid_tag == "04A1B2C3D4E5F600"


def test_it_reads_an_all_zero_rfid_tag_as_no_card() -> None:
    session = decode_session(session_fields(**{"RFID tag": "0000000000000000"}))

    assert session.rfid_tag is None


def test_it_reads_an_empty_rfid_tag_as_no_card() -> None:
    session = decode_session(session_fields(**{"RFID tag": ""}))

    assert session.rfid_tag is None


def test_it_gives_a_running_session_no_end() -> None:
    received_at = datetime(2024, 5, 21, 12, 0, tzinfo=UTC)
    running = session_fields(
        ID="100", reason=0, ended="", timeQ=3, **{"ended[s]": 0, "E pres": 1200}
    )
    session = decode_session(running)

    assert session.is_running
    assert session.ended_at() is None
    assert session.ended_at(received_at) is None


def test_it_reads_a_session_log_of_zeros_after_reboot_as_empty() -> None:
    zeros = session_fields(
        **{"Session ID": 0, "started[s]": 0, "ended[s]": 0, "reason": 0, "E start": 0}
    )
    session = decode_session(zeros)

    assert session.is_empty
    assert not session.is_running
    assert session.started_at() is None


def test_it_reads_padded_and_odd_case_keys() -> None:
    fields = {
        "ID": "102",
        "session ID": 7,
        "E Start   ": 29826,
        " E PRES": 1500,
        "reason ": 1,
        "Sec": 100,
    }
    session = decode_session(fields)

    assert session.session_id == 7
    assert session.start_energy_kwh == 2.9826
    assert session.session_energy_kwh == 0.15
    assert session.reason == EndReason.UNPLUGGED


def test_it_reads_missing_session_fields_as_none() -> None:
    session = decode_session({"ID": "100", "Session ID": 5})

    assert session.rfid_tag is None
    assert session.start_energy_kwh is None
    assert session.started_at() is None


# Values a station cannot mean.


def test_it_rejects_the_impossible_start_time_of_issue_7() -> None:
    datagram_of_the_issue = datagram(session_fields(ID="100", **{"started[s]": 99999999999999}))

    with pytest.raises(
        Malformed, match=r"'started\[s\]' should be 0 to 4294967295 seconds, got 99999999999999"
    ):
        decode(datagram_of_the_issue)


def test_it_rejects_a_negative_end_time() -> None:
    with pytest.raises(Malformed, match=r"'ended\[s\]' should be 0 to 4294967295 seconds, got -5"):
        decode(datagram(session_fields(**{"ended[s]": -5})))


def test_it_rejects_a_negative_uptime() -> None:
    with pytest.raises(Malformed, match=r"'sec' should be 0 to \d+ seconds, got -1"):
        decode(datagram({"ID": "2", "State": 2, "Sec": -1}))


def test_it_rejects_a_number_too_large_to_be_a_reading_in_short_words() -> None:
    with pytest.raises(Malformed, match=r"^report 3: P 9{37}\.\.\. W is outside 0 to 100000 W$"):
        decode(b'{"ID": "3", "P": ' + b"9" * 400 + b"}")


def test_it_rejects_a_number_too_large_for_a_field_without_a_range_in_short_words() -> None:
    with pytest.raises(Malformed, match=r"'error1' is out of range, got 9{37}\.\.\.$"):
        decode(b'{"ID": "2", "Error1": ' + b"9" * 400 + b"}")


def test_it_rejects_a_hex_number_longer_than_python_prints_in_decimal() -> None:
    with pytest.raises(Malformed, match=r"'error1' is out of range, got 0xf{35}\.\.\.$"):
        decode(b'{"ID": "2", "Error1": "0x' + b"f" * 4000 + b'"}')


def test_it_rejects_a_hex_number_of_a_field_with_a_range_in_short_words() -> None:
    with pytest.raises(ImpossibleValue, match=r"^report 3: P \d{37}\.\.\. W is outside"):
        decode(b'{"ID": "3", "P": "0x' + b"f" * 4000 + b'"}')


def test_it_rejects_an_uptime_beyond_what_a_database_column_holds() -> None:
    with pytest.raises(Malformed, match=r"'sec' is out of range, got 9223372036854775808$"):
        decode(datagram({"ID": "3", "Sec": 2**63}))


def test_it_still_reads_numbers_beyond_uint32() -> None:
    report = decode_report3({"ID": "3", "E total": 2**33, "Sec": 2**33})

    assert report.total_energy_kwh == 2**33 / 10000
    assert report.uptime_s == 2**33


def test_it_falls_back_to_the_seconds_when_the_text_time_does_not_parse() -> None:
    session = decode_session(session_fields(timeQ=3, started="2024-02-30 25:61:00.000"))

    assert session.started_at() == datetime(2024, 5, 21, 9, 32, 36, tzinfo=UTC)


def test_it_gives_no_time_when_an_absurd_uptime_counts_back_past_the_calendar() -> None:
    session = decode_session(session_fields(**{"started[s]": 1000, "Sec": 2**62}))

    assert session.started_at(datetime(2024, 5, 21, 12, 0, tzinfo=UTC)) is None


def test_it_gives_no_time_when_counting_back_leaves_year_one() -> None:
    session = decode_session(session_fields(**{"started[s]": 1000, "Sec": 5000}))

    assert session.started_at(datetime.min) is None


@pytest.mark.parametrize("seconds", [2**62, -(2**62), float("nan"), float("inf")])
def test_it_gives_no_time_for_an_uptime_that_leaves_the_calendar(seconds: float) -> None:
    assert seconds_before(datetime(2024, 5, 21, 12, 0, tzinfo=UTC), seconds) is None


def test_it_counts_an_uptime_back_to_the_boot_time() -> None:
    received_at = datetime(2024, 5, 21, 12, 0, tzinfo=UTC)

    assert seconds_before(received_at, 3600) == datetime(2024, 5, 21, 11, 0, tzinfo=UTC)


# Status messages and the boot line.


def test_it_reads_a_status_message_with_only_a_state() -> None:
    status = decode_status({"State": 3})

    assert status == StatusUpdate(state=ChargingState.CHARGING)


def test_it_reads_a_status_message_with_only_the_session_energy() -> None:
    status = decode_status({"E pres": 1234})

    assert status == StatusUpdate(session_energy_kwh=0.1234)


def test_it_reads_a_status_message_with_several_fields() -> None:
    status = decode_status({"Plug": 7, "Enable sys": 1, "Max curr": 16000, "Input": 0})

    assert status.plug is PlugState.CAR_CONNECTED_LOCKED
    assert status.enabled_sys is True
    assert status.offered_current_a == 16.0
    assert status.input == 0


def test_it_reads_the_boot_line() -> None:
    assert decode(b"started ...  \n") == Started("started ...")


def test_it_reads_the_boot_line_alone() -> None:
    assert isinstance(decode(b"started"), Started)


# Report 1 variants.


def test_it_reads_the_single_dip_switch_of_a_bmw_wallbox() -> None:
    report = decode_report1(
        {
            "ID": "1",
            "Product": "BMW-10-EC2405B2-E1R",
            "Serial": "18273645",
            "Firmware": "P30 v 3.10.57 (240521-093236)",
            "DIP-Sw": "0x25",
            "Sec": 1000,
        }
    )

    assert report.dip_switch_1 == 0x25
    assert report.udp_enabled is True
    assert report.product_info is not None
    assert report.product_info.maker == "BMW"


def test_it_sees_udp_disabled_in_dip_switch_0x05() -> None:
    report = decode_report1(
        {
            "ID": "1",
            "Product": "KC-P30-EC240422-E00",
            "Serial": "12345678",
            "Firmware": "P30 v 3.10.57 (240521-093236)",
            "DIP-Sw1": "0x05",
        }
    )

    assert report.udp_enabled is False


def test_it_rejects_a_report_1_without_a_product() -> None:
    with pytest.raises(Malformed, match="report 1 lacks Product"):
        decode(datagram({"ID": "1", "Serial": "12345678", "Firmware": "P30 v 3.10.57"}))


# Rejections.


@pytest.mark.parametrize("report_id", ["4", "99", "131"])
def test_it_rejects_an_unknown_report_id(report_id: str) -> None:
    with pytest.raises(Malformed, match=f"unknown report ID {report_id}"):
        decode(datagram({"ID": report_id, "State": 2}))


def test_it_rejects_a_state_that_is_not_a_number() -> None:
    with pytest.raises(Malformed, match="'state' should be a number, got 'abc'"):
        decode(datagram({"ID": "2", "State": "abc"}))


def test_it_rejects_an_unknown_state() -> None:
    with pytest.raises(Malformed, match="'state' has unknown value 9"):
        decode(datagram({"ID": "2", "State": 9}))


def test_it_rejects_a_fractional_current() -> None:
    with pytest.raises(Malformed, match="'max curr' should be a whole number"):
        decode(datagram({"ID": "2", "Max curr": 16000.5}))


def test_it_rejects_non_json_garbage() -> None:
    with pytest.raises(Malformed, match="not a KEBA message: 'hello world'"):
        decode(b"hello world")


def test_it_rejects_broken_json() -> None:
    with pytest.raises(Malformed, match="not KEBA JSON"):
        decode(b'{"ID": "2", "State": }')


def test_it_rejects_a_json_array() -> None:
    with pytest.raises(Malformed, match="expected a JSON object, got an array"):
        decode(b"[1, 2]")


def test_it_rejects_nan() -> None:
    with pytest.raises(Malformed, match="NaN is not a number"):
        decode(b'{"ID": "3", "P": NaN}')


def test_it_rejects_infinity() -> None:
    with pytest.raises(Malformed, match="Infinity is not a number"):
        decode(b'{"ID": "3", "P": Infinity}')


def test_it_rejects_an_empty_datagram() -> None:
    with pytest.raises(Malformed, match="empty datagram"):
        decode(b"")


def test_it_rejects_an_oversized_datagram() -> None:
    with pytest.raises(Malformed, match="too long"):
        decode(b"{" + b" " * 5000 + b"}")


def test_it_rejects_an_object_without_id_or_status_field() -> None:
    with pytest.raises(Malformed, match=r"no ID and no status field \(keys: foo\)"):
        decode(b'{"foo": 1}')


# Properties.


FIELD_NAMES = [
    "Product",
    "Serial",
    "Firmware",
    "COM-module",
    "Backend",
    "timeQ",
    "setBoot",
    "DIP-Sw1",
    "DIP-Sw2",
    "DIP-Sw",
    "Sec",
    "State",
    "Error1",
    "Error2",
    "Plug",
    "AuthON",
    "Authreq",
    "Enable sys",
    "Enable user",
    "Max curr",
    "Max curr %",
    "Curr HW",
    "Curr user",
    "Curr FS",
    "Tmo FS",
    "Curr timer",
    "Tmo CT",
    "Setenergy",
    "Output",
    "Input",
    "X2 phaseSwitch source",
    "X2 phaseSwitch",
    "U1",
    "U2",
    "U3",
    "I1",
    "I2",
    "I3",
    "P",
    "PF",
    "E pres",
    "E total",
    "Session ID",
    "E start",
    "started[s]",
    "ended[s]",
    "started",
    "ended",
    "reason",
    "RFID tag",
    "RFID class",
]

field_names = st.one_of(
    st.sampled_from(FIELD_NAMES),
    st.sampled_from(FIELD_NAMES).map(lambda name: f" {name.upper()}   "),
    st.text(max_size=8),
)
plausible_text = st.sampled_from(
    [
        "",
        "0x25",
        "0x",
        "12",
        " 7 ",
        "abc",
        "0000000000000000",
        "KC-P30-EC240422-E00",
        "KC-P40-EC240422-E00",
        "BMW-10-EC2405B2-E1R",
        "P30 v 3.10.57 (240521-093236)",
        "2024-05-21 09:32:36.000",
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | plausible_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
report_ids = st.one_of(
    st.sampled_from(["1", "2", "3", "100", "101", "130", "4", "131"]),
    json_values,
)


def render(fields: dict[str, Any], style: str) -> bytes:
    text = json.dumps(fields, indent=0)
    if style == "trailing comma" and fields:
        text = text[: text.rindex("}")].rstrip() + ",\n}"
    elif style == "bare members":
        text = text.strip()[1:-1]
    return text.encode()


def decode_or_malformed(data: bytes) -> None:
    with contextlib.suppress(Malformed):
        message = decode(data)
        to_jsonable(message)  # what `keba decode` prints


@given(st.binary(max_size=600))
def test_it_raises_only_malformed_on_arbitrary_bytes(data: bytes) -> None:
    decode_or_malformed(data)


@given(st.sampled_from([b"{", b'"', b"TCH-", b"started"]), st.binary(max_size=600))
def test_it_raises_only_malformed_on_arbitrary_bytes_after_a_plausible_start(
    start: bytes, rest: bytes
) -> None:
    decode_or_malformed(start + rest)


@given(
    st.dictionaries(field_names, json_values, max_size=12),
    st.sampled_from(["plain", "trailing comma", "bare members"]),
)
def test_it_raises_only_malformed_on_json_without_an_id(fields: dict[str, Any], style: str) -> None:
    decode_or_malformed(render(fields, style))


@given(
    report_ids,
    st.dictionaries(field_names, json_values, max_size=12),
    st.sampled_from(["plain", "trailing comma", "bare members"]),
)
def test_it_raises_only_malformed_on_json_with_an_id(
    report_id: Any, fields: dict[str, Any], style: str
) -> None:
    decode_or_malformed(render({"ID": report_id, **fields}, style))


def wire_numbers(name: str) -> st.SearchStrategy[int]:
    """Any value `name` can hold on a real station, in wire units."""
    plausible = PLAUSIBLE[name.lower()]
    return st.integers(min_value=plausible.low, max_value=plausible.high)


def wire_fields(*names: str) -> st.SearchStrategy[dict[str, int]]:
    return st.fixed_dictionaries({name: wire_numbers(name) for name in names})


@given(
    wire_fields(
        "Max curr", "Max curr %", "Curr HW", "Curr user", "Curr FS", "Curr timer", "Setenergy"
    ),
    wire_numbers("Tmo FS"),
)
def test_it_converts_report_2_units(wire: dict[str, int], failsafe_timeout_s: int) -> None:
    report = decode_report2({"ID": "2", "Tmo FS": failsafe_timeout_s, **wire})

    assert report.offered_current_a == wire["Max curr"] / 1000
    assert report.duty_cycle_percent == wire["Max curr %"] / 10
    assert report.hardware_current_a == wire["Curr HW"] / 1000
    assert report.user_current_a == wire["Curr user"] / 1000
    assert report.failsafe_current_a == wire["Curr FS"] / 1000
    assert report.timer_current_a == wire["Curr timer"] / 1000
    assert report.energy_limit_kwh == wire["Setenergy"] / 10000
    assert report.failsafe_timeout_s == failsafe_timeout_s


@given(st.integers(min_value=0, max_value=63000))
def test_it_round_trips_the_offered_current_to_milliamps(milliamps: int) -> None:
    report = decode_report2({"ID": "2", "Max curr": milliamps})

    assert report.offered_current_a is not None
    assert round(report.offered_current_a * 1000) == milliamps


@given(wire_fields("U1", "I1", "I2", "I3", "P", "PF", "E pres", "E total"))
def test_it_converts_report_3_units(wire: dict[str, int]) -> None:
    report = decode_report3({"ID": "3", **wire})

    assert report.voltage_1_v == wire["U1"]
    assert report.current_1_a == wire["I1"] / 1000
    assert report.current_2_a == wire["I2"] / 1000
    assert report.current_3_a == wire["I3"] / 1000
    assert report.power_w == wire["P"] / 1000
    assert report.power_factor_percent == wire["PF"] / 10
    assert report.session_energy_kwh == wire["E pres"] / 10000
    assert report.total_energy_kwh == wire["E total"] / 10000


@given(wire_numbers("E start"), wire_numbers("E pres"))
def test_it_round_trips_session_energies_to_tenths_of_watt_hours(start: int, present: int) -> None:
    session = decode_session({"ID": "100", "E start": start, "E pres": present})

    assert session.start_energy_kwh is not None
    assert session.session_energy_kwh is not None
    assert round(session.start_energy_kwh * 10000) == start
    assert round(session.session_energy_kwh * 10000) == present


# Properties: every field with a range (PLAUSIBLE), in every message that carries it.

REPORT_1 = {
    "ID": "1",
    "Product": "KC-P30-EC240422-E00",
    "Serial": "12345678",
    "Firmware": "P30 v 3.10.57 (240521-093236)",
}
RANGED_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    *(("report 1", REPORT_1, name) for name in ["COM-module", "timeQ", "DIP-Sw1", "DIP-Sw2"]),
    *(
        ("report 2", {"ID": "2"}, name)
        for name in [
            "AuthON",
            "Authreq",
            "Enable sys",
            "Enable user",
            "Max curr",
            "Max curr %",
            "Curr HW",
            "Curr user",
            "Curr FS",
            "Tmo FS",
            "Curr timer",
            "Tmo CT",
            "Setenergy",
            "Output",
            "Input",
            "X2 phaseSwitch source",
            "X2 phaseSwitch",
        ]
    ),
    *(
        ("report 3", {"ID": "3"}, name)
        for name in ["U1", "U2", "U3", "I1", "I2", "I3", "P", "PF", "E pres", "E total"]
    ),
    *(
        ("report 101", {"ID": "101"}, name)
        for name in ["Session ID", "Curr HW", "E start", "E pres", "timeQ"]
    ),
    *(("status message", {}, name) for name in ["Input", "Enable sys", "Max curr", "E pres"]),
]


def test_it_checks_every_field_with_a_range() -> None:
    assert {name.lower() for _, _, name in RANGED_FIELDS} == set(PLAUSIBLE)


def impossible_numbers(name: str) -> st.SearchStrategy[int]:
    """Values beside, far beyond and much beyond what `name` can hold."""
    plausible = PLAUSIBLE[name.lower()]
    return st.one_of(
        st.sampled_from([plausible.low - 1, plausible.high + 1, -(2**62), 2**62, 2**64]),
        st.integers(max_value=plausible.low - 1, min_value=-(10**30)),
        st.integers(min_value=plausible.high + 1, max_value=10**30),
    ).filter(lambda n: not plausible.low <= n <= plausible.high)


@given(
    st.sampled_from(RANGED_FIELDS),
    st.data(),
    st.sampled_from(["plain", "trailing comma", "bare members"]),
)
def test_it_reads_any_value_a_station_can_report(
    where_base_name: tuple[str, dict[str, Any], str], data: st.DataObject, style: str
) -> None:
    _, base, name = where_base_name
    value = data.draw(wire_numbers(name))

    decode(render({**base, name: value}, style))


@given(st.sampled_from(RANGED_FIELDS), st.data(), st.booleans())
def test_it_refuses_any_value_no_station_can_report_naming_the_field_and_the_range(
    where_base_name: tuple[str, dict[str, Any], str], data: st.DataObject, as_text: bool
) -> None:
    where, base, name = where_base_name
    value = data.draw(impossible_numbers(name))
    plausible = PLAUSIBLE[name.lower()]
    allowed = f"{plausible.number(plausible.low)} to {plausible.shown(plausible.high)}"

    with pytest.raises(ImpossibleValue) as refused:
        decode(datagram({**base, name: str(value) if as_text else value}))

    assert refused.value.field == name
    assert str(refused.value).startswith(f"{where}: {name} ")
    assert str(refused.value).endswith(f" is outside {allowed}")
    assert refused.value.summary == f"{where}: {name} is outside {allowed}"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("State", 2),
        ("Plug", 5),
        ("Input", 1),
        ("Enable sys", 1),
        ("Max curr", 6000),
        ("E pres", 10),
    ],
)
def test_it_reads_any_single_status_field_without_an_id(name: str, value: int) -> None:
    assert isinstance(decode(datagram({name: value})), StatusUpdate)


# Properties: real keys with values out of any range a station means.

LIMITS = [-(2**64), -1, 0, 2**32 - 1, 2**32, 2**63, 2**64 - 1, 2**64, 99999999999999, 10**30]
wild_numbers = st.one_of(
    st.sampled_from(LIMITS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
)
wild_texts = st.one_of(
    wild_numbers.map(str),
    st.sampled_from(LIMITS).map(hex),
    st.sampled_from(
        [
            "2024-02-30 25:61:61.000",
            "9999-12-31 23:59:59.999",
            "0001-01-01 00:00:00.000",
            "0000-00-00 00:00:00.000",
            "1970-01-01 00:00:00.000",
            "2024-05-21",
            "",
        ]
    ),
    st.text(max_size=30),
)
wild_values = st.one_of(wild_numbers, wild_texts, st.booleans(), st.none())
receive_times = st.one_of(
    st.none(),
    st.datetimes(),
    st.datetimes(timezones=st.just(UTC)),
    st.sampled_from([datetime.min, datetime.max, datetime.max.replace(tzinfo=UTC)]),
)


@given(
    st.sampled_from(["1", "2", "3", "100", "101", "130"]),
    st.dictionaries(st.sampled_from(FIELD_NAMES), wild_values, max_size=20),
)
def test_it_raises_only_malformed_on_out_of_range_values(
    report_id: str, fields: dict[str, Any]
) -> None:
    decode_or_malformed(datagram({"ID": report_id, **fields}))


@given(
    st.dictionaries(st.sampled_from(FIELD_NAMES), wild_values, max_size=20),
    receive_times,
)
def test_it_always_gives_a_decoded_session_times_or_none(
    overrides: dict[str, Any], received_at: datetime | None
) -> None:
    try:
        session = decode_session(session_fields(**overrides))
    except Malformed:
        return

    for when in (session.started_at(received_at), session.ended_at(received_at)):
        assert when is None or isinstance(when, datetime)


@given(
    st.sampled_from(["started[s]", "ended[s]", "Sec"]),
    st.one_of(st.sampled_from(LIMITS), st.integers()),
    receive_times,
)
def test_it_rejects_or_reads_any_session_seconds_without_raising_later(
    key: str, seconds: int, received_at: datetime | None
) -> None:
    try:
        session = decode_session(session_fields(ID="100", reason=1, **{key: seconds}))
    except Malformed as exc:
        assert f"field {key.lower()!r}" in str(exc)
        return

    session.started_at(received_at)
    session.ended_at(received_at)
