"""Driver contracts: what every hardware backend provides, and the events it reports.

A backend is a class constructed with one argument, a :class:`DriverContext`, and
found by entry point in the group ``evsectl.drivers.<kind>`` (see ``registry``).
Kinds and the methods a backend *must* provide:

* ``meter``    -- :class:`Meter`: ``read(connector_id)`` -> :class:`MeterReading`.
* ``rfid``     -- :class:`RfidReader`: emits :class:`TagPresented` through ``ctx.emit``.
* ``power``    -- :class:`PowerStage`: the DC power stage *and* the EV side of each
  connector (plug, SoC, EV MAC, ISO 15118 contract id); emits :class:`CablePlugged`,
  :class:`CableUnplugged` and faults.
* ``platform`` -- :class:`Platform`: the box itself (GPIO inputs, reboot, power-fail
  signal); emits :class:`FaultRaised` / :class:`FaultCleared` / :class:`PowerFailing`.

Every backend has ``async start()`` and ``async close()``. Methods raise only
:class:`DriverError` subclasses. ``ctx.emit`` is thread-safe: a backend may call it
from a hardware thread. Drivers never import the controller; they get everything
they need from the context.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


# --------------------------------------------------------------------- errors
class DriverError(Exception):
    """Root of every error a driver raises."""


class DriverCommunicationError(DriverError):
    """The device did not answer or answered garbage."""


class DriverTimeoutError(DriverCommunicationError):
    """The device did not answer in time."""


class DriverNotFoundError(DriverError):
    """No backend of that name is registered for that kind."""

    def __init__(self, kind: str, name: str, available: list[str]) -> None:
        self.kind, self.name, self.available = kind, name, available
        super().__init__(
            f"unknown {kind} driver {name!r}; available: {', '.join(available) or 'none'}"
        )


# --------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class CablePlugged:
    connector_id: int


@dataclass(frozen=True, slots=True)
class CableUnplugged:
    connector_id: int


@dataclass(frozen=True, slots=True)
class TagPresented:
    id_tag: str


@dataclass(frozen=True, slots=True)
class FaultRaised:
    """A vendor DTC (``"0x100206"``) became active; connector_id 0 = whole station."""

    dtc: str
    connector_id: int = 0


@dataclass(frozen=True, slots=True)
class FaultCleared:
    dtc: str
    connector_id: int = 0


@dataclass(frozen=True, slots=True)
class PowerFailing:
    """Mains is gone; the hold-up time is running out (StarCharge models)."""


DriverEvent = CablePlugged | CableUnplugged | TagPresented | FaultRaised | FaultCleared | PowerFailing


# --------------------------------------------------------------------- data
@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    connector_id: int
    connector_type: str  # "CCS2" | "CHAdeMO"
    max_power_w: float


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One reading of a connector's DC energy meter."""

    energy_wh: int  # the import register; only ever grows
    power_w: float
    voltage_v: float
    current_a: float


@dataclass(frozen=True, slots=True)
class PowerStatus:
    """What the power stage and the EV side of one connector report."""

    plugged: bool
    output_power_w: float
    voltage_v: float
    current_a: float
    offered_w: float  # the set-point in force (after the stage's own limits)
    soc_pct: int | None = None
    ev_mac: str | None = None  # "AA:BB:CC:DD:EE:FF" as the EV reported it
    contract_id: str | None = None  # ISO 15118 eMAID, Plug & Charge


@dataclass(frozen=True)
class DriverContext:
    """Everything a backend gets from the controller."""

    state_dir: Path
    connectors: tuple[ConnectorSpec, ...]
    station_max_power_w: float
    emit: Callable[[DriverEvent], None]
    monotonic: Callable[[], float]
    options: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------- contracts
@runtime_checkable
class Meter(Protocol):
    async def start(self) -> None: ...
    async def read(self, connector_id: int) -> MeterReading: ...
    async def close(self) -> None: ...


@runtime_checkable
class RfidReader(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...


@runtime_checkable
class PowerStage(Protocol):
    async def start(self) -> None: ...

    async def enable(self, connector_id: int) -> None:
        """Close the contactors and start delivering up to the set-point."""

    async def disable(self, connector_id: int) -> None:
        """Ramp down and open the contactors; returns when the output is safe."""

    async def set_limit(self, connector_id: int, power_w: float | None) -> None:
        """Set-point in W; None = the connector's own maximum."""

    async def status(self, connector_id: int) -> PowerStatus: ...
    async def close(self) -> None: ...


@runtime_checkable
class Platform(Protocol):
    async def start(self) -> None: ...

    async def reboot(self) -> None:
        """Reboot the box (the mock re-executes the process)."""

    async def close(self) -> None: ...


DRIVER_KINDS = ("meter", "rfid", "power", "platform")
