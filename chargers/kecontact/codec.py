"""Datagrams to typed messages: no I/O, units converted here and nowhere else.

Wire units are mA, 0.1 Wh, mW and 0.1 %; the values here are A, kWh, W and %.
Old firmware sends dirty JSON (trailing commas, bare members, padded strings,
numbers beyond uint32): tolerated. Anything else raises `Malformed` saying why,
and a value no station can report (`PLAUSIBLE`) raises its `ImpossibleValue`:
the whole message is refused. Decode raises nothing else.
"""

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from enum import IntEnum
from typing import Any

from .commands import MAX_CURRENT_MA, MAX_CURRTIME_DELAY_S, MAX_ENERGY_WIRE
from .errors import ImpossibleValue, Malformed
from .products import ProductInfo, parse_product

MAX_DATAGRAM = 4096  # real replies are at most 512 bytes
UDP_ENABLED_BIT = 0x20  # DIP-Sw1, DSW1.3
# Old firmware exceeds uint32 (the guide's `Sec` of 4294967296), but nothing
# a station means needs more than a signed 64-bit integer, which is also what
# a database column holds.
MAX_WIRE_NUMBER = 2**63 - 1
# A session time is seconds since boot or a Unix time of the station's clock,
# which `setdatetime` sets as a 32-bit value: anything larger is not a time.
MAX_SESSION_SECONDS = 2**32 - 1


@dataclass(frozen=True)
class Plausible:
    """What a KEBA can report in one field: a range in wire units, shown in the user's."""

    name: str  # as the guide spells it
    low: int
    high: int
    per_unit: int = 1  # wire units in one `unit`: 1000 mA in an A
    unit: str = ""

    def number(self, wire: int) -> str:
        # Exact and without an exponent (never 4.6e+14): a datagram holds no
        # more digits than this precision. Cut short like `_brief`.
        with localcontext(prec=MAX_DATAGRAM):
            text = format(Decimal(wire) / self.per_unit, "f")
        return text if len(text) <= 40 else f"{text[:37]}..."

    def shown(self, wire: int) -> str:
        return f"{self.number(wire)} {self.unit}" if self.unit else self.number(wire)

    def check(self, where: str, wire: int) -> int:
        if self.low <= wire <= self.high:
            return wire
        allowed = f"{self.number(self.low)} to {self.shown(self.high)}"
        raise ImpossibleValue(
            f"{where}: {self.name} {self.shown(wire)} is outside {allowed}",
            summary=f"{where}: {self.name} is outside {allowed}",
            field=self.name,
        )


# What a KEBA can report, per field, from the guide's ranges (PROTOCOL.md 3, 4).
# A settable current is capped where the guide's commands cap it (63 A, the
# default `Curr user`), though the hardware stops at 32 A. Measurements get
# room beyond any real station, so that only a fault is refused, never a
# reading: the guide's example report 3 prints 99999 mA and 99999999 mW as
# its widest values. Error codes, `reason`, `Backend` and `setBoot` are not
# bounded: a code we do not know must still reach the user. `Sec` and the
# session times are checked as seconds (`_Fields.seconds`), `State` and `Plug`
# as enumerations.
LIFETIME_ENERGY_WIRE = 10**11  # 10 GWh: a 22 kW station charging non-stop for 50 years
PLAUSIBLE = {
    p.name.lower(): p
    for p in [
        # Report 1
        Plausible("COM-module", 0, 1),
        Plausible("timeQ", 0, 3),
        Plausible("DIP-Sw1", 0, 0xFF),  # eight switches a bank
        Plausible("DIP-Sw2", 0, 0xFF),
        # Report 2
        Plausible("AuthON", 0, 1),
        Plausible("Authreq", 0, 1),
        Plausible("Enable sys", 0, 1),
        Plausible("Enable user", 0, 1),
        Plausible("Max curr", 0, MAX_CURRENT_MA, 1000, "A"),
        Plausible("Max curr %", 0, 1000, 10, "%"),
        Plausible("Curr HW", 0, MAX_CURRENT_MA, 1000, "A"),
        Plausible("Curr user", 0, MAX_CURRENT_MA, 1000, "A"),
        Plausible("Curr FS", 0, MAX_CURRENT_MA, 1000, "A"),
        Plausible("Tmo FS", 0, 600, 1, "s"),  # failsafe: 0 (off) or 10-600 s
        Plausible("Curr timer", 0, MAX_CURRENT_MA, 1000, "A"),
        Plausible("Tmo CT", 0, MAX_CURRTIME_DELAY_S, 1, "s"),
        Plausible("Setenergy", 0, MAX_ENERGY_WIRE, 10000, "kWh"),
        Plausible("Output", 0, 150),  # 0, 1 or 10-150 pulses per kWh
        Plausible("Input", 0, 1),
        Plausible("X2 phaseSwitch source", 0, 4),
        Plausible("X2 phaseSwitch", 0, 3),  # 0/1, as some peers see it 1/3
        # Report 3
        Plausible("U1", 0, 500, 1, "V"),  # 230 V mains, 400 V between phases
        Plausible("U2", 0, 500, 1, "V"),
        Plausible("U3", 0, 500, 1, "V"),
        Plausible("I1", 0, 100_000, 1000, "A"),
        Plausible("I2", 0, 100_000, 1000, "A"),
        Plausible("I3", 0, 100_000, 1000, "A"),
        Plausible("P", 0, 100_000_000, 1000, "W"),
        Plausible("PF", 0, 1000, 10, "%"),
        Plausible("E pres", 0, LIFETIME_ENERGY_WIRE, 10000, "kWh"),
        Plausible("E total", 0, LIFETIME_ENERGY_WIRE, 10000, "kWh"),
        # Reports 100-130
        Plausible("Session ID", 0, MAX_WIRE_NUMBER),
        Plausible("E start", 0, LIFETIME_ENERGY_WIRE, 10000, "kWh"),
    ]
}


