"""Desired state against report 2: which commands to write, without flapping.

Pure: the gateway passes the last report 2, what the station can do, the safe
fallback and the commands recently written for the station; `plan` returns
the commands that would close each difference. A difference already being
handled (a command pending or sent), refused lately, or answered a moment ago
gets no second command, so a station that will not follow is not hammered.

But a station that undoes what it was told is news, not a flap: a command that
went through is sent again as soon as a report 2 read after it shows otherwise
(a reboot, a re-plug, someone at the station), and a refused one once the
station restarted or a car came or went.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from chargers.kecontact.codec import Report2

from .desired import FULL_SPEED_A, DesiredState

IN_FLIGHT = ("pending", "sent")
GAVE_UP = ("refused", "failed", "expired")
REFUSED_QUIET_S = 600.0  # a refused command is not tried again for this long
DONE_QUIET_S = 30.0  # nor one that just went through, until a later report 2 shows otherwise
# Something at the station that undoes a command each time (another program) would get
# one every poll: after this many in REFUSED_QUIET_S, DONE_QUIET_S holds again.
UNDONE_AT_MOST = 3
CURRENT_TOLERANCE_A = 0.0005
ENERGY_TOLERANCE_KWH = 0.00005


class Aspect(Enum):
    ENABLE = "enable"
    CURRENT = "current"
    ENERGY = "energy"
    FAILSAFE = "failsafe"
    KEEP_ALIVE = "keep-alive"


ASPECT_OF_COMMAND = {
    "ena": Aspect.ENABLE,
    "curr": Aspect.CURRENT,
    "currtime": Aspect.CURRENT,
    "setenergy": Aspect.ENERGY,
    "failsafe": Aspect.FAILSAFE,
}
# A `curr`, `currtime` or `ena` resets the station's failsafe timer (KEBA's guide).
FEEDS_FAILSAFE = frozenset({"ena", "curr", "currtime"})


@dataclass(frozen=True)
class Abilities:
    current_timer: bool  # `currtime` (not on a P20)
    energy_limit: bool  # `setenergy`


@dataclass(frozen=True)
class FallbackSpec:
    timeout_s: int  # 0: the failsafe is off
    current_a: int  # 0 stops charging


@dataclass(frozen=True)
class Recent:
    """A command row written for the station lately, by anyone."""

    wire: str
    status: str
    age_s: float  # since it finished (or was written), station seconds
    before_report: bool = False  # finished before the report 2 being judged was read
    before_news: bool = False  # finished before the station restarted or a car came or went
    keep_alive: bool = False

    @property
    def aspect(self) -> Aspect | None:
        return ASPECT_OF_COMMAND.get(self.wire.split(" ", 1)[0])


@dataclass(frozen=True)
class Action:
    aspect: Aspect
    wire: str
    why: str
    rule_id: int | None = None


def _ma(amps: float) -> int:
    return round(amps * 1000)


def differences(
    desired: DesiredState,
    status: Report2,
    abilities: Abilities,
    car_connected: bool,
    fallback: FallbackSpec | None = None,
) -> list[Action]:
    """One command per part of `desired` that report 2 shows differently."""
    actions: list[Action] = []
    if fallback is not None and (
        status.failsafe_timeout_s != fallback.timeout_s
        or status.failsafe_current_a is None
        or abs(status.failsafe_current_a - fallback.current_a) > CURRENT_TOLERANCE_A
    ):
        wire = f"failsafe {fallback.timeout_s} {_ma(fallback.current_a)} 0"
        actions.append(Action(Aspect.FAILSAFE, wire, "the safe fallback of this station"))
    enable_cause = desired.enabled_cause
    rule_id = enable_cause.rule_id if enable_cause else None
    why = enable_cause.text if enable_cause else ""
    if desired.enabled is not None and status.enabled_user not in (None, desired.enabled):
        wire = f"ena {int(desired.enabled)}"
        actions.append(Action(Aspect.ENABLE, wire, why, rule_id))
    if desired.enabled is False:
        return actions  # a limit means nothing while charging is off; `currtime` would re-enable
    if desired.current_a is not None:
        cause = desired.current_cause
        why, rule_id = (cause.text, cause.rule_id) if cause else ("", None)
        wanted = float(desired.current_a)
        if abilities.current_timer and status.timer_current_a is not None:
            seen = status.timer_current_a
            # Curr timer 0 is "no timer": the same as asking for full speed.
            unlimited = seen == 0 or seen >= FULL_SPEED_A - CURRENT_TOLERANCE_A
            same = unlimited if desired.current_a >= FULL_SPEED_A else abs(seen - wanted) <= 0.0005
            if not same:
                wire = f"currtime {_ma(wanted)} 1"
                actions.append(Action(Aspect.CURRENT, wire, why, rule_id))
        elif (
            not abilities.current_timer
            and status.user_current_a is not None
            and abs(status.user_current_a - wanted) > CURRENT_TOLERANCE_A
        ):
            # A P20 knows only `curr`, which the station keeps until it reboots.
            actions.append(Action(Aspect.CURRENT, f"curr {_ma(wanted)}", why, rule_id))
    if (
        desired.manages_energy
        and abilities.energy_limit
        and car_connected
        and status.energy_limit_kwh is not None
    ):
        target = desired.session_cap_kwh or 0.0
        if abs(status.energy_limit_kwh - target) > ENERGY_TOLERANCE_KWH:
            cause = desired.cap_cause
            why = cause.text if cause else "no energy cap limits this session now"
            wire = f"setenergy {round(target * 10000)}"
            actions.append(Action(Aspect.ENERGY, wire, why, cause.rule_id if cause else None))
    return actions


# How a keep-alive's row begins to say why it was sent; the daily retention
# finds the old ones by it (chargers/retention.py).
KEEP_ALIVE_WHY = "keeps the safe fallback"


def keep_alive(
    status: Report2, abilities: Abilities, desired: DesiredState, fallback: FallbackSpec
) -> Action:
    """A command that changes nothing but resets the station's failsafe timer."""
    why = f"{KEEP_ALIVE_WHY} ({fallback.timeout_s} s) from tripping"
    if status.enabled_user is False or desired.enabled is False:
        return Action(Aspect.KEEP_ALIVE, "ena 0", why)
    if abilities.current_timer:
        amps = desired.current_a
        if amps is None:
            seen = status.timer_current_a or 0
            amps = round(seen) if seen else FULL_SPEED_A
        return Action(Aspect.KEEP_ALIVE, f"currtime {_ma(amps)} 1", why)
    seen_user = status.user_current_a or FULL_SPEED_A
    return Action(Aspect.KEEP_ALIVE, f"curr {_ma(seen_user)}", why)


