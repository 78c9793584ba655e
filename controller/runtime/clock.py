"""Clocks: monotonic time for timers, wall time (set from the CSMS) for timestamps.

``SystemClock`` follows the machine; ``SimClock`` can also be advanced by hand
(``evsectl sim clock advance``) so a rig or a test can make two minutes pass in
no time. Both keep the wall clock as an offset from the system clock, set from
BootNotification/Heartbeat currentTime (R-BOOT 5).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class SystemClock:
    def __init__(self) -> None:
        self._wall_offset = timedelta(0)
        self._listeners: list[Callable[[], None]] = []

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC) + self._wall_offset

    def set_wall(self, now: datetime) -> None:
        self._wall_offset = now - datetime.now(UTC)

    def on_jump(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever time moves by other means than waiting."""
        self._listeners.append(listener)

    def _jumped(self) -> None:
        for listener in self._listeners:
            listener()


class SimClock(SystemClock):
    """A system clock that can also be advanced by hand (rig and tests)."""

    def __init__(self) -> None:
        super().__init__()
        self._advanced = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self._advanced

    def wall(self) -> datetime:
        return super().wall() + timedelta(seconds=self._advanced)

    def set_wall(self, now: datetime) -> None:
        super().set_wall(now - timedelta(seconds=self._advanced))

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._advanced += seconds
        self._jumped()