class ChargingState(IntEnum):
    STARTING = 0
    NOT_READY = 1
    READY = 2
    CHARGING = 3
    ERROR = 4
    INTERRUPTED = 5


class PlugState(IntEnum):
    UNPLUGGED = 0
    CABLE_IN_STATION = 1
    CABLE_LOCKED = 3
    CAR_CONNECTED = 5
    CAR_CONNECTED_LOCKED = 7

    @property
    def car_connected(self) -> bool:
        return self in (PlugState.CAR_CONNECTED, PlugState.CAR_CONNECTED_LOCKED)

    @property
    def locked(self) -> bool:
        return self in (PlugState.CABLE_LOCKED, PlugState.CAR_CONNECTED_LOCKED)


class EndReason(IntEnum):
    RUNNING = 0
    UNPLUGGED = 1
    INTERRUPTED = 5
    DEAUTHORIZED = 10


@dataclass(frozen=True)
class Firmware:
    """The reply to `i`."""

    firmware: str


@dataclass(frozen=True)
class Ack:
    """TCH-OK (receipt only: verify the effect in report 2) or TCH-ERR."""

    ok: bool
    text: str


@dataclass(frozen=True)
class Started:
    """The line some firmware sends after boot."""

    text: str


@dataclass(frozen=True)
class Report1:
    product: str
    serial: str
    firmware: str
    com_module: bool | None = None
    backend: int | None = None
    clock_quality: int | None = None  # timeQ 0-3
    set_boot: int | None = None
    dip_switch_1: int | None = None
    dip_switch_2: int | None = None
    uptime_s: int | None = None
    product_info: ProductInfo | None = None

    report_id = 1

    @property
    def udp_enabled(self) -> bool | None:
        """DSW1.3; None when the firmware does not report the switches."""
        if self.dip_switch_1 is None:
            return None
        return bool(self.dip_switch_1 & UDP_ENABLED_BIT)


@dataclass(frozen=True)
class Report2:
    state: ChargingState | None = None
    error_1: int | None = None
    error_2: int | None = None
    plug: PlugState | None = None
    auth_on: bool | None = None
    auth_required: bool | None = None
    enabled_sys: bool | None = None
    enabled_user: bool | None = None
    offered_current_a: float | None = None  # Max curr
    duty_cycle_percent: float | None = None  # Max curr %
    hardware_current_a: float | None = None
    user_current_a: float | None = None
    failsafe_current_a: float | None = None
    failsafe_timeout_s: int | None = None
    timer_current_a: float | None = None
    timer_seconds_left: int | None = None
    energy_limit_kwh: float | None = None
    output: int | None = None
    input: int | None = None
    x2_source: int | None = None
    x2_phase_switch: int | None = None
    serial: str | None = None
    uptime_s: int | None = None

    report_id = 2

    @property
    def phases(self) -> int | None:
        """Phases selected with x2: 0 means one; 1 (or 3, as some peers see it) three."""
        if self.x2_phase_switch is None:
            return None
        return 1 if self.x2_phase_switch == 0 else 3


