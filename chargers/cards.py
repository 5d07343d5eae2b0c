"""A station's dashboard card in words: what is happening, and which limit holds.

Pure functions over the status payload the gateway publishes (recorder.status_payload),
so the first render on the server and every live frame say the same thing.
"""

from typing import Any

from chargers.kecontact.codec import ChargingState, PlugState

# KEBA's default for `Curr user` when nobody set one over UDP (PROTOCOL.md, report 2).
NO_USER_LIMIT_A = 63.0

# What a person should know about each state; error codes are read from the manual.
ERROR_HELP = (
    "the station reports error code {code}; look it up in the error table of the "
    "station's manual, or switch the station off and on again"
)
INTERRUPTED_HELP = "charging was interrupted (temperature, or another device such as an input)"


def activity(payload: dict[str, Any]) -> tuple[str, str]:
    """(key, words): what is happening at the station, as a family member says it."""
    state, plug = payload.get("state"), payload.get("plug")
    if state is None:
        return "unknown", "no status yet"
    if state == ChargingState.ERROR:
        code = payload.get("error_1") or payload.get("error_2") or 0
        return "error", "error: " + ERROR_HELP.format(code=f"{code} (0x{code:X})")
    if state == ChargingState.CHARGING:
        return "charging", "charging"
    if state == ChargingState.INTERRUPTED:
        return "interrupted", INTERRUPTED_HELP
    if plug is None or plug == PlugState.UNPLUGGED:
        return "no-cable", "no cable plugged in"
    if plug in (PlugState.CABLE_IN_STATION, PlugState.CABLE_LOCKED):
        return "cable", "cable plugged in, no car"
    # A car is connected from here on.
    if payload.get("enabled_user") is False:
        return "disabled", "car connected, charging disabled"
    if payload.get("auth_required"):
        return "authorise", "car connected, waiting for authorisation (RFID card)"
    if state == ChargingState.READY and (payload.get("session_energy_kwh") or 0) > 0:
        return "finished", "finished: the car takes no more energy"
    if payload.get("enabled_sys") is False:
        return "disabled", "car connected, charging disabled"
    return "connected", "car connected, not charging"


def limit(payload: dict[str, Any]) -> tuple[float | None, str]:
    """(amperes, where it comes from): the current limit in force.

    The hardware's (DIP switches, cable, temperature), a manual setting, or a rule:
    a setting is the rule's when it is what the rule asks for (the gateway sets it,
    chargers/rules/explain.card_fields says why)."""
    hardware = payload.get("hardware_current_a") or None
    candidates: list[tuple[float, str]] = []
    if hardware:
        candidates.append((hardware, "hardware (DIP switches, cable, temperature)"))
    rule_a, rule_why = payload.get("rule_current_a"), payload.get("rule_current_why")
    user = payload.get("user_current_a")
    timer = payload.get("timer_current_a")
    for setting in (user if user and user < NO_USER_LIMIT_A else None, timer):
        if setting:
            by_rule = rule_why and rule_a is not None and setting == rule_a
            candidates.append((setting, str(rule_why) if by_rule else "manual setting"))
    if payload.get("enabled_user") is False:
        return 0.0, payload.get("rule_off_why") or "charging disabled by a manual setting"
    if not candidates:
        offered = payload.get("offered_current_a")
        return offered, "hardware" if offered else "no cable: no limit applies"
    # The lowest wins; on a tie the hardware is named, since it cannot be lifted.
    amps, source = min(candidates, key=lambda c: c[0])
    return amps, source


def describe(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with the card's words added."""
    key, words = activity(payload)
    limit_a, limit_source = limit(payload)
    return payload | {
        "activity": key,
        "activity_text": words,
        "limit_a": limit_a,
        "limit_source": limit_source,
    }
