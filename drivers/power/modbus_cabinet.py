"""Reference power-stage backend: a generic DC "power cabinet" over Modbus TCP.

This module owns the ``modbus_cabinet`` backend of the ``power`` kind: a cabinet of
power modules feeding the connectors, and the EV side of each connector, read and
driven through the register map below (pymodbus async TCP client). It is the
example a maker copies to write the backend of their own cabinet: keep the
contract (``drivers.interfaces.PowerStage``), change the map (R-HW 4).

Options (``[drivers.options.power]``):

* ``host`` (``"127.0.0.1"``), ``port`` (502), ``device_id`` (1): the cabinet's unit id.
* ``poll_interval_s`` (0.5): how often the background task polls every connector
  (plug state, faults); plug changes are seen at most this late.
* ``timeout_s`` (1.0): per request.
* ``ramp_down_s`` (5.0): how long ``disable`` waits for the output to be safe.
* ``safe_power_w`` (1.0): output power under which the output counts as safe.

Register map, version 1 (holding registers, function 3 to read, 16 to write;
every value big-endian, 32-bit values high word first)::

  Cabinet (address 0)
    0        map version                    uint16   must be 1 (0: still booting)
    1        connector count                uint16   >= the highest connector id used

  Connector n (base = 100 * n: connector 1 at 100, connector 2 at 200, ...)
    read -- capabilities, read once at start() before anything else:
    +0..+1   max output power               uint32   W
    +2       max output voltage             uint16   V
    +3       max output current             uint16   A
    read -- live, one request (+0..+32) per status() / poll:
    +4       power modules available        uint16
    +8..+9   measured output voltage        float32  V
    +10..+11 measured output current        float32  A
    +12..+13 output power                   float32  W
    +14..+15 power offered (set-point in force after the cabinet's own limits)
                                            float32  W
    +16..+17 fault word                     uint32   bits: FAULT_BITS below
    +18      plug state                     uint16   0 unplugged, 1 plugged
    +19      EV state of charge             uint16   %, 0xFFFF = unknown
    +20..+22 EV MAC                         3 x uint16, 6 bytes in order; 0 = unknown
    +23..+32 ISO 15118 contract id (eMAID)  10 registers of ASCII, 2 chars each
                                            (high byte first), NUL-padded; empty = none
    write:
    +40..+41 power set-point                uint32   W
    +42      enable                         uint16   1 = contactors closed, deliver
                                                     up to the set-point; 0 = ramp
                                                     down and open

Fault word bits (bit 0 = least significant) and the guide's DTCs they raise on
that connector (``FaultRaised`` when a bit sets, ``FaultCleared`` when it clears;
unlisted bits are logged and ignored)::

  0 0x200002 power module fault          16 0x200202 cabinet emergency stop
  1 0x200001 power module comm. fault    17 0x200204 cabinet door open
  2 0x200101 power module over-temp.     18 0x200203 cabinet water level
  3 0x100208 output relay control        19 0x200206 input over-voltage
  4 0x10020A insulation error            20 0x200208 input under-voltage
  5 0x100007 insulation warning          21 0x200207 input relay control
  6 0x100213 over-current                22 0x200209 circuit breaker tripped
  7 0x100214 output over-voltage         23 0x200008 surge protection
  8 0x100205 connector lock control      24 0x200003 PDU relay control
  9 0x100102 cable over-temperature      25 0x200004 PDU communication
 10 0x100216 PLC board offline           26 0x200102 PDU over-temperature
 11 0x10000C SECC socket connection      27 0x200104 power control fan failure
                                         28 0x20020C fusing error

Events: ``CablePlugged`` / ``CableUnplugged`` when the plug register changes (the
background poll started by ``start()``; ``status()`` sees changes too), the fault
bits as above, and ``0x100212`` (communication error with power cabinet, connector
0) after ``LINK_FAILURES_FOR_DTC`` polls in a row got no answer, cleared at the
next answer. Calls that cannot reach the cabinet raise
:class:`DriverTimeoutError` (no answer in time) or :class:`DriverCommunicationError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
from dataclasses import dataclass
from typing import Any

from drivers.interfaces import (
    CablePlugged,
    CableUnplugged,
    DriverCommunicationError,
    DriverContext,
    DriverError,
    DriverTimeoutError,
    FaultCleared,
    FaultRaised,
    PowerStatus,
)

try:
    from pymodbus.client import AsyncModbusTcpClient
    from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
except ImportError as exc:  # the registry turns this into a DriverError naming the backend
    raise ImportError(
        f"the modbus_cabinet power backend needs pymodbus: pip install 'evsectl[modbus]' ({exc})"
    ) from exc

__all__ = [
    "CABINET_LINK_DTC",
    "FAULT_BITS",
    "MAP_VERSION",
    "CabinetCapabilities",
    "ModbusPowerCabinet",
    "Reg",
    "base",
]

log = logging.getLogger(__name__)

MAP_VERSION = 1
CABINET_LINK_DTC = "0x100212"
LINK_FAILURES_FOR_DTC = 2
SOC_UNKNOWN = 0xFFFF
CONTRACT_ID_REGISTERS = 10


class Reg:
    """Addresses of the map: cabinet registers absolute, connector ones from ``base(n)``."""

    VERSION = 0
    CONNECTOR_COUNT = 1
    # connector, read
    MAX_POWER = 0
    MAX_VOLTAGE = 2
    MAX_CURRENT = 3
    CAPABILITIES_COUNT = 4
    MODULES = 4
    VOLTAGE = 8
    CURRENT = 10
    POWER = 12
    OFFERED = 14
    FAULTS = 16
    PLUG = 18
    SOC = 19
    EV_MAC = 20
    CONTRACT_ID = 23
    LIVE_COUNT = CONTRACT_ID + CONTRACT_ID_REGISTERS  # +0..+32 in one request
    # connector, write
    SETPOINT = 40
    ENABLE = 42


def base(connector_id: int) -> int:
    """First register of a connector's block."""
    return 100 * connector_id