@dataclass(frozen=True)
class Report3:
    voltage_1_v: int | None = None
    voltage_2_v: int | None = None
    voltage_3_v: int | None = None
    current_1_a: float | None = None
    current_2_a: float | None = None
    current_3_a: float | None = None
    power_w: float | None = None
    power_factor_percent: float | None = None
    session_energy_kwh: float | None = None
    total_energy_kwh: float | None = None
    serial: str | None = None
    uptime_s: int | None = None

    report_id = 3


@dataclass(frozen=True)
class SessionReport:
    """Reports 100-130: 100 is the running or latest session, 101-130 older ones."""

    report_id: int
    session_id: int | None = None
    hardware_current_a: float | None = None
    start_energy_kwh: float | None = None
    session_energy_kwh: float | None = None
    started_s: int | None = None
    ended_s: int | None = None
    started_text: str | None = None
    ended_text: str | None = None
    reason: int | None = None
    clock_quality: int | None = None
    rfid_tag: str | None = None
    rfid_class: str | None = None
    serial: str | None = None
    uptime_s: int | None = None

    @property
    def is_empty(self) -> bool:
        """After a reboot the log reads as zeros until new sessions happen."""
        return not self.session_id

    @property
    def is_running(self) -> bool:
        return not self.is_empty and self.reason == EndReason.RUNNING and not self.ended_s

    def started_at(self, received_at: datetime | None = None) -> datetime | None:
        return _session_time(self, self.started_s, self.started_text, received_at)

    def ended_at(self, received_at: datetime | None = None) -> datetime | None:
        if self.is_running:
            return None
        return _session_time(self, self.ended_s, self.ended_text, received_at)


@dataclass(frozen=True)
class StatusUpdate:
    """An unsolicited message (no ID) a P30 sends when something changes."""

    state: ChargingState | None = None
    plug: PlugState | None = None
    input: int | None = None
    enabled_sys: bool | None = None
    offered_current_a: float | None = None
    session_energy_kwh: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Report = Report1 | Report2 | Report3 | SessionReport
Message = Firmware | Ack | Started | Report | StatusUpdate


