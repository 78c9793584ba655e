"""Deterministic simulation of one station's DC power path and the EVs plugged into it.

This module owns the *physics* shared by the mock meter (``drivers.meter.mock``) and
the mock power stage (``drivers.power.mock``) of one station: per connector the
plug, the EV (SoC, battery capacity, MAC, ISO 15118 contract id), the contactors
(enabled flag), the set-point, the output power and the meter's energy register,
which it keeps in ``<state_dir>/mock-meter.json`` so it survives a daemon restart
(R-HW 5). Both mocks of one station share one :class:`MockPlant`, found with
:func:`plant_for` by ``ctx.state_dir``.

The model is integrated lazily from ``ctx.monotonic()`` deltas on every access:
no background task, no thread, no sleeping, so tests drive it with a fake clock.

* Output power ramps toward its target at 20 kW/s up and 50 kW/s down. The target
  is min(set-point, connector max, EV acceptance, station max minus what the other
  connectors draw). A connector already drawing keeps its power; a newcomer gets
  what is left (connectors rising together share the headroom equally).
* EV acceptance is the connector max up to 80 % SoC, then falls linearly to 5 % of
  it at 100 %; at 100 % the EV takes nothing. SoC rises with the energy delivered.
* Voltage is 400 V + 0.5 V per SoC % while the contactors are closed (0 V when
  open); current = power / voltage.
* Set-points follow the connectivity guide (R-SC 4): on CCS2 a set-point of 0 W
  leaves a residual of 0.5 A per power module (one module per 30 kW of connector
  max) at the battery voltage, and a non-zero set-point under 1000 W is raised to
  1000 W; CHAdeMO ignores set-points (always the connector max).
* The EV's demand (taper, CCS2 residual) is re-evaluated on a fixed 1 s grid of
  monotonic time and on every input (enable, set-point, plug, EV change), never
  because somebody read a value: reading more or less often does not change the
  result beyond float rounding.
* The energy register only grows. It is written atomically (temp file, fsync,
  ``os.replace``) at most once per second of monotonic time while it changes, on
  every enable/disable, and on close/release. A write failure is logged and
  retried later; it never breaks the simulation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.interfaces import (
    ConnectorSpec,
    DriverContext,
    DriverError,
    MeterReading,
    PowerStatus,
)

__all__ = [
    "BASE_VOLTAGE_V",
    "CCS2_MIN_NONZERO_SETPOINT_W",
    "CCS2_RESIDUAL_A_PER_MODULE",
    "DEFAULT_CAPACITY_WH",
    "DEFAULT_SOC_PCT",
    "DOWN_RAMP_W_PER_S",
    "POWER_MODULE_W",
    "SAVE_INTERVAL_S",
    "STATE_FILE",
    "TAPER_END_FRACTION",
    "TAPER_START_PCT",
    "TICK_S",
    "UP_RAMP_W_PER_S",
    "VOLTAGE_PER_SOC_PCT_V",
    "MockPlant",
    "default_ev_mac",
    "flush_plant",
    "plant_for",
]

log = logging.getLogger(__name__)

UP_RAMP_W_PER_S = 20_000.0
DOWN_RAMP_W_PER_S = 50_000.0
TICK_S = 1.0  # grid on which the EV's demand is re-evaluated
SAVE_INTERVAL_S = 1.0  # at most one periodic write of the register per this much time
DEFAULT_SOC_PCT = 20.0
DEFAULT_CAPACITY_WH = 60_000.0
TAPER_START_PCT = 80.0
TAPER_END_FRACTION = 0.05  # acceptance at 100 % SoC, as a fraction of the connector max
BASE_VOLTAGE_V = 400.0
VOLTAGE_PER_SOC_PCT_V = 0.5
CCS2_RESIDUAL_A_PER_MODULE = 0.5
POWER_MODULE_W = 30_000.0
CCS2_MIN_NONZERO_SETPOINT_W = 1000.0
STATE_FILE = "mock-meter.json"
_STATE_FORMAT = 1

_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")
_TYPES = {"CCS2": "CCS2", "CHADEMO": "CHAdeMO"}


def default_ev_mac(connector_id: int) -> str:
    """The fixed, locally administered MAC of the default EV on ``connector_id``."""
    return f"02:00:00:00:{(connector_id >> 8) & 0xFF:02X}:{connector_id & 0xFF:02X}"


@dataclass(slots=True)
class _Connector:
    spec: ConnectorSpec
    chademo: bool
    modules: int
    ev_mac: str | None
    plugged: bool = False
    enabled: bool = False
    setpoint_w: float | None = None
    soc_pct: float = DEFAULT_SOC_PCT
    capacity_wh: float = DEFAULT_CAPACITY_WH
    contract_id: str | None = None
    power_w: float = 0.0
    demand_w: float = 0.0  # frozen between grid ticks and inputs
    energy_wh: float = 0.0

    @property
    def ev_voltage_v(self) -> float:
        return BASE_VOLTAGE_V + VOLTAGE_PER_SOC_PCT_V * self.soc_pct

    @property
    def voltage_v(self) -> float:
        return self.ev_voltage_v if self.plugged and self.enabled else 0.0

    def effective_setpoint_w(self) -> float:
        """The set-point after the stage's own rules (R-SC 4), before other limits."""
        max_w = self.spec.max_power_w
        if self.chademo or self.setpoint_w is None:
            return max_w
        if self.setpoint_w == 0:
            return CCS2_RESIDUAL_A_PER_MODULE * self.modules * self.ev_voltage_v
        return max(self.setpoint_w, CCS2_MIN_NONZERO_SETPOINT_W)

    def acceptance_w(self) -> float:
        max_w = self.spec.max_power_w
        if self.soc_pct >= 100.0:
            return 0.0
        if self.soc_pct <= TAPER_START_PCT:
            return max_w
        fraction = (self.soc_pct - TAPER_START_PCT) / (100.0 - TAPER_START_PCT)
        return max_w * (1.0 - (1.0 - TAPER_END_FRACTION) * fraction)

    def demand(self) -> float:
        if not (self.plugged and self.enabled):
            return 0.0
        return max(
            0.0, min(self.effective_setpoint_w(), self.spec.max_power_w, self.acceptance_w())
        )


