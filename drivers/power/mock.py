"""Mock DC power stage and EV side: drives the station's simulated plant.

This module owns the power-stage contract of the mock station (contactors,
set-points, status) and the EV-side test hooks that emit plug events; the
physics belong to ``drivers.mock_plant``, shared with the mock meter of the same
``state_dir`` (R-HW 4, R-HW 5).
"""

from __future__ import annotations

from collections.abc import Iterable

from drivers.interfaces import (
    CablePlugged,
    CableUnplugged,
    DriverContext,
    DriverError,
    PowerStatus,
)
from drivers.mock_plant import MockPlant, plant_for

__all__ = ["MockPowerStage"]


class MockPowerStage:
    """A :class:`~drivers.interfaces.PowerStage` backed by the station's :class:`MockPlant`.

    Contract methods (``enable``, ``disable``, ``set_limit``, ``status``) work
    between ``start()`` and ``close()`` and raise :class:`DriverError` for an
    unknown connector or outside that window. ``enable`` closes the contactors;
    power flows only while an EV that wants it is plugged. ``disable`` returns
    with the output at 0 W. ``set_limit`` follows the guide's rules: CCS2 0 W
    leaves a residual, under 1 kW becomes 1 kW; CHAdeMO ignores set-points.

    Option ``plugged``: connector ids whose EV is plugged in at start.
    ``start()`` emits ``CablePlugged`` for every connector plugged at that time.

    Test hooks (the outside world): ``plug(cid)`` / ``unplug(cid)`` change the
    plug and, once started, emit ``CablePlugged`` / ``CableUnplugged`` on a change
    (``unplug`` also opens the contactors); ``set_ev(cid, soc=, mac=,
    contract_id=, capacity_wh=)`` changes the EV (see :meth:`MockPlant.set_ev`).
    ``plant`` is the shared simulation.
    """

    def __init__(self, ctx: DriverContext) -> None:
        self._ctx = ctx
        self._plugged_at_start = self._plugged_option(ctx)
        self.plant: MockPlant = plant_for(ctx)
        self._started = False
        self._closed = False

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._closed:
            raise DriverError("mock power stage: closed; build a new one")
        if self._started:
            return
        for cid in self._plugged_at_start:
            self.plant.plug(cid)
        self._started = True
        for cid in self.plant.connector_ids:
            if self.plant.is_plugged(cid):
                self._ctx.emit(CablePlugged(cid))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.plant.release()

    # ----------------------------------------------------------------- contract
    async def enable(self, connector_id: int) -> None:
        self._check_running()
        self.plant.enable(connector_id)

    async def disable(self, connector_id: int) -> None:
        self._check_running()
        self.plant.disable(connector_id)

    async def set_limit(self, connector_id: int, power_w: float | None) -> None:
        self._check_running()
        self.plant.set_limit(connector_id, power_w)

    async def status(self, connector_id: int) -> PowerStatus:
        self._check_running()
        return self.plant.status(connector_id)

    # ----------------------------------------------------------------- test hooks
    def plug(self, connector_id: int) -> None:
        """Plug an EV into the connector."""
        if self.plant.plug(connector_id) and self._running:
            self._ctx.emit(CablePlugged(connector_id))

    def unplug(self, connector_id: int) -> None:
        """Pull the cable out of the EV (the stage drops the output)."""
        if self.plant.unplug(connector_id) and self._running:
            self._ctx.emit(CableUnplugged(connector_id))

    def set_ev(
        self,
        connector_id: int,
        soc: float | None = None,
        mac: str | None = None,
        contract_id: str | None = None,
        capacity_wh: float | None = None,
    ) -> None:
        """Change the EV on the connector; None leaves a value as it is."""
        self.plant.set_ev(
            connector_id, soc=soc, mac=mac, contract_id=contract_id, capacity_wh=capacity_wh
        )

    # ----------------------------------------------------------------- internals
    @property
    def _running(self) -> bool:
        return self._started and not self._closed

    def _check_running(self) -> None:
        if not self._running:
            raise DriverError(
                "mock power stage: closed" if self._closed else "mock power stage: not started"
            )

    @staticmethod
    def _plugged_option(ctx: DriverContext) -> tuple[int, ...]:
        raw = ctx.options.get("plugged", [])
        known = {spec.connector_id for spec in ctx.connectors}
        if isinstance(raw, str | bytes) or not isinstance(raw, Iterable):
            raise DriverError(f"mock power stage: option plugged must be a list, got {raw!r}")
        ids = tuple(raw)
        for cid in ids:
            if isinstance(cid, bool) or not isinstance(cid, int) or cid not in known:
                raise DriverError(
                    f"mock power stage: option plugged: no connector {cid!r}; "
                    f"connectors: {', '.join(str(i) for i in sorted(known))}"
                )
        return ids