def _session_time(
    session: SessionReport, seconds: int | None, text: str | None, received_at: datetime | None
) -> datetime | None:
    """PROTOCOL.md section 4: the guide says seconds since boot, real stations
    send epoch values; a value beyond the uptime can only be epoch. A synced
    clock (timeQ > 0) makes the text timestamp trustworthy.

    Never raises: decode already rejected seconds that cannot be a time, and
    what is left to go wrong (a text that does not parse, an uptime so large
    that counting back leaves the calendar) makes this one time unknown, not
    the whole report unreadable."""
    if session.is_empty:
        return None
    if text and session.clock_quality and not text.startswith(("0000", "1970")):
        try:
            return datetime.strptime(text.strip()[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        except ValueError:
            pass  # firmware placeholders and garbage: fall back to the seconds
    if not seconds or session.uptime_s is None:
        return None
    if seconds > session.uptime_s:
        return datetime.fromtimestamp(seconds, UTC)  # at most 2**32 - 1: in range
    if received_at is not None:
        return seconds_before(received_at, session.uptime_s - seconds)
    return None


def seconds_before(when: datetime, seconds: float) -> datetime | None:
    """`when` less a count of seconds from a station (an uptime, say); None
    when an absurd count would leave the calendar (or is not a number at all)."""
    try:
        return when - timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        return None


# Field readers: every wrong type becomes Malformed, never another exception.


class _Fields:
    def __init__(self, raw: dict[str, Any]) -> None:
        # Peers saw padded and differently cased keys ("E Start   ", "reason ").
        self.values = {key.strip().lower(): value for key, value in raw.items()}
        self.where = "message"  # "report 3", "status message": for error texts

    def has(self, key: str) -> bool:
        return key in self.values

    def number(self, key: str) -> int | None:
        value = self.values.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip()
            try:
                number = int(text, 16) if text.lower().startswith("0x") else int(text)
            except ValueError:
                raise self._not_a_number(key, value) from None
            return self._in_range(key, number)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._not_a_number(key, value)
        if isinstance(value, float) and not value.is_integer():
            raise Malformed(
                f"field {key!r} should be a whole number, got {value!r}",
                summary=f"field {key!r} should be a whole number",
            )
        return self._in_range(key, int(value))

    def _not_a_number(self, key: str, value: object) -> Malformed:
        return Malformed(
            f"field {key!r} should be a number, got {_brief(value)}",
            summary=f"field {key!r} should be a number",
        )

    def _in_range(self, key: str, number: int) -> int:
        plausible = PLAUSIBLE.get(key)
        if plausible is not None:
            return plausible.check(self.where, number)
        # Larger values are no reading, could not be stored, and converting
        # them to A or kWh would overflow a float.
        if abs(number) > MAX_WIRE_NUMBER:
            raise ImpossibleValue(
                f"field {key!r} is out of range, got {_brief(number)}",
                summary=f"field {key!r} is out of range",
                field=key,
            )
        return number

    def seconds(self, key: str, most: int = MAX_WIRE_NUMBER) -> int | None:
        """A count of seconds: never negative, at most `most`."""
        value = self.number(key)
        if value is not None and not 0 <= value <= most:
            raise ImpossibleValue(
                f"field {key!r} should be 0 to {most} seconds, got {value}",
                summary=f"field {key!r} should be 0 to {most} seconds",
                field=key,
            )
        return value

    def scaled(self, key: str) -> float | None:
        """A number in the user's unit (A, kWh, W, %), as `PLAUSIBLE` says."""
        value = self.number(key)
        return None if value is None else value / PLAUSIBLE[key].per_unit

    def flag(self, key: str) -> bool | None:
        value = self.number(key)
        return None if value is None else value != 0

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise Malformed(f"field {key!r} should be text, got {_brief(value)}")
        return str(value).strip()

    def enum(self, key: str, kind: type[IntEnum]) -> Any:
        value = self.number(key)
        if value is None:
            return None
        try:
            return kind(value)
        except ValueError:
            raise ImpossibleValue(
                f"field {key!r} has unknown value {value}",
                summary=f"field {key!r} has an unknown value",
                field=key,
            ) from None

    def tag(self, key: str) -> str | None:
        text = self.text(key)
        if not text or set(text) <= {"0"}:
            return None  # all zeros or empty: no card
        return text.upper()


def _brief(value: object) -> str:
    """A value for an error message, cut short: a datagram may hold 4 kB of digits."""
    try:
        text = repr(value)
    except ValueError:  # an int of over 4300 digits, which 4 kB of hex text can make
        text = hex(value) if isinstance(value, int) else "?"
    return text if len(text) <= 40 else f"{text[:37]}..."


def _to_object(text: str) -> dict[str, Any]:
    body = text.strip()
    if not body.startswith("{"):
        body = "{" + body.rstrip(",") + "}"  # bare members, as `i` answers
    body = re.sub(r",\s*}\s*$", "}", body)  # trailing comma before the brace
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise Malformed(f"not KEBA JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise Malformed("not KEBA JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise Malformed(f"expected a JSON object, got {type(value).__name__}")
    return value


def _reject_constant(name: str) -> Any:
    raise Malformed(f"not KEBA JSON: {name} is not a number")


def decode(data: bytes) -> Message:
    """Turn one datagram into a typed message, or raise Malformed."""
    if not data:
        raise Malformed("empty datagram")
    if len(data) > MAX_DATAGRAM:
        raise Malformed(f"datagram of {len(data)} bytes is too long for KEBA")
    text = data.decode("latin-1").strip("\x00 \t\r\n")
    if text.startswith("TCH-OK"):
        return Ack(True, text)
    if text.startswith("TCH-ERR"):
        return Ack(False, text)
    if text.lower().startswith("started"):
        return Started(text)
    if text.startswith("["):
        raise Malformed("expected a JSON object, got an array")
    if not text.startswith(("{", '"')):
        raise Malformed(f"not a KEBA message: {text[:40]!r}")
    fields = _Fields(_to_object(text))
    if fields.has("id"):
        return _decode_report(fields)
    if fields.has("firmware") and len(fields.values) == 1:
        firmware = fields.text("firmware")
        return Firmware(firmware or "")
    return _decode_status(fields)


def _decode_report(f: _Fields) -> Report:
    report_id = f.number("id")
    f.where = f"report {report_id}"
    if report_id == 1:
        return _decode_report1(f)
    if report_id == 2:
        return Report2(
            state=f.enum("state", ChargingState),
            error_1=f.number("error1"),
            error_2=f.number("error2"),
            plug=f.enum("plug", PlugState),
            auth_on=f.flag("authon"),
            auth_required=f.flag("authreq"),
            enabled_sys=f.flag("enable sys"),
            enabled_user=f.flag("enable user"),
            offered_current_a=f.scaled("max curr"),
            duty_cycle_percent=f.scaled("max curr %"),
            hardware_current_a=f.scaled("curr hw"),
            user_current_a=f.scaled("curr user"),
            failsafe_current_a=f.scaled("curr fs"),
            failsafe_timeout_s=f.number("tmo fs"),
            timer_current_a=f.scaled("curr timer"),
            timer_seconds_left=f.number("tmo ct"),
            energy_limit_kwh=f.scaled("setenergy"),
            output=f.number("output"),
            input=f.number("input"),
            x2_source=f.number("x2 phaseswitch source"),
            x2_phase_switch=f.number("x2 phaseswitch"),
            serial=f.text("serial"),
            uptime_s=f.seconds("sec"),
        )
    if report_id == 3:
        return Report3(
            voltage_1_v=f.number("u1"),
            voltage_2_v=f.number("u2"),
            voltage_3_v=f.number("u3"),
            current_1_a=f.scaled("i1"),
            current_2_a=f.scaled("i2"),
            current_3_a=f.scaled("i3"),
            power_w=f.scaled("p"),
            power_factor_percent=f.scaled("pf"),
            session_energy_kwh=f.scaled("e pres"),
            total_energy_kwh=f.scaled("e total"),
            serial=f.text("serial"),
            uptime_s=f.seconds("sec"),
        )
    if report_id is not None and 100 <= report_id <= 130:
        return SessionReport(
            report_id=report_id,
            session_id=f.number("session id"),
            hardware_current_a=f.scaled("curr hw"),
            start_energy_kwh=f.scaled("e start"),
            session_energy_kwh=f.scaled("e pres"),
            started_s=f.seconds("started[s]", MAX_SESSION_SECONDS),
            ended_s=f.seconds("ended[s]", MAX_SESSION_SECONDS),
            started_text=f.text("started"),
            ended_text=f.text("ended"),
            reason=f.number("reason"),
            clock_quality=f.number("timeq"),
            rfid_tag=f.tag("rfid tag"),
            rfid_class=f.tag("rfid class"),
            serial=f.text("serial"),
            uptime_s=f.seconds("sec"),
        )
    raise Malformed(f"unknown report ID {report_id}")


def _decode_report1(f: _Fields) -> Report1:
    product, serial, firmware = f.text("product"), f.text("serial"), f.text("firmware")
    if not product or not serial or not firmware:
        given = {"Product": product, "Serial": serial, "Firmware": firmware}
        missing = [name for name, value in given.items() if not value]
        raise Malformed(f"report 1 lacks {', '.join(missing)}")
    dip = f.number("dip-sw1")
    if dip is None:
        dip = f.number("dip-sw")  # the BMW wallbox has a single DIP field
    return Report1(
        product=product,
        serial=serial,
        firmware=firmware,
        com_module=f.flag("com-module"),
        backend=f.number("backend"),
        clock_quality=f.number("timeq"),
        set_boot=f.number("setboot"),
        dip_switch_1=dip,
        dip_switch_2=f.number("dip-sw2"),
        uptime_s=f.seconds("sec"),
        product_info=parse_product(product, firmware),
    )


STATUS_KEYS = {"state", "plug", "input", "enable sys", "max curr", "e pres"}


def _decode_status(f: _Fields) -> StatusUpdate:
    f.where = "status message"
    known = STATUS_KEYS & f.values.keys()
    if not known:
        keys = ", ".join(sorted(f.values)) or "none"
        raise Malformed(f"message has no ID and no status field (keys: {keys})")
    return StatusUpdate(
        state=f.enum("state", ChargingState),
        plug=f.enum("plug", PlugState),
        input=f.number("input"),
        enabled_sys=f.flag("enable sys"),
        offered_current_a=f.scaled("max curr"),
        session_energy_kwh=f.scaled("e pres"),
        extra={k: v for k, v in f.values.items() if k not in STATUS_KEYS},
    )
