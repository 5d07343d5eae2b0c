"""Typed, validated builders for every command of PROTOCOL.md section 3.

The API speaks amperes, kilowatt-hours and seconds; `Command.wire` is the
text the station expects (mA, 0.1 Wh). `parse_command` reads the wire text
back, with the same checks, for the command line and the emulator.
"""

import math
import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from .errors import InvalidValue, Unsupported
from .products import Capability, ProductInfo


class Reply(Enum):
    FIRMWARE = "firmware"  # the `"Firmware":"…"` line
    REPORT = "report"
    ACK = "ack"  # TCH-OK / TCH-ERR


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[int | str, ...] = ()

    @property
    def wire(self) -> str:
        return " ".join([self.name, *(str(a) for a in self.args)])

    @property
    def reply(self) -> Reply:
        if self.name == "i":
            return Reply.FIRMWARE
        if self.name == "report":
            return Reply.REPORT
        return Reply.ACK

    @property
    def report_id(self) -> int | None:
        return int(self.args[0]) if self.name == "report" else None

    @property
    def idempotent(self) -> bool:
        """Safe to send again when the reply was lost."""
        return self.name not in ("start", "stop", "unlock", "x2")

    @property
    def required_capability(self) -> Capability | None:
        if self.name == "report" and int(self.args[0]) >= 100:
            return Capability.SESSION_LOG
        return REQUIRED_CAPABILITY.get(self.name)

    def __str__(self) -> str:
        return self.wire


REQUIRED_CAPABILITY = {
    "currtime": Capability.CURRENT_TIMER,
    "setenergy": Capability.ENERGY_LIMIT,
    "start": Capability.REMOTE_START,
    "stop": Capability.REMOTE_START,
    "display": Capability.DISPLAY,
    "setdatetime": Capability.CLOCK,
    "x2src": Capability.PHASE_SWITCH,
    "x2": Capability.PHASE_SWITCH,
}

MIN_CURRENT_MA = 6000
MAX_CURRENT_MA = 63000
MAX_CURRTIME_DELAY_S = 860400
MAX_ENERGY_WIRE = 999_999_999
MAX_DISPLAY_TEXT = 23
NO_TAG = "0" * 16


def check_supported(command: Command, product: ProductInfo) -> None:
    """Raise Unsupported, naming the model, before anything is sent."""
    needed = command.required_capability
    if not product.udp_supported:
        raise Unsupported(f"{product.label} cannot be used over UDP: {product.note}")
    if needed is not None and not product.can(needed):
        raise Unsupported(f"{product.label} ({product.product}) does not support `{command.name}`")


