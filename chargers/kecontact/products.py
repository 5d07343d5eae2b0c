"""What a station can do, read from its product string and firmware line.

Product strings look like `KC-P30-EC240422-E00[-DE]` (PROTOCOL.md section 4):
maker, model, a version block whose 7th character is the series, and an
options block (meter, RFID). The firmware decides whether x2 works.
"""

import re
from dataclasses import dataclass
from enum import StrEnum

from .errors import Malformed


class Capability(StrEnum):
    METER = "meter"
    RFID = "rfid"
    DISPLAY = "display"
    SESSION_LOG = "session_log"  # reports 100-130
    CURRENT_TIMER = "current_timer"  # currtime
    ENERGY_LIMIT = "energy_limit"  # setenergy
    REMOTE_START = "remote_start"  # start / stop with a tag
    CLOCK = "clock"  # setdatetime
    PHASE_SWITCH = "phase_switch"  # x2src / x2


SERIES_BY_CHAR = {"0": "e", "1": "b", "2": "c", "3": "c", "A": "c", "K": "c"}
X_SERIES_CHARS = set("BCDEFGHIJKLMNOPQRSTU")


@dataclass(frozen=True)
class ProductInfo:
    product: str
    maker: str  # "KEBA" or "BMW"
    model: str  # "P20", "P30", "P40", "BMW Wallbox"
    series: str  # "e", "b", "c", "x", "a" or "" when unknown
    german_edition: bool
    capabilities: frozenset[Capability]
    udp_supported: bool
    note: str = ""  # why UDP is not supported, or what to watch for

    @property
    def label(self) -> str:
        """The model as a person says it: "P30 c-series (German edition)"."""
        text = self.model if self.maker == "KEBA" else f"{self.maker} {self.model}"
        if self.series and self.maker == "KEBA":
            text += f" {self.series}-series"
        if self.german_edition:
            text += " (German edition)"
        return text

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities


def firmware_version(firmware: str) -> tuple[int, ...]:
    """(3, 10, 57) from "P30 v 3.10.57 (240521-093236)"; () when absent."""
    match = re.search(r"\bv\s*(\d+(?:\.\d+)*)", firmware)
    if not match:
        return ()
    return tuple(int(part) for part in match.group(1).split("."))


def parse_product(product: str, firmware: str = "") -> ProductInfo:
    text = product.strip()
    blocks = text.split("-")
    if len(blocks) < 3 or not all(blocks[:3]):
        raise Malformed(f"product string {product!r} is not of the form KC-P30-EC240422-E00")
    maker_code, model_code, version = blocks[0].upper(), blocks[1].upper(), blocks[2].upper()
    options = blocks[3].upper() if len(blocks) > 3 else ""
    german_edition = len(blocks) > 4 and blocks[4].upper() == "DE"
    series_char = version[6] if len(version) >= 7 else ""
    series = "x" if series_char in X_SERIES_CHARS else SERIES_BY_CHAR.get(series_char, "")
    has_meter = bool(options) and options[0] in "EM"
    has_rfid = "R" in options[1:]
    fw = firmware_version(firmware)
    caps: set[Capability] = set()
    if has_meter:
        caps.add(Capability.METER)
    if has_rfid:
        caps.add(Capability.RFID)

    if maker_code == "BMW":
        caps |= {
            Capability.METER,
            Capability.RFID,
            Capability.SESSION_LOG,
            Capability.CURRENT_TIMER,
            Capability.ENERGY_LIMIT,
            Capability.REMOTE_START,
            Capability.CLOCK,
        }
        return ProductInfo(text, "BMW", "Wallbox", series, False, frozenset(caps), True)
    if maker_code != "KC":
        raise Malformed(f"product string {product!r} names an unknown maker {blocks[0]!r}")

    if model_code == "P40":
        return ProductInfo(
            text,
            "KEBA",
            "P40",
            series,
            False,
            frozenset(),
            False,
            "the KeContact P40 has no UDP interface; it speaks Modbus TCP only",
        )
    if model_code == "P20":
        return ProductInfo(text, "KEBA", "P20", series, False, frozenset(caps), True)
    if model_code != "P30":
        raise Malformed(f"product string {product!r} names an unknown model {blocks[1]!r}")

    if series == "a":
        return ProductInfo(
            text, "KEBA", "P30", "a", False, frozenset(), False, "the P30 a-series is unsupported"
        )
    caps |= {Capability.SESSION_LOG, Capability.CURRENT_TIMER, Capability.REMOTE_START}
    caps.add(Capability.CLOCK)
    if german_edition:
        # A c-series variant whatever its 7th character says, without meter
        # or display (PROTOCOL.md section 5).
        series = "c"
        caps.discard(Capability.METER)
        if fw >= (3, 10):
            caps.add(Capability.PHASE_SWITCH)
    else:
        caps |= {Capability.DISPLAY, Capability.ENERGY_LIMIT}
        # x-series firmware counts from 1.x; c-series from 3.x.
        if (series == "x" and fw >= (1, 17)) or (series == "c" and fw >= (3, 10)):
            caps.add(Capability.PHASE_SWITCH)
    note = ""
    if series in ("e", "b"):
        note = f"the P30 {series}-series has no UDP data interface worth using"
    return ProductInfo(text, "KEBA", "P30", series, german_edition, frozenset(caps), True, note)
