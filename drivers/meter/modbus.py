"""DC energy meter over Modbus TCP or RTU (pymodbus), with register maps as data.

This module owns the Modbus meter backend: its options, the register maps
(``drivers/meter/maps/*.toml``, format described in ``maps/generic.toml``), the
batching of a map's quantities into as few read requests as the map allows, the
decoding into Wh / W / V / A, and the signed reading (OCMF) where a map has one.
Communication failures come out as :class:`DriverTimeoutError` (no answer in
time) or :class:`DriverCommunicationError` (anything else); the controller turns
them into the PowerMeterFailure DTC (R-HW 1).

Options (``[drivers.options.meter]``):

* ``transport``: ``"tcp"`` (default) or ``"rtu"``.
* TCP: ``host`` (default ``"127.0.0.1"``), ``port`` (502).
* RTU: ``serial_port`` (e.g. ``"/dev/ttyUSB0"``), ``baudrate`` (9600), ``parity``
  (``"N"``/``"E"``/``"O"``), ``stopbits`` (1), ``bytesize`` (8).
* ``device_id``: the Modbus unit id of every connector's meter (default 1);
  ``device_ids``: a table connector id -> unit id (``{1 = 1, 2 = 2}``) overriding it.
* ``map``: a map name in ``drivers/meter/maps`` (default ``"generic"``) or a path
  to a ``.toml`` file.
* ``timeout_s`` (1.0): per request; ``retries`` (1): extra attempts per read.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.interfaces import (
    DriverCommunicationError,
    DriverContext,
    DriverError,
    DriverTimeoutError,
    MeterReading,
)

try:
    from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
    from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
except ImportError as exc:  # the registry turns this into a DriverError naming the backend
    raise ImportError(
        f"the modbus meter backend needs pymodbus: pip install 'evsectl[modbus]' ({exc})"
    ) from exc

__all__ = ["MAPS_DIR", "ModbusMeter", "RegisterMap", "load_map", "plan_reads", "decode"]

log = logging.getLogger(__name__)

MAPS_DIR = Path(__file__).with_name("maps")

_TYPES: dict[str, tuple[int, str]] = {  # type -> (registers, struct code)
    "uint16": (1, "H"), "int16": (1, "h"),
    "uint32": (2, "I"), "int32": (2, "i"), "float32": (2, "f"),
    "uint64": (4, "Q"), "int64": (4, "q"), "float64": (4, "d"),
}
_UNITS: dict[str, dict[str, float]] = {
    "energy": {"Wh": 1.0, "kWh": 1000.0},
    "power": {"W": 1.0, "kW": 1000.0},
    "voltage": {"V": 1.0},
    "current": {"A": 1.0, "mA": 0.001},
}
_FUNCTIONS = ("holding", "input")
MODBUS_MAX_REGISTERS = 125


# --------------------------------------------------------------------- maps
@dataclass(frozen=True, slots=True)
class Quantity:
    name: str  # energy | power | voltage | current
    address: int
    type: str
    scale: float
    factor: float  # unit -> base unit (kWh -> Wh: 1000)
    word_order: str
    byte_order: str

    @property
    def count(self) -> int:
        return _TYPES[self.type][0]


@dataclass(frozen=True, slots=True)
class OcmfSpec:
    length_address: int
    string_address: int
    max_registers: int


@dataclass(frozen=True, slots=True)
class RegisterMap:
    name: str
    function: str
    max_registers: int
    max_gap: int
    quantities: tuple[Quantity, ...]
    ocmf: OcmfSpec | None


def load_map(name_or_path: str | Path) -> RegisterMap:
    """Read a map by name (``maps/<name>.toml``) or path; DriverError when invalid."""
    raw = str(name_or_path)
    path = Path(raw)
    if path.suffix != ".toml" and "/" not in raw:
        path = MAPS_DIR / f"{raw}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        known = ", ".join(sorted(p.stem for p in MAPS_DIR.glob("*.toml")))
        raise DriverError(f"modbus meter: no register map {raw!r} (maps: {known})") from exc
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DriverError(f"modbus meter: cannot read register map {path}: {exc}") from exc
    try:
        return _parse_map(data, default_name=path.stem)
    except (KeyError, TypeError, ValueError) as exc:
        raise DriverError(f"modbus meter: bad register map {path}: {exc}") from exc


def _parse_map(data: Mapping[str, Any], default_name: str) -> RegisterMap:
    meter = dict(data.get("meter", {}))
    function = meter.get("function", "holding")
    if function not in _FUNCTIONS:
        raise ValueError(f"function must be one of {_FUNCTIONS}, got {function!r}")
    max_registers = _int(meter.get("max_registers", MODBUS_MAX_REGISTERS), "max_registers")
    if not 1 <= max_registers <= MODBUS_MAX_REGISTERS:
        raise ValueError(f"max_registers must be 1..{MODBUS_MAX_REGISTERS}")
    max_gap = _int(meter.get("max_gap", 0), "max_gap")
    if max_gap < 0:
        raise ValueError("max_gap must be >= 0")
    byte_order = _order(meter.get("byte_order", "big"), "byte_order")
    word_order = _order(meter.get("word_order", "big"), "word_order")
    quantities = []
    for qname, spec in dict(data.get("quantities", {})).items():
        if qname not in _UNITS:
            raise ValueError(f"unknown quantity {qname!r}; known: {', '.join(_UNITS)}")
        qtype = spec.get("type")
        if qtype not in _TYPES:
            raise ValueError(f"{qname}: type {qtype!r}; known: {', '.join(_TYPES)}")
        unit = spec.get("unit", next(iter(_UNITS[qname])))
        if unit not in _UNITS[qname]:
            raise ValueError(f"{qname}: unit {unit!r}; known: {', '.join(_UNITS[qname])}")
        scale = spec.get("scale", 1)
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
            raise ValueError(f"{qname}: scale must be a number")
        address = _int(spec.get("address"), f"{qname}.address")
        if not 0 <= address <= 0xFFFF - _TYPES[qtype][0] + 1:
            raise ValueError(f"{qname}: address out of range")
        quantities.append(Quantity(
            qname, address, qtype, float(scale), _UNITS[qname][unit],
            _order(spec.get("word_order", word_order), f"{qname}.word_order"),
            _order(spec.get("byte_order", byte_order), f"{qname}.byte_order"),
        ))
    if not any(q.name == "energy" for q in quantities):
        raise ValueError("the map has no energy quantity")
    ocmf = None
    if "ocmf" in data:
        o = data["ocmf"]
        ocmf = OcmfSpec(
            _int(o["length_address"], "ocmf.length_address"),
            _int(o["string_address"], "ocmf.string_address"),
            _int(o.get("max_registers", MODBUS_MAX_REGISTERS), "ocmf.max_registers"),
        )
    return RegisterMap(
        str(meter.get("name", default_name)), function, max_registers, max_gap,
        tuple(sorted(quantities, key=lambda q: q.address)), ocmf,
    )


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return value


def _order(value: Any, what: str) -> str:
    if value not in ("big", "little"):
        raise ValueError(f"{what} must be 'big' or 'little', got {value!r}")
    return value


# --------------------------------------------------------------------- batching
@dataclass(frozen=True, slots=True)
class ReadBlock:
    address: int
    count: int
    quantities: tuple[Quantity, ...]


def plan_reads(regmap: RegisterMap) -> tuple[ReadBlock, ...]:
    """Group the map's quantities into the fewest reads within max_registers/max_gap."""
    blocks: list[ReadBlock] = []
    current: list[Quantity] = []
    start = end = 0  # end: one past the last register of the current block
    for q in regmap.quantities:  # sorted by address
        q_end = q.address + q.count
        if current and q.address - end <= regmap.max_gap and max(end, q_end) - start <= regmap.max_registers:
            current.append(q)
            end = max(end, q_end)
            continue
        if current:
            blocks.append(ReadBlock(start, end - start, tuple(current)))
        current, start, end = [q], q.address, q_end
    if current:
        blocks.append(ReadBlock(start, end - start, tuple(current)))
    return tuple(blocks)


