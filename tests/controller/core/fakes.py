"""Test doubles for driving the charger core without an event loop.

``FakeClock`` is the ``controller.core.charger.Clock`` the core reads: a
monotonic float and an aware UTC wall time that move together, and only when a
test says so (``advance``). ``SetClock`` commands move the wall alone
(``set_wall``), as the runtime's clocks do.

The small helpers build driver readings (``drivers.interfaces`` shapes) and
pick things out of command lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.core import commands as cmd
from drivers.interfaces import MeterReading, PowerStatus

#: 2026-04-16 08:07:30 UTC: 7.5 minutes after a quarter hour, so clock-aligned
#: data (ClockAlignedDataInterval=900) is first due at 08:15:00.
DEFAULT_WALL = datetime(2026, 4, 16, 8, 7, 30, tzinfo=UTC)

#: What we send: ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (controller.core.timefmt).
RFC3339_SENT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


class FakeClock:
    """Monotonic seconds + aware UTC wall time; both move only on ``advance``."""

    def __init__(self, mono: float = 1000.0, wall: datetime = DEFAULT_WALL) -> None:
        if wall.tzinfo is None:
            raise ValueError("wall time must be aware")
        self._mono = float(mono)
        self._wall = wall.astimezone(UTC)

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> datetime:
        return self._wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)

    def set_wall(self, now: datetime) -> None:
        """What the runtime does with a ``SetClock`` command."""
        if now.tzinfo is None:
            raise ValueError("wall time must be aware")
        self._wall = now.astimezone(UTC)

    def on_jump(self, listener: Any) -> None:  # runtime clock API; nothing waits here
        pass


def meter_reading(
    energy_wh: int = 10_000, power_w: float = 50_000.0, voltage_v: float = 400.0, current_a: float = 125.0
) -> MeterReading:
    return MeterReading(energy_wh=energy_wh, power_w=power_w, voltage_v=voltage_v, current_a=current_a)


def power_status(
    plugged: bool = True,
    output_power_w: float = 50_000.0,
    voltage_v: float = 400.0,
    current_a: float = 125.0,
    offered_w: float = 60_000.0,
    soc_pct: int | None = 40,
    ev_mac: str | None = None,
) -> PowerStatus:
    return PowerStatus(
        plugged=plugged,
        output_power_w=output_power_w,
        voltage_v=voltage_v,
        current_a=current_a,
        offered_w=offered_w,
        soc_pct=soc_pct,
        ev_mac=ev_mac,
    )


def send_calls(commands: Iterable[cmd.Command], action: str | None = None) -> list[cmd.SendCall]:
    """The SendCall commands (of ``action``, if given), in order."""
    return [c for c in commands if isinstance(c, cmd.SendCall) and (action is None or c.action == action)]


def of_type(commands: Iterable[cmd.Command], kind: type) -> list[Any]:
    return [c for c in commands if isinstance(c, kind)]


def sampled_value(entry: dict[str, Any], measurand: str) -> dict[str, Any]:
    """The sampledValue of ``measurand`` in one meterValue entry (KeyError if absent)."""
    for sv in entry["sampledValue"]:
        if sv.get("measurand", "Energy.Active.Import.Register") == measurand:
            return sv
    raise KeyError(measurand)