def allowed(action: Action, recent: Sequence[Recent]) -> bool:
    """No second command for a difference while one is on its way, refused lately, or just done."""
    for row in recent:
        if action.aspect is Aspect.KEEP_ALIVE:
            if row.status in IN_FLIGHT and row.wire.split(" ", 1)[0] in FEEDS_FAILSAFE:
                return False
            continue
        if row.aspect is action.aspect and row.status in IN_FLIGHT:
            return False
        if row.wire == action.wire and _quiets(row, recent) and not _superseded(row, recent):
            return False
    return True


def _quiets(row: Recent, recent: Sequence[Recent]) -> bool:
    """Whether `row` still holds back a second command with its wire."""
    if row.status in GAVE_UP:
        return row.age_s < REFUSED_QUIET_S and not row.before_news
    if row.age_s >= DONE_QUIET_S:
        return False
    if not row.before_report:
        return True  # the report at hand cannot show it yet
    undone = sum(
        1
        for other in recent
        if other.wire == row.wire
        and not other.keep_alive
        and other.status not in GAVE_UP + IN_FLIGHT
        and other.age_s < REFUSED_QUIET_S
    )
    return undone >= UNDONE_AT_MOST


def _superseded(row: Recent, recent: Sequence[Recent]) -> bool:
    """A command that went through and was followed by another of its aspect (an override
    ended a few seconds after it began) is no news from the station: asking for it again
    is a new decision, not a flap."""
    return row.status not in GAVE_UP and any(
        later.aspect is row.aspect and later.wire != row.wire and later.age_s < row.age_s
        for later in recent
    )


def plan(
    desired: DesiredState,
    status: Report2,
    abilities: Abilities,
    car_connected: bool,
    recent: Sequence[Recent],
    fallback: FallbackSpec | None = None,
    since_fed_s: float = float("inf"),
) -> list[Action]:
    """The commands to write now, in the order they must run.

    A keep-alive is added when the armed failsafe has not been fed for half its
    timeout and no other command of this pass feeds it; it runs before a
    `failsafe` that arms the station, whose timer may have run out long ago."""
    actions = [a for a in differences(desired, status, abilities, car_connected, fallback)]
    armed = fallback is not None and fallback.timeout_s > 0
    feeds = any(a.wire.split(" ", 1)[0] in FEEDS_FAILSAFE for a in actions)
    if armed and not feeds and fallback is not None and since_fed_s >= fallback.timeout_s / 2:
        actions.insert(0, keep_alive(status, abilities, desired, fallback))
    return [a for a in actions if allowed(a, recent)]