def decode(q: Quantity, registers: list[int]) -> float:
    """The quantity's value in its base unit (Wh, W, V, A) from its raw registers."""
    words = list(registers[: q.count])
    if q.word_order == "little":
        words.reverse()
    raw = b"".join(
        w.to_bytes(2, "big" if q.byte_order == "big" else "little") for w in words
    )
    (value,) = struct.unpack(">" + _TYPES[q.type][1], raw)
    return float(value) * q.scale * q.factor


# --------------------------------------------------------------------- backend
class ModbusMeter:
    """A :class:`~drivers.interfaces.Meter` reading a DC meter over Modbus.

    ``read(connector_id)`` reads the map's quantities of that connector's unit id
    in as few requests as the map allows and returns a :class:`MeterReading`;
    quantities a map lacks read as 0.0. ``read_ocmf(connector_id)`` returns the
    meter's signed reading (OCMF text) or None when the map has none or the meter
    holds none. ``requests`` counts the requests sent (tests, bench). One request
    at a time: the bus is shared by every connector's meter.
    """

    def __init__(self, ctx: DriverContext) -> None:
        self._ctx = ctx
        opts = dict(ctx.options)
        self._transport = str(opts.get("transport", "tcp")).lower()
        if self._transport not in ("tcp", "rtu"):
            raise DriverError(f"modbus meter: transport must be tcp or rtu, got {self._transport!r}")
        self._map = load_map(opts.get("map", "generic"))
        self._blocks = plan_reads(self._map)
        self._timeout_s = _positive(opts.get("timeout_s", 1.0), "timeout_s")
        retries = opts.get("retries", 1)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise DriverError(f"modbus meter: retries must be an integer >= 0, got {retries!r}")
        self._retries = retries
        self._unit_ids = self._unit_ids_option(ctx, opts)
        self._opts = opts
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._started = False
        self._closed = False
        self.requests = 0

    @property
    def register_map(self) -> RegisterMap:
        return self._map

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._closed:
            raise DriverError("modbus meter: closed; build a new one")
        if self._started:
            return
        self._client = self._make_client()
        self._started = True
        try:  # not fatal: the meter may come up after us; read() reconnects
            await self._ensure_connected()
        except DriverCommunicationError as exc:
            log.warning("modbus meter: not reachable at start: %s", exc)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._client is not None:
            self._client.close()

    # ----------------------------------------------------------------- contract
    async def read(self, connector_id: int) -> MeterReading:
        unit = self._unit_for(connector_id)
        values: dict[str, float] = {}
        async with self._lock:
            for block in self._blocks:
                regs = await self._read_registers(unit, block.address, block.count)
                for q in block.quantities:
                    offset = q.address - block.address
                    values[q.name] = decode(q, regs[offset : offset + q.count])
        energy = values.get("energy", 0.0)
        if not math.isfinite(energy) or energy < 0:
            raise DriverCommunicationError(f"modbus meter: implausible energy {energy!r}")
        others = [values.get(n, 0.0) for n in ("power", "voltage", "current")]
        if not all(math.isfinite(v) for v in others):
            raise DriverCommunicationError(f"modbus meter: non-finite value in {values!r}")
        return MeterReading(int(energy), *(float(v) for v in others))

    async def read_ocmf(self, connector_id: int) -> str | None:
        """The meter's last signed reading (OCMF text), or None if there is none."""
        unit = self._unit_for(connector_id)
        spec = self._map.ocmf
        if spec is None:
            return None
        async with self._lock:
            (length,) = await self._read_registers(unit, spec.length_address, 1)
            if length == 0:
                return None
            count = (length + 1) // 2
            if count > spec.max_registers:
                raise DriverCommunicationError(f"modbus meter: OCMF length {length} too long")
            regs: list[int] = []
            address = spec.string_address
            while len(regs) < count:
                n = min(self._map.max_registers, count - len(regs))
                regs += await self._read_registers(unit, address, n)
                address += n
        raw = b"".join(w.to_bytes(2, "big") for w in regs)[:length]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DriverCommunicationError(f"modbus meter: OCMF not UTF-8: {exc}") from exc

    # ----------------------------------------------------------------- internals
    def _make_client(self) -> Any:
        o = self._opts
        common = {"timeout": self._timeout_s, "retries": 0, "reconnect_delay": 0}
        if self._transport == "tcp":
            return AsyncModbusTcpClient(
                str(o.get("host", "127.0.0.1")), port=int(o.get("port", 502)), **common
            )
        port = o.get("serial_port")
        if not port:
            raise DriverError("modbus meter: transport rtu needs option serial_port")
        return AsyncModbusSerialClient(
            str(port), baudrate=int(o.get("baudrate", 9600)), parity=str(o.get("parity", "N")),
            stopbits=int(o.get("stopbits", 1)), bytesize=int(o.get("bytesize", 8)), **common,
        )

    def _unit_for(self, connector_id: int) -> int:
        if not self._started or self._closed:
            raise DriverError(f"modbus meter: {'closed' if self._closed else 'not started'}")
        try:
            return self._unit_ids[connector_id]
        except (KeyError, TypeError):
            raise DriverError(f"modbus meter: no connector {connector_id!r}") from None

    async def _ensure_connected(self) -> None:
        if self._client.connected:
            return
        try:
            ok = await asyncio.wait_for(self._client.connect(), self._timeout_s)
        except (TimeoutError, asyncio.TimeoutError) as exc:
            raise DriverTimeoutError(f"modbus meter: connect timed out ({self._where()})") from exc
        except (OSError, ModbusException) as exc:
            raise DriverCommunicationError(f"modbus meter: cannot connect ({self._where()}): {exc}") from exc
        if not ok:
            raise DriverCommunicationError(f"modbus meter: cannot connect ({self._where()})")

    async def _read_registers(self, unit: int, address: int, count: int) -> list[int]:
        fn = (
            self._client.read_holding_registers
            if self._map.function == "holding"
            else self._client.read_input_registers
        )
        last: DriverCommunicationError | None = None
        for _ in range(self._retries + 1):
            try:
                await self._ensure_connected()
                self.requests += 1
                resp = await asyncio.wait_for(
                    fn(address, count=count, device_id=unit), self._timeout_s * 2
                )
            except DriverCommunicationError as exc:
                last = exc
                continue
            except (TimeoutError, asyncio.TimeoutError, ModbusIOException) as exc:
                last = DriverTimeoutError(
                    f"modbus meter: no answer from unit {unit} at {address} ({self._where()})"
                )
                last.__cause__ = exc
                self._client.close()  # drop a half-read frame; reconnect next time
                continue
            except (ConnectionException, ModbusException, OSError) as exc:
                last = DriverCommunicationError(f"modbus meter: unit {unit}: {exc}")
                last.__cause__ = exc
                self._client.close()
                continue
            if resp.isError():
                raise DriverCommunicationError(
                    f"modbus meter: unit {unit} refused read of {count} at {address}: {resp}"
                )
            if len(resp.registers) < count:
                last = DriverCommunicationError(
                    f"modbus meter: unit {unit} sent {len(resp.registers)} of {count} registers"
                )
                continue
            return list(resp.registers[:count])
        assert last is not None
        raise last

    def _where(self) -> str:
        o = self._opts
        if self._transport == "tcp":
            return f"tcp {o.get('host', '127.0.0.1')}:{o.get('port', 502)}"
        return f"rtu {o.get('serial_port')}"

    @staticmethod
    def _unit_ids_option(ctx: DriverContext, opts: Mapping[str, Any]) -> dict[int, int]:
        default = opts.get("device_id", 1)
        table = opts.get("device_ids", {})
        if not isinstance(table, Mapping):
            raise DriverError(f"modbus meter: device_ids must be a table, got {table!r}")
        ids: dict[int, int] = {}
        for spec in ctx.connectors:
            unit = table.get(str(spec.connector_id), table.get(spec.connector_id, default))
            if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit <= 247:
                raise DriverError(f"modbus meter: bad unit id {unit!r} for connector {spec.connector_id}")
            ids[spec.connector_id] = unit
        known = {str(c) for c in ids} | set(ids)
        for key in table:
            if key not in known:
                raise DriverError(f"modbus meter: device_ids: no connector {key!r}")
        return ids


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise DriverError(f"modbus meter: {what} must be a positive number, got {value!r}")
    return float(value)