def _whole(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"{what} must be a number, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise InvalidValue(f"{what} must be a whole number, got {value!r}")
    return int(value)


def _current_ma(milliamps: int, what: str, allow_zero: bool) -> int:
    if allow_zero and milliamps == 0:
        return 0
    if not MIN_CURRENT_MA <= milliamps <= MAX_CURRENT_MA:
        zero = "0 or " if allow_zero else ""
        raise InvalidValue(
            f"{what} must be {zero}6 to 63 A ({zero}6000-63000 mA), got {milliamps / 1000:g} A"
        )
    return milliamps


def _finite(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValue(f"{what} must be a finite number, got {value!r}")
    return value


def _amps_to_ma(amps: float, what: str, allow_zero: bool) -> int:
    amps = _finite(amps, f"{what} in amperes")
    if abs(amps) > MAX_CURRENT_MA:  # far out of range; also keeps the product finite
        raise InvalidValue(f"{what} must be 6 to 63 A, got {amps:g} A")
    return _current_ma(round(amps * 1000), what, allow_zero)


def _in_range(value: int, low: int, high: int, what: str) -> int:
    if not low <= value <= high:
        raise InvalidValue(f"{what} must be {low} to {high}, got {value}")
    return value


def normalise_tag(tag: str, length: int = 16, what: str = "RFID tag") -> str:
    """Upper-case hex of `length` digits; shorter tags are zero-padded on the right."""
    text = tag.strip().replace(" ", "").replace(":", "")
    if text.lower().startswith("0x"):
        text = text[2:]
    if not text or not re.fullmatch(r"[0-9A-Fa-f]+", text):
        raise InvalidValue(f"{what} must be hexadecimal (0-9, A-F), got {tag!r}")
    if len(text) > length:
        raise InvalidValue(f"{what} must be at most {length} hex digits, got {len(text)}")
    return text.upper().ljust(length, "0")


# Builders: user units in, wire command out.


def identify() -> Command:
    return Command("i")


def report(report_id: int) -> Command:
    if report_id not in (1, 2, 3) and not 100 <= report_id <= 130:
        raise InvalidValue(f"report must be 1, 2, 3 or 100-130, got {report_id}")
    return Command("report", (report_id,))


def enable(on: bool) -> Command:
    return Command("ena", (1 if on else 0,))


def set_current(amps: float) -> Command:
    """`curr`: permanent until reboot; prefer `set_current_timed` for regulation."""
    return Command("curr", (_amps_to_ma(amps, "current", allow_zero=False),))


def set_current_timed(amps: float, delay_s: int = 1) -> Command:
    ma = _amps_to_ma(amps, "current", allow_zero=True)
    delay = _whole(delay_s, "delay")
    if delay != 0:
        _in_range(delay, 1, MAX_CURRTIME_DELAY_S, "delay in seconds")
    return Command("currtime", (ma, delay))


def set_energy(kwh: float) -> Command:
    """Energy cap of the running or next session; 0 switches it off."""
    kwh = _finite(kwh, "energy in kWh")
    if kwh < 0:
        raise InvalidValue(f"energy must be 0 (off) or a positive number of kWh, got {kwh!r}")
    if kwh * 10000 > MAX_ENERGY_WIRE:
        raise InvalidValue(f"energy in 0.1 Wh must be 0 to {MAX_ENERGY_WIRE}, got {kwh:g} kWh")
    wire = round(kwh * 10000)
    if kwh > 0 and wire == 0:
        raise InvalidValue(f"energy must be at least 0.0001 kWh, got {kwh!r}")
    return Command("setenergy", (_in_range(wire, 0, MAX_ENERGY_WIRE, "energy in 0.1 Wh"),))


def set_output(value: int) -> Command:
    n = _whole(value, "output")
    if n not in (0, 1) and not 10 <= n <= 150:
        raise InvalidValue(f"output must be 0, 1 or 10-150 pulses per kWh, got {n}")
    return Command("output", (n,))


def start(tag: str, tag_class: str = "0" * 20) -> Command:
    return Command("start", (normalise_tag(tag), normalise_tag(tag_class, 20, "RFID class")))


def stop(tag: str) -> Command:
    return Command("stop", (normalise_tag(tag),))


def set_datetime(when: datetime | int) -> Command:
    seconds = int(when.timestamp()) if isinstance(when, datetime) else _whole(when, "time")
    return Command("setdatetime", (_in_range(seconds, 0, 2**32 - 1, "Unix time"),))


def display(text: str, min_s: int = 0, max_s: int = 0) -> Command:
    """Show text; with both durations 0 the station uses its defaults."""
    if len(text) > MAX_DISPLAY_TEXT:
        raise InvalidValue(f"display text must be at most 23 characters, got {len(text)}")
    if not text.isascii() or not text.isprintable() or "$" in text:
        raise InvalidValue("display text must be printable ASCII without '$'")
    low = _in_range(_whole(min_s, "minimum time"), 0, 65535, "minimum display time (s)")
    high = _in_range(_whole(max_s, "maximum time"), 0, 65535, "maximum display time (s)")
    use_times = 1 if (low or high) else 0
    return Command("display", (use_times, low, high, 0, text.replace(" ", "$")))


def unlock() -> Command:
    return Command("unlock")


def failsafe(timeout_s: int, amps: float = 0, persist: bool = False) -> Command:
    t = _whole(timeout_s, "failsafe timeout")
    if t != 0:
        _in_range(t, 10, 600, "failsafe timeout (s)")
    ma = _amps_to_ma(amps, "failsafe current", allow_zero=True)
    return Command("failsafe", (t, ma, 1 if persist else 0))


def set_phase_switch_source(source: int) -> Command:
    return Command("x2src", (_in_range(_whole(source, "x2src"), 0, 4, "x2src"),))


def switch_phases(three_phases: bool) -> Command:
    return Command("x2", (1 if three_phases else 0,))


# Parsing wire text, with the same rules.


def _ints(name: str, words: list[str], count: int) -> list[int]:
    if len(words) != count:
        raise InvalidValue(f"`{name}` takes {count} number(s), got {len(words)}")
    try:
        return [int(w) for w in words]
    except ValueError:
        raise InvalidValue(f"`{name}` takes whole numbers, got {' '.join(words)!r}") from None


def parse_command(text: str) -> Command:
    """Read a command as KEBA's guide writes it, e.g. `currtime 10000 60`."""
    words = text.strip().split()
    if not words:
        raise InvalidValue("empty command")
    name, rest = words[0].lower(), words[1:]
    if name == "i" and not rest:
        return identify()
    if name == "report":
        return report(*_ints(name, rest, 1))
    if name == "ena":
        (value,) = _ints(name, rest, 1)
        if value not in (0, 1):
            raise InvalidValue(f"ena must be 0 or 1, got {value}")
        return enable(bool(value))
    if name == "curr":
        (ma,) = _ints(name, rest, 1)
        return Command("curr", (_current_ma(ma, "current", allow_zero=False),))
    if name == "currtime":
        ma, delay = _ints(name, rest, 2)
        _current_ma(ma, "current", allow_zero=True)
        return set_current_timed(ma / 1000, delay)
    if name == "setenergy":
        (wire,) = _ints(name, rest, 1)
        return Command("setenergy", (_in_range(wire, 0, MAX_ENERGY_WIRE, "energy in 0.1 Wh"),))
    if name == "output":
        return set_output(*_ints(name, rest, 1))
    if name == "start" and len(rest) in (1, 2):
        return start(*rest)
    if name == "stop" and len(rest) == 1:
        return stop(rest[0])
    if name == "setdatetime":
        return set_datetime(*_ints(name, rest, 1))
    if name == "display" and len(rest) >= 4:
        flag, low, high, _tk = _ints(name, rest[:4], 4)
        text = " ".join(rest[4:]).replace("$", " ")
        if flag not in (0, 1):
            raise InvalidValue(f"display's first number must be 0 or 1, got {flag}")
        command = display(text, low, high)
        return Command("display", (flag, *command.args[1:]))
    if name == "unlock" and not rest:
        return unlock()
    if name == "failsafe":
        t, ma, persist = _ints(name, rest, 3)
        if persist not in (0, 1):
            raise InvalidValue(f"failsafe persist must be 0 or 1, got {persist}")
        _current_ma(ma, "failsafe current", allow_zero=True)
        return failsafe(t, ma / 1000, bool(persist))
    if name == "x2src":
        return set_phase_switch_source(*_ints(name, rest, 1))
    if name == "x2":
        (value,) = _ints(name, rest, 1)
        if value not in (0, 1):
            raise InvalidValue(f"x2 must be 0 (one phase) or 1 (three phases), got {value}")
        return switch_phases(bool(value))
    raise InvalidValue(f"unknown command or wrong arguments: {text.strip()!r}")
