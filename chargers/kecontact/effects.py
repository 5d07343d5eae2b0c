"""What report 2 proves about a command the station acknowledged.

TCH-OK only confirms receipt (PROTOCOL.md section 1): a setting took effect
when report 2 shows it. Some commands leave no trace there, and a P20 lacks
several fields; then nothing is proven, and the verdict says so.
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .codec import Report2
from .commands import Command


class Proof(Enum):
    SHOWN = "shown"  # report 2 shows the effect
    DIFFERS = "differs"  # report 2 shows something else
    NOT_SHOWN = "not shown"  # report 2 cannot show it


@dataclass(frozen=True)
class Verdict:
    proof: Proof
    detail: str


Value = bool | int | float


@dataclass(frozen=True)
class _Expected:
    field: str  # as report 2 names it
    seen: Value | None
    wanted: Value
    unit: str = ""
    at_most: bool = False  # a countdown: anything up to `wanted` is the command's

    @property
    def met(self) -> bool:
        assert self.seen is not None
        return self.seen <= self.wanted if self.at_most else self.seen == self.wanted

    def shown(self) -> str:
        return f"{self.field} = {_with_unit(self.seen, self.unit)}"

    def mismatch(self) -> str:
        wanted = _with_unit(self.wanted, self.unit)
        return f"{self.shown()} instead of {'at most ' if self.at_most else ''}{wanted}"


def _with_unit(value: Value | None, unit: str) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    text = f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    if unit == "phases" and value == 1:
        unit = "phase"
    return f"{text} {unit}" if unit else text


def _number(command: Command, index: int) -> int:
    return int(command.args[index])


def _amps(command: Command, index: int) -> float:
    return _number(command, index) / 1000  # the codec's own mA conversion, so equal compares


# What report 2 shows after each command. `currtime <mA> <s>` shows the new
# limit in Curr timer at once and counts Tmo CT down from <s> (the emulator
# does the same); a larger Tmo CT is an older timer still running.
_EFFECTS: dict[str, Callable[[Command, Report2], tuple[_Expected, ...]]] = {
    "curr": lambda c, r: (_Expected("Curr user", r.user_current_a, _amps(c, 0), "A"),),
    "currtime": lambda c, r: (
        _Expected("Curr timer", r.timer_current_a, _amps(c, 0), "A"),
        _Expected("Tmo CT", r.timer_seconds_left, _number(c, 1), "s", at_most=True),
    ),
    "setenergy": lambda c, r: (
        _Expected("Setenergy", r.energy_limit_kwh, _number(c, 0) / 10000, "kWh"),
    ),
    "ena": lambda c, r: (_Expected("Enable user", r.enabled_user, _number(c, 0) == 1),),
    "output": lambda c, r: (_Expected("Output", r.output, _number(c, 0)),),
    "x2src": lambda c, r: (_Expected("X2 phaseSwitch source", r.x2_source, _number(c, 0)),),
    "x2": lambda c, r: (
        _Expected("X2 phaseSwitch", r.phases, 3 if _number(c, 0) else 1, "phases"),
    ),
    "failsafe": lambda c, r: (
        _Expected("Tmo FS", r.failsafe_timeout_s, _number(c, 0), "s"),
        _Expected("Curr FS", r.failsafe_current_a, _amps(c, 1), "A"),
    ),
}


def shows_effect(command: Command) -> bool:
    """True when report 2 has a field for this command at all."""
    return command.name in _EFFECTS


def effect_in_report2(command: Command, status: Report2) -> Verdict:
    effect = _EFFECTS.get(command.name)
    if effect is None:
        return Verdict(Proof.NOT_SHOWN, f"report 2 cannot show the effect of `{command.name}`")
    expected = effect(command, status)
    present = [e for e in expected if e.seen is not None]
    wrong = [e for e in present if not e.met]
    if wrong:
        return Verdict(Proof.DIFFERS, "report 2 shows " + ", ".join(e.mismatch() for e in wrong))
    missing = [e.field for e in expected if e.seen is None]
    if missing:
        # A field the model does not report proves nothing, whatever else matches.
        return Verdict(
            Proof.NOT_SHOWN,
            f"report 2 of this station has no {' or '.join(missing)}, "
            f"so it cannot show the effect of `{command.name}`",
        )
    return Verdict(Proof.SHOWN, "report 2 shows " + ", ".join(e.shown() for e in expected))
