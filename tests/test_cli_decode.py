"""`manage.py keba decode` on datagrams captured from real stations."""

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

CAPTURES = Path(__file__).resolve().parent / "captures"


def decode(path: Path) -> Any:
    out = StringIO()
    call_command("keba", "decode", str(path), stdout=out)
    return json.loads(out.getvalue())


def documents(text: str) -> list[Any]:
    """The JSON documents printed one after the other."""
    decoder, found, position = json.JSONDecoder(), [], 0
    while text[position:].strip():
        value, end = decoder.raw_decode(text, position)
        found.append(value)
        position = end
        while position < len(text) and text[position].isspace():
            position += 1
    return found


def test_it_prints_meter_values_in_watts_and_kilowatt_hours() -> None:
    report = decode(CAPTURES / "p30c-report3.txt")
    assert report["kind"] == "report3"
    assert report["power_w"] == 5678.0
    assert report["session_energy_kwh"] == 6.5302
    assert report["total_energy_kwh"] == 774.7835
    assert report["current_1_a"] == 7.0


def test_it_prints_states_by_name() -> None:
    report = decode(CAPTURES / "p30c-report2-x2.txt")
    assert report["kind"] == "report2"
    assert report["state"] == "CHARGING"
    assert report["plug"] == "CAR_CONNECTED_LOCKED"
    assert report["user_current_a"] == 10.0


def test_it_prints_what_the_product_string_of_a_report_1_tells() -> None:
    report = decode(CAPTURES / "p30c-report1.txt")
    info = report["product_info"]
    assert report["kind"] == "report1"
    assert info["label"] == "P30 c-series"
    assert info["series"] == "c"
    assert info["udp_supported"] is True
    assert "current_timer" in info["capabilities"]
    assert "phase_switch" in info["capabilities"]
    assert report["udp_enabled"] is True


def test_it_decodes_the_dirty_json_of_the_guide() -> None:
    report = decode(CAPTURES / "guide-p20-report3.txt")
    assert report["kind"] == "report3"
    assert report["serial"] == "15017355"


def test_it_prints_acks_and_firmware_lines() -> None:
    out = StringIO()
    paths = [CAPTURES / "ack-err-x2.txt", CAPTURES / "p30-i.txt"]
    call_command("keba", "decode", *(str(p) for p in paths), stdout=out)
    ack, firmware = documents(out.getvalue())
    assert ack == {"kind": "ack", "ok": False, "text": "TCH-ERR:X2 : not allowed now"}
    assert firmware["firmware"] == "P30 v 3.10.27 (210105-174852)"


def test_it_names_the_invalid_file_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello station")
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 of 2 input"):
        call_command(
            "keba", "decode", str(bad), str(CAPTURES / "ack-ok.txt"), stdout=out, stderr=err
        )
    assert f"{bad}: not a KEBA message" in err.getvalue()
    assert json.loads(out.getvalue())["kind"] == "ack"


def test_it_explains_an_impossible_session_time_in_one_line(tmp_path: Path) -> None:
    report = tmp_path / "report100.txt"
    fields = {"ID": "100", "Session ID": 35, "started[s]": 99999999999999, "Sec": 534926}
    report.write_text(json.dumps(fields))
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 of 1 input"):
        call_command("keba", "decode", str(report), stdout=out, stderr=err)
    assert err.getvalue().strip() == (
        f"{report}: field 'started[s]' should be 0 to 4294967295 seconds, got 99999999999999"
    )
    assert out.getvalue() == ""