FAULT_BITS: dict[int, str] = {
    0: "0x200002", 1: "0x200001", 2: "0x200101", 3: "0x100208", 4: "0x10020A",
    5: "0x100007", 6: "0x100213", 7: "0x100214", 8: "0x100205", 9: "0x100102",
    10: "0x100216", 11: "0x10000C",
    16: "0x200202", 17: "0x200204", 18: "0x200203", 19: "0x200206", 20: "0x200208",
    21: "0x200207", 22: "0x200209", 23: "0x200008", 24: "0x200003", 25: "0x200004",
    26: "0x200102", 27: "0x200104", 28: "0x20020C",
}


@dataclass(frozen=True, slots=True)
class CabinetCapabilities:
    """What the cabinet can deliver on one connector (read once, at start)."""

    max_power_w: float
    max_voltage_v: float
    max_current_a: float


@dataclass(slots=True)
class _Seen:
    """What the driver last saw of a connector: the edges are taken against it."""

    plugged: bool = False
    faults: int = 0


def _u32(regs: list[int], at: int) -> int:
    return (regs[at] << 16) | regs[at + 1]


def _f32(regs: list[int], at: int) -> float:
    return struct.unpack(">f", struct.pack(">HH", regs[at], regs[at + 1]))[0]


def _regs_u32(value: int) -> list[int]:
    return [(value >> 16) & 0xFFFF, value & 0xFFFF]


