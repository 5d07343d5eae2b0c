"""Product strings and firmware lines decide what a station can do (PROTOCOL.md section 4-5)."""

import pytest

from chargers.kecontact.errors import Malformed
from chargers.kecontact.products import Capability, firmware_version, parse_product

P30C = "KC-P30-EC240422-E00"
P30X = "KC-P30-EC2404B2-M0R"
GERMAN = "KC-P30-EC220112-000-DE"
BMW = "BMW-10-EC2405B2-E1R"
P20 = "KC-P20-EC240130-000"


def test_it_reads_a_p30_c_series_with_meter() -> None:
    info = parse_product(P30C, "P30 v 3.10.57 (240521-093236)")

    assert (info.maker, info.model, info.series) == ("KEBA", "P30", "c")
    assert info.udp_supported
    assert not info.german_edition
    assert info.label == "P30 c-series"


def test_it_gives_a_p30_c_series_meter_display_and_session_log() -> None:
    info = parse_product(P30C, "P30 v 3.10.57 (240521-093236)")

    assert info.can(Capability.METER)
    assert info.can(Capability.DISPLAY)
    assert info.can(Capability.SESSION_LOG)
    assert info.can(Capability.CURRENT_TIMER)
    assert info.can(Capability.ENERGY_LIMIT)
    assert info.can(Capability.REMOTE_START)
    assert not info.can(Capability.RFID)


def test_it_allows_phase_switching_on_p30_c_series_firmware_3_10() -> None:
    info = parse_product(P30C, "P30 v 3.10.57 (240521-093236)")

    assert info.can(Capability.PHASE_SWITCH)


def test_it_refuses_phase_switching_on_older_p30_c_series_firmware() -> None:
    info = parse_product(P30C, "P30 v 3.09.1")

    assert not info.can(Capability.PHASE_SWITCH)


def test_it_refuses_phase_switching_when_the_firmware_is_unknown() -> None:
    info = parse_product(P30C)

    assert not info.can(Capability.PHASE_SWITCH)


def test_it_reads_a_p30_x_series_with_rfid_and_phase_switch() -> None:
    info = parse_product(P30X, "P30 v 1.17.3 (230112-101010)")

    assert (info.model, info.series) == ("P30", "x")
    assert info.can(Capability.RFID)
    assert info.can(Capability.METER)
    assert info.can(Capability.PHASE_SWITCH)


def test_it_refuses_phase_switching_on_x_series_firmware_before_1_17() -> None:
    info = parse_product(P30X, "P30 v 1.16.0")

    assert not info.can(Capability.PHASE_SWITCH)


def test_it_reads_the_german_edition() -> None:
    info = parse_product(GERMAN, "P30 v 3.10.57")

    assert info.german_edition
    assert info.model == "P30"
    assert info.udp_supported
    assert "German edition" in info.label


def test_it_does_not_take_the_german_edition_for_a_b_series_without_udp() -> None:
    # Its version block EC220112 has "1" as 7th character, yet PROTOCOL.md section 5
    # gives the German edition the session log, currtime, start/stop and x2 over UDP.
    info = parse_product(GERMAN, "P30 v 3.10.57")

    assert "b-series" not in info.label
    assert "no UDP" not in info.note


def test_it_gives_the_german_edition_neither_meter_nor_display_nor_energy_limit() -> None:
    info = parse_product(GERMAN, "P30 v 3.10.57")

    assert not info.can(Capability.METER)
    assert not info.can(Capability.DISPLAY)
    assert not info.can(Capability.ENERGY_LIMIT)


def test_it_gives_the_german_edition_session_log_timer_and_remote_start() -> None:
    info = parse_product(GERMAN, "P30 v 3.10.57")

    assert info.can(Capability.SESSION_LOG)
    assert info.can(Capability.CURRENT_TIMER)
    assert info.can(Capability.REMOTE_START)


def test_it_reads_a_bmw_wallbox() -> None:
    info = parse_product(BMW, "P30 v 3.10.57")

    assert info.maker == "BMW"
    assert info.udp_supported
    assert "BMW" in info.label


def test_it_gives_a_bmw_wallbox_session_log_timer_and_remote_start() -> None:
    info = parse_product(BMW, "P30 v 3.10.57")

    assert info.can(Capability.SESSION_LOG)
    assert info.can(Capability.CURRENT_TIMER)
    assert info.can(Capability.ENERGY_LIMIT)
    assert info.can(Capability.REMOTE_START)


def test_it_gives_a_bmw_wallbox_neither_display_nor_phase_switch() -> None:
    info = parse_product(BMW, "P30 v 3.10.57")

    assert not info.can(Capability.DISPLAY)
    assert not info.can(Capability.PHASE_SWITCH)


def test_it_reads_a_p20() -> None:
    info = parse_product(P20, "KEBA P20 v 2.5a3 (160613-061001)")

    assert (info.maker, info.model, info.series) == ("KEBA", "P20", "c")
    assert info.udp_supported
    assert "P20" in info.label


def test_it_gives_a_p20_no_session_log_and_none_of_the_p30_commands() -> None:
    info = parse_product(P20, "KEBA P20 v 2.5a3 (160613-061001)")

    assert not info.can(Capability.SESSION_LOG)
    assert not info.can(Capability.CURRENT_TIMER)
    assert not info.can(Capability.ENERGY_LIMIT)
    assert not info.can(Capability.REMOTE_START)
    assert not info.can(Capability.DISPLAY)
    assert not info.can(Capability.PHASE_SWITCH)


def test_it_strips_the_padding_of_a_p20_product_string() -> None:
    info = parse_product("KC-P20-ES240010-000 ")

    assert info.product == "KC-P20-ES240010-000"


def test_it_recognises_a_p40_as_having_no_udp() -> None:
    info = parse_product("KC-P40-EC240422-E00")

    assert info.model == "P40"
    assert not info.udp_supported
    assert "Modbus" in info.note


def test_it_reads_product_strings_in_lower_case() -> None:
    info = parse_product(P30C.lower(), "P30 v 3.10.57")

    assert (info.model, info.series) == ("P30", "c")


@pytest.mark.parametrize(
    "product",
    ["", "   ", "hello", "KC-P30", "KC--EC240422-E00", "-P30-EC240422-E00", "KC P30 EC240422"],
)
def test_it_rejects_garbage_product_strings(product: str) -> None:
    with pytest.raises(Malformed, match="product string"):
        parse_product(product)


def test_it_rejects_an_unknown_maker_naming_it() -> None:
    with pytest.raises(Malformed, match="unknown maker 'XY'"):
        parse_product("XY-P30-EC240422-E00")


def test_it_rejects_an_unknown_model_naming_it() -> None:
    with pytest.raises(Malformed, match="unknown model 'P99'"):
        parse_product("KC-P99-EC240422-E00")


@pytest.mark.parametrize(
    ("firmware", "version"),
    [
        ("P30 v 3.10.57 (240521-093236)", (3, 10, 57)),
        ("KEBA P30 v 2.9.4", (2, 9, 4)),
        ("KEBA P20 v 2.01m11 (140610-073512)", (2, 1)),
        ("", ()),
        ("no version here", ()),
    ],
)
def test_it_reads_the_firmware_version(firmware: str, version: tuple[int, ...]) -> None:
    assert firmware_version(firmware) == version


def test_it_warns_that_a_p30_e_series_has_no_useful_udp() -> None:
    info = parse_product("KC-P30-ES240001-000")

    assert info.series == "e"
    assert "no UDP data interface" in info.note