class MockPlant:
    """Simulated power path of one station, shared by its mock meter and power stage.

    Construct directly for a private plant, or use :func:`plant_for` to share one per
    ``state_dir``. The constructor loads the energy registers from
    ``<state_dir>/mock-meter.json`` (a missing file means all zero; an unreadable
    one raises :class:`DriverError`). Every method takes the connector id of one of
    ``ctx.connectors`` and raises :class:`DriverError` for any other. All methods
    are thread-safe. The plant reads time only from the ``monotonic`` of the
    context it was created with.
    """

    def __init__(self, ctx: DriverContext) -> None:
        self._lock = threading.RLock()
        self._clock: Callable[[], float] = ctx.monotonic
        self._specs = tuple(ctx.connectors)
        self._station_max_w = float(ctx.station_max_power_w)
        self._conns = self._build_connectors(ctx)
        self._state_dir = Path(ctx.state_dir)
        self._path = self._state_dir / STATE_FILE
        self._stored_extra: dict[str, float] = {}
        self._load()
        now = self._clock()
        self._epoch = now
        self._t = now
        self._next_tick = 1  # next demand re-evaluation at epoch + _next_tick * TICK_S
        self._saved_at = now
        self._dirty = False
        self._refs = 0
        self._key: Path | None = None

    # ----------------------------------------------------------------- queries
    @property
    def connector_ids(self) -> tuple[int, ...]:
        return tuple(self._conns)

    @property
    def state_path(self) -> Path:
        """The file that keeps the energy registers."""
        return self._path

    def reading(self, connector_id: int) -> MeterReading:
        """What the connector's DC meter shows now."""
        with self._lock:
            c = self._get(connector_id)
            self._advance()
            voltage = c.voltage_v
            return MeterReading(
                energy_wh=math.floor(c.energy_wh),
                power_w=c.power_w,
                voltage_v=voltage,
                current_a=c.power_w / voltage if voltage > 0 else 0.0,
            )

    def energy_wh(self, connector_id: int) -> int:
        """The connector's import register in whole Wh (only ever grows)."""
        return self.reading(connector_id).energy_wh

    def status(self, connector_id: int) -> PowerStatus:
        """What the power stage and the EV side of the connector report now."""
        with self._lock:
            c = self._get(connector_id)
            self._advance()
            voltage = c.voltage_v
            others_w = sum(o.power_w for o in self._conns.values() if o is not c)
            offered = min(
                c.effective_setpoint_w(),
                c.spec.max_power_w,
                max(0.0, self._station_max_w - others_w),
            )
            return PowerStatus(
                plugged=c.plugged,
                output_power_w=c.power_w,
                voltage_v=voltage,
                current_a=c.power_w / voltage if voltage > 0 else 0.0,
                offered_w=offered,
                soc_pct=math.floor(c.soc_pct) if c.plugged else None,
                ev_mac=c.ev_mac if c.plugged else None,
                contract_id=c.contract_id if c.plugged else None,
            )

    def is_plugged(self, connector_id: int) -> bool:
        with self._lock:
            return self._get(connector_id).plugged

    def is_enabled(self, connector_id: int) -> bool:
        with self._lock:
            return self._get(connector_id).enabled

    def soc_pct(self, connector_id: int) -> float:
        """The EV's exact state of charge (the stage reports it rounded down)."""
        with self._lock:
            c = self._get(connector_id)
            self._advance()
            return c.soc_pct

    # ----------------------------------------------------------------- power stage
    def enable(self, connector_id: int) -> None:
        """Close the contactors. Power flows only while an EV that wants it is plugged."""
        with self._lock:
            c = self._get(connector_id)
            self._advance()
            c.enabled = True
            self._refresh_demands()
            self._save_quietly()

    def disable(self, connector_id: int) -> None:
        """Open the contactors; the output is 0 W on return."""
        with self._lock:
            c = self._get(connector_id)
            self._advance()
            c.enabled = False
            c.power_w = 0.0
            self._refresh_demands()
            self._save_quietly()

    def set_limit(self, connector_id: int, power_w: float | None) -> None:
        """Set-point in W (None = the connector max); CCS2/CHAdeMO rules apply."""
        with self._lock:
            c = self._get(connector_id)
            if power_w is not None:
                power_w = _number(power_w, "set-point")
                if power_w < 0:
                    raise DriverError(f"connector {connector_id}: negative set-point {power_w} W")
            self._advance()
            c.setpoint_w = power_w
            self._refresh_demands()

    # ----------------------------------------------------------------- EV side
    def plug(self, connector_id: int) -> bool:
        """Plug the EV in; returns False if it already was."""
        with self._lock:
            c = self._get(connector_id)
            self._advance()
            if c.plugged:
                return False
            c.plugged = True
            self._refresh_demands()
            return True

    def unplug(self, connector_id: int) -> bool:
        """Unplug the EV (opens the contactors, output 0 W); returns False if it was not plugged."""
        with self._lock:
            c = self._get(connector_id)
            self._advance()
            was_plugged, was_enabled = c.plugged, c.enabled
            c.plugged = False
            c.enabled = False
            c.power_w = 0.0
            self._refresh_demands()
            if was_enabled:
                self._save_quietly()
            return was_plugged

    def set_ev(
        self,
        connector_id: int,
        soc: float | None = None,
        mac: str | None = None,
        contract_id: str | None = None,
        capacity_wh: float | None = None,
    ) -> None:
        """Change the EV on a connector; None leaves a value as it is.

        ``mac=""`` / ``contract_id=""`` make the EV report none. The EV keeps its
        values across unplug/plug (the same car coming back).
        """
        with self._lock:
            c = self._get(connector_id)
            if soc is not None:
                soc = _number(soc, "SoC")
                if not 0.0 <= soc <= 100.0:
                    raise DriverError(f"connector {connector_id}: SoC {soc} % out of 0..100")
            if capacity_wh is not None:
                capacity_wh = _number(capacity_wh, "battery capacity")
                if capacity_wh <= 0:
                    raise DriverError(f"connector {connector_id}: capacity must be > 0 Wh")
            if mac is not None and mac != "" and not _MAC_RE.match(mac):
                raise DriverError(f"connector {connector_id}: bad EV MAC {mac!r}")
            if contract_id is not None and not isinstance(contract_id, str):
                raise DriverError(f"connector {connector_id}: contract id must be a string")
            self._advance()
            if soc is not None:
                c.soc_pct = soc
                if soc >= 100.0:
                    c.power_w = 0.0
            if capacity_wh is not None:
                c.capacity_wh = capacity_wh
            if mac is not None:
                c.ev_mac = mac.replace("-", ":").upper() if mac else None
            if contract_id is not None:
                c.contract_id = contract_id or None
            self._refresh_demands()

    # ----------------------------------------------------------------- persistence
    def save(self) -> None:
        """Write the energy registers now; raises DriverError if that fails."""
        with self._lock:
            self._advance(autosave=False)
            self._write_state()

    def close(self) -> None:
        """Bring the model up to now and write the registers (failures are logged)."""
        with self._lock:
            self._advance(autosave=False)
            self._save_quietly()

    def release(self) -> None:
        """Give back a reference taken with :func:`plant_for`; the last one saves and forgets."""
        with _registry_lock:
            self._refs = max(0, self._refs - 1)
            last = self._refs == 0
            if last and self._key is not None and _plants.get(self._key) is self:
                del _plants[self._key]
        if last:
            self.close()

    # ----------------------------------------------------------------- internals
    @staticmethod
    def _build_connectors(ctx: DriverContext) -> dict[int, _Connector]:
        if not ctx.connectors:
            raise DriverError("mock plant: the station has no connectors")
        if not (math.isfinite(ctx.station_max_power_w) and ctx.station_max_power_w > 0):
            raise DriverError(f"mock plant: bad station max power {ctx.station_max_power_w!r}")
        conns: dict[int, _Connector] = {}
        for spec in ctx.connectors:
            if spec.connector_id in conns or spec.connector_id <= 0:
                raise DriverError(f"mock plant: bad or duplicate connector id {spec.connector_id}")
            ctype = _TYPES.get(str(spec.connector_type).upper())
            if ctype is None:
                raise DriverError(
                    f"mock plant: connector {spec.connector_id} has unknown type "
                    f"{spec.connector_type!r} (CCS2 or CHAdeMO)"
                )
            if not (math.isfinite(spec.max_power_w) and spec.max_power_w > 0):
                raise DriverError(
                    f"mock plant: connector {spec.connector_id} bad max power {spec.max_power_w!r}"
                )
            conns[spec.connector_id] = _Connector(
                spec=spec,
                chademo=ctype == "CHAdeMO",
                modules=max(1, math.ceil(spec.max_power_w / POWER_MODULE_W)),
                ev_mac=default_ev_mac(spec.connector_id),
            )
        return conns

    def _check_compatible(self, ctx: DriverContext) -> None:
        if tuple(ctx.connectors) != self._specs or ctx.station_max_power_w != self._station_max_w:
            raise DriverError(
                f"mock plant for {self._state_dir} already exists with other connectors "
                "or station power; one state directory is one station"
            )

    def _get(self, connector_id: int) -> _Connector:
        c = self._conns.get(connector_id) if isinstance(connector_id, int) else None
        if c is None or isinstance(connector_id, bool):
            ids = ", ".join(str(i) for i in self._conns)
            raise DriverError(f"no connector {connector_id!r}; connectors: {ids}")
        return c

    def _refresh_demands(self) -> None:
        for c in self._conns.values():
            c.demand_w = c.demand()

    def _idle(self) -> bool:
        return all(c.power_w == 0.0 and c.demand_w == 0.0 for c in self._conns.values())

    def _advance(self, autosave: bool = True) -> None:
        now = self._clock()
        while self._t < now:
            if self._idle():  # nothing moves until the next input: jump
                self._t = now
                self._next_tick = math.floor((now - self._epoch) / TICK_S) + 1
                while self._epoch + self._next_tick * TICK_S <= now:
                    self._next_tick += 1
                break
            tick_at = self._epoch + self._next_tick * TICK_S
            end = min(tick_at, now)
            self._step(end - self._t)
            self._t = end
            if end >= tick_at:
                self._next_tick += 1
                self._refresh_demands()
        if autosave and self._dirty and now - self._saved_at >= SAVE_INTERVAL_S:
            self._save_quietly()

    def _step(self, dt: float) -> None:
        """Integrate ``dt`` seconds with the demands frozen (exact for piecewise-linear ramps)."""
        if dt <= 0:
            return
        new_w: dict[int, float] = {}
        reach_s: dict[int, float] = {}  # time to reach the new power; flat afterwards
        rising: list[_Connector] = []
        settled_w = 0.0
        for cid, c in self._conns.items():
            if c.demand_w > c.power_w:
                rising.append(c)
                continue
            drop = min(c.power_w - c.demand_w, DOWN_RAMP_W_PER_S * dt)
            new_w[cid] = c.power_w - drop
            reach_s[cid] = drop / DOWN_RAMP_W_PER_S
            settled_w += new_w[cid]
        if rising:
            # Falling connectors free headroom faster (50 kW/s) than risers take it
            # (20 kW/s), so their end-of-step power bounds the headroom exactly.
            headroom = self._station_max_w - settled_w - sum(c.power_w for c in rising)
            headroom = max(0.0, headroom)
            wants = {
                c.spec.connector_id: min(UP_RAMP_W_PER_S * dt, c.demand_w - c.power_w)
                for c in rising
            }
            # Water-filling: risers climb at the same rate, so the one that wants least
            # stops first and the rest share what is left equally.
            order = sorted(rising, key=lambda c: (wants[c.spec.connector_id], c.spec.connector_id))
            left = len(order)
            for c in order:
                cid = c.spec.connector_id
                give = min(wants[cid], headroom / left)
                headroom -= give
                left -= 1
                new_w[cid] = c.power_w + give
                reach_s[cid] = give / UP_RAMP_W_PER_S
        refresh = False
        for cid, c in self._conns.items():
            p0, p1, tr = c.power_w, new_w[cid], min(reach_s[cid], dt)
            energy_ws = (p0 + p1) / 2.0 * tr + p1 * (dt - tr)
            c.power_w = p1
            if energy_ws <= 0:
                continue
            energy_wh = energy_ws / 3600.0
            c.energy_wh += energy_wh
            self._dirty = True
            if c.plugged:
                c.soc_pct = min(100.0, c.soc_pct + energy_wh / c.capacity_wh * 100.0)
                if c.soc_pct >= 100.0:  # full: the EV stops asking at once
                    c.power_w = 0.0
                    refresh = True
        if refresh:
            self._refresh_demands()

    # -- state file
    def _load(self) -> None:
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise DriverError(f"mock meter: cannot read {self._path}: {exc}") from exc
        try:
            data: Any = json.loads(text)
            registers = data["energy_wh"]
            if not isinstance(registers, dict):
                raise TypeError("energy_wh is not an object")
            values = {str(k): float(v) for k, v in registers.items()}
        except (ValueError, TypeError, KeyError) as exc:
            raise DriverError(f"mock meter: {self._path} is not a register file: {exc}") from exc
        for key, value in values.items():
            if not (math.isfinite(value) and value >= 0):
                raise DriverError(f"mock meter: {self._path}: bad register {key}={value!r}")
            cid = int(key) if key.isdigit() else None
            if cid is not None and cid in self._conns:
                self._conns[cid].energy_wh = value
            else:  # a connector this configuration does not have: keep it untouched
                self._stored_extra[key] = value

    def _write_state(self) -> None:
        registers = dict(self._stored_extra)
        registers.update({str(cid): c.energy_wh for cid, c in self._conns.items()})
        data = {"format": _STATE_FORMAT, "energy_wh": registers}
        try:
            _write_atomically(self._path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            raise DriverError(f"mock meter: cannot write {self._path}: {exc}") from exc
        self._saved_at = self._t
        self._dirty = False

    def _save_quietly(self) -> None:
        try:
            self._write_state()
        except DriverError as exc:
            self._saved_at = self._t  # retry after the next interval, not on every read
            log.warning("%s; will retry", exc)


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DriverError(f"{what} must be a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise DriverError(f"{what} must be finite, got {value!r}")
    return result


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a crash leaves the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --------------------------------------------------------------------- sharing
_registry_lock = threading.Lock()
_plants: dict[Path, MockPlant] = {}


def plant_for(ctx: DriverContext) -> MockPlant:
    """The plant of the station whose state lives in ``ctx.state_dir``; takes a reference.

    The first call for a directory creates the plant (loading its register file);
    later calls return the same object and raise :class:`DriverError` if their
    connectors or station power differ. Pair every call with
    :meth:`MockPlant.release`; the last release saves and forgets the plant, so the
    next :func:`plant_for` loads it afresh from disk, as after a daemon restart.
    """
    key = Path(ctx.state_dir).resolve()
    with _registry_lock:
        plant = _plants.get(key)
        if plant is None:
            plant = MockPlant(ctx)
            plant._key = key
            _plants[key] = plant
        else:
            plant._check_compatible(ctx)
        plant._refs += 1
        return plant


def flush_plant(state_dir: Path) -> bool:
    """Save the shared plant of ``state_dir`` if one is live; True if there was one."""
    with _registry_lock:
        plant = _plants.get(Path(state_dir).resolve())
    if plant is None:
        return False
    plant.save()
    return True
