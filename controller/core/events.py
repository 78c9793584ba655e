"""Inputs of the charger core, named in the past tense: what happened outside it.

The runtime turns driver events, link changes, call results and timers into these
and feeds them to :meth:`controller.core.charger.Charger.handle`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Started:
    """The daemon has opened its state and is about to connect."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time has passed; due timers fire."""


@dataclass(frozen=True, slots=True)
class LinkUp:
    """The WebSocket to the CSMS is open."""


@dataclass(frozen=True, slots=True)
class LinkDown:
    """The WebSocket to the CSMS is gone."""


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """A CALL we sent got its CALLRESULT (payload as on the wire, camelCase)."""

    ref: Any
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallFailed:
    """A CALL we sent got a CALLERROR (code set), timed out, or could not go out."""

    ref: Any
    action: str
    reason: str  # "error" | "timeout" | "offline"
    code: str | None = None


@dataclass(frozen=True, slots=True)
class TxMessageDelivered:
    """The outbox row ``seq`` got its CALLRESULT."""

    seq: int
    action: str
    tx_local_id: int | None
    reply: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TxMessageFailed:
    """The outbox row ``seq`` got a CALLERROR (counts as a delivery attempt)."""

    seq: int
    action: str
    code: str


@dataclass(frozen=True, slots=True)
class Plugged:
    connector_id: int


@dataclass(frozen=True, slots=True)
class Unplugged:
    connector_id: int


@dataclass(frozen=True, slots=True)
class TagPresented:
    id_tag: str


@dataclass(frozen=True, slots=True)
class Touched:
    """The user touched the screen to show another connector."""

    connector_id: int


@dataclass(frozen=True, slots=True)
class FaultRaised:
    dtc: str
    connector_id: int = 0


@dataclass(frozen=True, slots=True)
class FaultCleared:
    dtc: str
    connector_id: int = 0


@dataclass(frozen=True, slots=True)
class PowerFailing:
    """Mains lost; the hold-up time runs (StarCharge models)."""


@dataclass(frozen=True, slots=True)
class Sampled:
    """Result of a :class:`~controller.core.commands.Sample` command.

    ``meter``/``power`` are driver readings (``drivers.interfaces.MeterReading`` /
    ``PowerStatus`` shaped objects) or None when the driver failed.
    """

    connector_id: int
    purpose: str
    meter: Any | None
    power: Any | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class FirmwareTrial:
    """At start: this run is a new firmware on trial ("pending"), or the old one back
    after a failed trial ("rolled_back")."""

    state: str


@dataclass(frozen=True, slots=True)
class FirmwareDownloaded:
    ok: bool
    path: str | None = None
    error: str | None = None
    signature_ok: bool | None = None  # signed updates: the signature over the file checked


@dataclass(frozen=True, slots=True)
class FirmwareInstallFailed:
    error: str


@dataclass(frozen=True, slots=True)
class UploadFinished:
    kind: str
    request_id: int | None
    ok: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ProfileConnected:
    """The link opened with this security profile."""

    profile: int


@dataclass(frozen=True, slots=True)
class ProfileFailed:
    """A connection attempt with this security profile failed."""

    profile: int
    reason: str


@dataclass(frozen=True, slots=True)
class SecurityEventOccurred:
    """A security event of the whitepaper seen outside the core (link, TLS, firmware)."""

    type: str
    tech_info: str | None = None