class ModbusPowerCabinet:
    """A :class:`~drivers.interfaces.PowerStage` driving a power cabinet over Modbus TCP.

    ``start()`` connects, reads the map version, the connector count and every
    connector's capabilities (``capabilities``), takes the plug state of every
    connector (``CablePlugged`` for those plugged) and starts the background poll.
    A cabinet that does not answer at start is not fatal: the poll keeps trying,
    raises the cabinet-link DTC, and the capabilities are read at the first answer,
    before anything else; calls made before then raise
    :class:`DriverCommunicationError`. A cabinet speaking another map version, or
    with fewer connectors than configured, is a :class:`DriverError`.

    ``set_limit(cid, None)`` is the connector's maximum: the lower of the
    cabinet's capability and the station's connector rating; a set-point above it
    is clamped. ``enable`` writes the set-point and the enable flag in one request
    (a cabinet that restarted gets both). ``disable`` returns once the cabinet
    reports the output under ``safe_power_w`` (:class:`DriverTimeoutError` after
    ``ramp_down_s``). ``module_counts`` holds the modules each connector last
    reported; ``requests`` counts the requests sent. One request at a time.
    """

    def __init__(self, ctx: DriverContext) -> None:
        self._ctx = ctx
        o = ctx.options
        self._host = str(o.get("host", "127.0.0.1"))
        self._port = _int(o.get("port", 502), "port", 1, 65535)
        self._unit = _int(o.get("device_id", 1), "device_id", 0, 247)
        self._poll_s = _positive(o.get("poll_interval_s", 0.5), "poll_interval_s")
        self._timeout_s = _positive(o.get("timeout_s", 1.0), "timeout_s")
        self._ramp_down_s = _positive(o.get("ramp_down_s", 5.0), "ramp_down_s")
        self._safe_w = _positive(o.get("safe_power_w", 1.0), "safe_power_w")
        self._rating = {c.connector_id: c.max_power_w for c in ctx.connectors}
        for cid in self._rating:
            if not 1 <= cid <= 600:
                raise DriverError(f"modbus cabinet: connector id {cid} outside the map (1..600)")
        self.capabilities: dict[int, CabinetCapabilities] = {}
        self.module_counts: dict[int, int] = {}
        self.requests = 0
        self._setpoint_w: dict[int, float | None] = dict.fromkeys(self._rating)
        self._seen = {cid: _Seen() for cid in self._rating}
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task | None = None
        self._link_failures = 0
        self._link_dtc = False
        self._started = False
        self._closed = False

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._closed:
            raise DriverError("modbus cabinet: closed; build a new one")
        if self._started:
            return
        self._client = AsyncModbusTcpClient(
            self._host, port=self._port, timeout=self._timeout_s, retries=0, reconnect_delay=0
        )
        self._started = True
        try:
            async with self._lock:
                await self._ensure_capabilities()
                for cid in self._rating:
                    await self._read_live(cid)
        except DriverCommunicationError as exc:
            log.warning("modbus cabinet: not reachable at start: %s", exc)
        except DriverError:
            self._client.close()
            self._closed = True
            raise
        self._poller = asyncio.get_running_loop().create_task(self._poll(), name="modbus cabinet poll")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(BaseException):
                await self._poller
        if self._client is not None:
            self._client.close()

    # ----------------------------------------------------------------- contract
    async def enable(self, connector_id: int) -> None:
        self._check(connector_id)
        async with self._lock:
            await self._ensure_capabilities()
            watts = self._clamp(connector_id, self._setpoint_w[connector_id])
            await self._write(base(connector_id) + Reg.SETPOINT, [*_regs_u32(watts), 1])

    async def disable(self, connector_id: int) -> None:
        self._check(connector_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ramp_down_s
        async with self._lock:
            await self._ensure_capabilities()
            await self._write(base(connector_id) + Reg.ENABLE, [0])
            while True:
                regs = await self._read_live(connector_id)
                if abs(_f32(regs, Reg.POWER)) < self._safe_w:
                    return
                if loop.time() >= deadline:
                    raise DriverTimeoutError(
                        f"modbus cabinet: connector {connector_id} still delivers "
                        f"{_f32(regs, Reg.POWER):.0f} W {self._ramp_down_s:g} s after disable"
                    )
                await asyncio.sleep(min(0.05, self._ramp_down_s / 10))

    async def set_limit(self, connector_id: int, power_w: float | None) -> None:
        self._check(connector_id)
        if power_w is not None and (
            isinstance(power_w, bool) or not isinstance(power_w, int | float)
            or not math.isfinite(power_w) or power_w < 0
        ):
            raise DriverError(f"modbus cabinet: set-point must be a number >= 0 or None, got {power_w!r}")
        async with self._lock:
            await self._ensure_capabilities()
            watts = self._clamp(connector_id, power_w)
            await self._write(base(connector_id) + Reg.SETPOINT, _regs_u32(watts))
            self._setpoint_w[connector_id] = power_w

    async def status(self, connector_id: int) -> PowerStatus:
        self._check(connector_id)
        async with self._lock:
            await self._ensure_capabilities()
            regs = await self._read_live(connector_id)
        values = [_f32(regs, a) for a in (Reg.POWER, Reg.VOLTAGE, Reg.CURRENT, Reg.OFFERED)]
        if not all(math.isfinite(v) for v in values):
            raise DriverCommunicationError(f"modbus cabinet: connector {connector_id}: non-finite {values!r}")
        power, voltage, current, offered = values
        soc = regs[Reg.SOC]
        return PowerStatus(
            plugged=regs[Reg.PLUG] != 0,
            output_power_w=power,
            voltage_v=voltage,
            current_a=current,
            offered_w=offered,
            soc_pct=soc if soc <= 100 else None,
            ev_mac=_mac(regs[Reg.EV_MAC : Reg.EV_MAC + 3]),
            contract_id=_ascii(regs[Reg.CONTRACT_ID : Reg.LIVE_COUNT], connector_id),
        )

    # ----------------------------------------------------------------- internals
    def _check(self, connector_id: int) -> None:
        if not self._started or self._closed:
            raise DriverError(f"modbus cabinet: {'closed' if self._closed else 'not started'}")
        if connector_id not in self._rating:
            raise DriverError(f"modbus cabinet: no connector {connector_id!r}")

    def _clamp(self, connector_id: int, power_w: float | None) -> int:
        top = min(self.capabilities[connector_id].max_power_w, self._rating[connector_id])
        return round(top if power_w is None else min(power_w, top))

    async def _ensure_capabilities(self) -> None:
        """Read the map version, the connector count and the capabilities, once."""
        if self.capabilities:
            return
        version, count = await self._read(Reg.VERSION, 2)
        if version == 0:  # a cabinet still booting answers with its registers cleared
            raise DriverCommunicationError("modbus cabinet: not ready (map version 0)")
        if version != MAP_VERSION:
            raise DriverError(f"modbus cabinet: register map version {version}, this driver speaks {MAP_VERSION}")
        missing = sorted(cid for cid in self._rating if cid > count)
        if missing:
            raise DriverError(f"modbus cabinet: the cabinet has {count} connector(s), no connector {missing}")
        caps = {}
        for cid in self._rating:
            regs = await self._read(base(cid), Reg.CAPABILITIES_COUNT)
            caps[cid] = CabinetCapabilities(
                float(_u32(regs, Reg.MAX_POWER)), float(regs[Reg.MAX_VOLTAGE]), float(regs[Reg.MAX_CURRENT])
            )
        self.capabilities = caps
        log.info("modbus cabinet %s:%s: %s", self._host, self._port, caps)

    async def _read_live(self, connector_id: int) -> list[int]:
        """Read a connector's live block; emit the plug and fault edges it shows."""
        regs = await self._read(base(connector_id), Reg.LIVE_COUNT)
        self.module_counts[connector_id] = regs[Reg.MODULES]
        seen = self._seen[connector_id]
        plugged = regs[Reg.PLUG] != 0
        if plugged != seen.plugged:
            seen.plugged = plugged
            self._ctx.emit(CablePlugged(connector_id) if plugged else CableUnplugged(connector_id))
        faults = _u32(regs, Reg.FAULTS)
        changed = faults ^ seen.faults
        seen.faults = faults
        for bit in range(32):
            if not changed >> bit & 1:
                continue
            dtc = FAULT_BITS.get(bit)
            if dtc is None:
                log.warning("modbus cabinet: connector %s: unmapped fault bit %s", connector_id, bit)
            elif faults >> bit & 1:
                self._ctx.emit(FaultRaised(dtc, connector_id))
            else:
                self._ctx.emit(FaultCleared(dtc, connector_id))
        return regs

    async def _poll(self) -> None:
        while not self._closed:
            try:
                async with self._lock:
                    await self._ensure_capabilities()
                    for cid in self._rating:
                        await self._read_live(cid)
            except DriverCommunicationError as exc:
                self._link(False, exc)
            except DriverError as exc:  # a wrong map: nothing to poll, say it once
                log.error("modbus cabinet: polling stopped: %s", exc)
                return
            else:
                self._link(True)
            await asyncio.sleep(self._poll_s)

    def _link(self, ok: bool, exc: Exception | None = None) -> None:
        if ok:
            self._link_failures = 0
            if self._link_dtc:
                self._link_dtc = False
                self._ctx.emit(FaultCleared(CABINET_LINK_DTC, 0))
            return
        self._link_failures += 1
        log.debug("modbus cabinet: poll failed: %s", exc)
        if self._link_failures >= LINK_FAILURES_FOR_DTC and not self._link_dtc:
            self._link_dtc = True
            log.error("modbus cabinet: no answer from %s:%s: %s", self._host, self._port, exc)
            self._ctx.emit(FaultRaised(CABINET_LINK_DTC, 0))

    async def _read(self, address: int, count: int) -> list[int]:
        resp = await self._request(
            lambda: self._client.read_holding_registers(address, count=count, device_id=self._unit),
            f"read of {count} at {address}",
        )
        if len(resp.registers) < count:
            raise DriverCommunicationError(f"modbus cabinet: sent {len(resp.registers)} of {count} registers")
        return list(resp.registers[:count])

    async def _write(self, address: int, values: list[int]) -> None:
        await self._request(
            lambda: self._client.write_registers(address, values, device_id=self._unit),
            f"write of {len(values)} at {address}",
        )

    async def _request(self, send: Any, what: str) -> Any:
        where = f"{self._host}:{self._port} unit {self._unit}"
        if not self._client.connected:
            try:
                ok = await asyncio.wait_for(self._client.connect(), self._timeout_s)
            except TimeoutError as exc:
                raise DriverTimeoutError(f"modbus cabinet: connect to {where} timed out") from exc
            except (OSError, ModbusException) as exc:
                raise DriverCommunicationError(f"modbus cabinet: cannot connect to {where}: {exc}") from exc
            if not ok:
                raise DriverCommunicationError(f"modbus cabinet: cannot connect to {where}")
        self.requests += 1
        try:
            resp = await asyncio.wait_for(send(), self._timeout_s * 2)
        except (TimeoutError, ModbusIOException) as exc:
            self._client.close()  # drop a half-read frame; reconnect next time
            raise DriverTimeoutError(f"modbus cabinet: no answer to the {what} ({where})") from exc
        except (ConnectionException, ModbusException, OSError) as exc:
            self._client.close()
            raise DriverCommunicationError(f"modbus cabinet: {what} ({where}): {exc}") from exc
        if resp.isError():
            raise DriverCommunicationError(f"modbus cabinet: refused the {what} ({where}): {resp}")
        return resp


def _mac(regs: list[int]) -> str | None:
    raw = b"".join(r.to_bytes(2, "big") for r in regs)
    return None if not any(raw) else ":".join(f"{b:02X}" for b in raw)


def _ascii(regs: list[int], connector_id: int) -> str | None:
    raw = b"".join(r.to_bytes(2, "big") for r in regs).rstrip(b"\0")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DriverCommunicationError(f"modbus cabinet: connector {connector_id}: contract id not ASCII") from exc
    if not text.isprintable():
        raise DriverCommunicationError(f"modbus cabinet: connector {connector_id}: contract id {text!r}")
    return text or None


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise DriverError(f"modbus cabinet: {what} must be a positive number, got {value!r}")
    return float(value)


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DriverError(f"modbus cabinet: {what} must be an integer {low}..{high}, got {value!r}")
    return value
