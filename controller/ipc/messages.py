"""The HMI contract: what the controller tells the screen, and what the screen asks.

Standard library only, and nothing else of the project: the HMI process
imports this module and no other part of the controller (checked by
import-linter). One message per line, UTF-8 JSON, ``{"type": ..., "v":
PROTOCOL_VERSION, ...fields}``. A peer that reads a different major version
closes the connection (the HMI then shows "out of service").

Controller -> HMI: :class:`Snapshot` (the whole state, sent on connect and on
every change). HMI -> controller: :class:`Touched` (connector chosen by touch),
:class:`Awake` (someone touched the screen: restart the idle timer).

The HMI never decides anything: it renders snapshots and sends intents.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

PROTOCOL_VERSION = 1
MAX_LINE = 1 << 20  # a snapshot is a few KB; anything longer is a broken peer


class ProtocolError(ValueError):
    """A line that is not a message of this protocol version."""


@dataclass(frozen=True)
class Cost:
    currency: str
    total_cost: float


@dataclass(frozen=True)
class Fault:
    error_code: str
    dtc: str | None = None
    info: str | None = None


@dataclass(frozen=True)
class Picture:
    path: str  # absolute path of a PNG the controller stored
    version: int  # changes whenever the file is replaced


@dataclass(frozen=True)
class ConnectorView:
    id: int
    type: str
    status: str  # OCPP ChargePointStatus: Available, Preparing, Charging, Finishing, Faulted, ...
    plugged: bool = False
    energy_wh: float = 0.0
    power_w: float = 0.0
    soc: float | None = None
    duration_s: int | None = None
    cost: Cost | None = None  # None until a CostUpdated arrived: the cost area stays empty
    error: Fault | None = None
    qr_url: str | None = None  # QRcode1 / QRcode2


@dataclass(frozen=True)
class Snapshot:
    link: str = "disconnected"
    model: str = ""
    screen: tuple[int, int] = (800, 480)
    connectors: tuple[ConnectorView, ...] = ()
    selected_connector: int = 1
    auth_options: tuple[str, ...] = ()
    operative: bool = True
    tariff: Picture | None = None
    logo: Picture | None = None
    screensaver: tuple[Picture, ...] = ()
    idle_s: float = 120.0  # screensaver after this long without a touch or a plug
    awake_seq: int = 0  # bumps when the controller saw activity (plug, badge)
    config_error: str | None = None  # a settings file refused at boot: "file:line: key: why"


@dataclass(frozen=True)
class Touched:
    connector_id: int


@dataclass(frozen=True)
class Awake:
    pass


Message = Snapshot | Touched | Awake
_TYPES: dict[str, type] = {"Snapshot": Snapshot, "Touched": Touched, "Awake": Awake}
_NESTED: dict[tuple[str, str], Any] = {
    ("ConnectorView", "cost"): Cost,
    ("ConnectorView", "error"): Fault,
    ("Snapshot", "tariff"): Picture,
    ("Snapshot", "logo"): Picture,
}


def encode(msg: Message) -> bytes:
    """One JSON line (with its newline)."""
    name = type(msg).__name__
    if name not in _TYPES:
        raise TypeError(f"not a protocol message: {msg!r}")
    body = {"type": name, "v": PROTOCOL_VERSION, **asdict(msg)}
    return (json.dumps(body, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def decode(line: bytes | str) -> Message:
    """Parse one line; raise :class:`ProtocolError` on anything else."""
    if len(line) > MAX_LINE:
        raise ProtocolError("line too long")
    try:
        body = json.loads(line)
    except ValueError as e:
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(body, dict):
        raise ProtocolError("not an object")
    if body.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {body.get('v')!r}, expected {PROTOCOL_VERSION}")
    cls = _TYPES.get(body.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise ProtocolError(f"unknown message type {body.get('type')!r}")
    try:
        return _build(cls, body)  # type: ignore[no-any-return]
    except (TypeError, ValueError, KeyError) as e:
        raise ProtocolError(f"bad {cls.__name__}: {e}") from None


def _build(cls: type, body: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in body:
            continue  # newer peers may drop optional fields: the default applies
        value = body[f.name]
        nested = _NESTED.get((cls.__name__, f.name))
        if nested is not None and value is not None:
            value = _build(nested, value)
        elif cls is Snapshot and f.name == "connectors":
            value = tuple(_build(ConnectorView, c) for c in value)
        elif cls is Snapshot and f.name == "screensaver":
            value = tuple(_build(Picture, p) for p in value)
        elif cls is Snapshot and f.name in ("screen", "auth_options"):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def out_of_service() -> Snapshot:
    """What the HMI shows while it has no controller."""
    return Snapshot(link="no-controller", operative=False)


__all__ = [
    "PROTOCOL_VERSION", "ProtocolError", "Cost", "Fault", "Picture", "ConnectorView", "Snapshot",
    "Touched", "Awake", "Message", "encode", "decode", "out_of_service",
]
