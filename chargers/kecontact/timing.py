"""One clock and one timing table shared by the client and the emulator.

Production uses KEBA's values at real speed; tests and the demo run the same
code with `Clock(speed=...)` so that a 300 s x2 cool-down or an hour of
charging passes in moments.
"""

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Timing:
    """Protocol durations in station seconds (see PROTOCOL.md section 2)."""

    min_gap_s: float = 0.1  # between any two datagrams to one station
    ena_quiet_s: float = 2.0  # nothing may follow `ena 0` sooner
    x2_cooldown_s: float = 300.0  # between two phase switches
    report_repeat_s: float = 5.0  # the same report no more often than this


class Clock:
    """Station time: real monotonic time multiplied by `speed`."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self.speed = speed
        self._origin = time.monotonic()
        self._wall_origin = time.time()

    def monotonic(self) -> float:
        return (time.monotonic() - self._origin) * self.speed

    def wall(self) -> float:
        """Unix time as the station sees it (runs `speed` times faster).

        At real speed it is the system clock itself: a Raspberry Pi without a
        battery clock may start with a stale time that NTP corrects later."""
        if self.speed == 1:
            return time.time()
        return self._wall_origin + self.monotonic()

    def now(self) -> datetime:
        """`wall()` as an aware datetime: the time stamped on what stations report."""
        return datetime.fromtimestamp(self.wall(), UTC)

    def to_real(self, station_seconds: float) -> float:
        return station_seconds / self.speed

    async def sleep(self, station_seconds: float) -> None:
        await asyncio.sleep(max(0.0, station_seconds) / self.speed)
