"""Mock DC energy meter: reads the station's simulated plant (``drivers.mock_plant``).

This module owns the meter side of the mock station and its communication-fault
injection; the physics and the persisted energy register belong to the plant,
which it shares with the mock power stage of the same ``state_dir`` (R-HW 5).
"""

from __future__ import annotations

from drivers.interfaces import (
    DriverCommunicationError,
    DriverContext,
    DriverError,
    MeterReading,
)
from drivers.mock_plant import MockPlant, plant_for

__all__ = ["MockMeter"]


class MockMeter:
    """A :class:`~drivers.interfaces.Meter` backed by the station's :class:`MockPlant`.

    ``read(connector_id)`` returns the plant's reading: ``energy_wh`` is the
    connector's import register in whole Wh, which only grows and survives a
    daemon restart (it lives in ``<state_dir>/mock-meter.json``). ``read`` works
    between ``start()`` and ``close()`` only and raises :class:`DriverError` for an
    unknown connector or outside that window. Test hook: ``fail(True)`` makes every
    ``read`` raise :class:`DriverCommunicationError` until ``fail(False)``; the
    register keeps counting meanwhile, as a real meter's does. ``plant`` is the
    shared simulation, for tests that drive the EV side directly.
    """

    def __init__(self, ctx: DriverContext) -> None:
        self._ctx = ctx
        self.plant: MockPlant = plant_for(ctx)
        self._failing = False
        self._started = False
        self._closed = False

    async def start(self) -> None:
        if self._closed:
            raise DriverError("mock meter: closed; build a new one")
        self._started = True

    async def read(self, connector_id: int) -> MeterReading:
        if not self._started or self._closed:
            raise DriverError(f"mock meter: {'closed' if self._closed else 'not started'}")
        reading = self.plant.reading(connector_id)  # unknown connector -> DriverError first
        if self._failing:
            raise DriverCommunicationError(f"mock meter: no answer for connector {connector_id}")
        return reading

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.plant.release()

    def fail(self, failing: bool = True) -> None:
        """Inject (True) or clear (False) a communication fault."""
        self._failing = bool(failing)
