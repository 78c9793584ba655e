"""Outputs of the charger core, named in the imperative: what the runtime must do.

The core never performs I/O. It returns these; the asyncio runtime executes them
in order, after the answer to the CSMS request that caused them has gone out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class SendCall:
    """Send a non-transaction CALL now; the answer comes back tagged with ``ref``."""

    action: str
    payload: dict[str, Any]
    ref: Any = None


@dataclass(frozen=True, slots=True)
class WakeOutbox:
    """A transaction message was queued on disk; deliver what is pending."""

    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Sample:
    """Read the meter and the power stage of a connector; answer with ``Sampled``."""

    connector_id: int
    purpose: str  # "start" | "stop" | "periodic" | "clock" | "live" | "trigger" | "recover"


@dataclass(frozen=True, slots=True)
class EnablePower:
    connector_id: int


@dataclass(frozen=True, slots=True)
class DisablePower:
    connector_id: int


@dataclass(frozen=True, slots=True)
class SetPowerLimit:
    """The charging-profile limit in force for a connector (None = its own maximum)."""

    connector_id: int
    power_w: float | None


@dataclass(frozen=True, slots=True)
class DownloadFirmware:
    """Fetch the firmware artifact; answer with ``FirmwareDownloaded``. For a signed
    update (SignedUpdateFirmware) the file's signature is checked after the download."""

    location: str
    retries: int
    retry_interval_s: int
    signature: str | None = None
    signing_certificate: str | None = None


@dataclass(frozen=True, slots=True)
class InstallFirmware:
    """Install the downloaded artifact and switch to it (the process leaves on success);
    answer ``FirmwareInstallFailed`` otherwise."""

    path: str


@dataclass(frozen=True, slots=True)
class CommitFirmware:
    """The firmware trial is over (confirmed, or its failure reported): clear the marker."""


@dataclass(frozen=True, slots=True)
class UploadBundle:
    """Build a diagnostics / log bundle for the window and upload it; answer ``UploadFinished``."""

    kind: str  # "diagnostics" | "DiagnosticsLog" | "SecurityLog"
    location: str
    file_name: str
    start: str | None
    stop: str | None
    retries: int
    retry_interval_s: int
    request_id: int | None


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Close the link and connect again (a new security profile or credentials)."""


@dataclass(frozen=True, slots=True)
class SetClock:
    """Set the wall clock from the CSMS's currentTime."""

    wall: datetime


@dataclass(frozen=True, slots=True)
class SetPingInterval:
    interval_s: int


@dataclass(frozen=True, slots=True)
class Restart:
    """Leave the process: re-exec (soft), platform reboot (hard) or exit (power lost)."""

    kind: str  # "soft" | "hard" | "power_lost"


Command = (
    SendCall | WakeOutbox | Sample | EnablePower | DisablePower | SetPowerLimit | SetClock | SetPingInterval | Restart
    | DownloadFirmware | InstallFirmware | CommitFirmware | UploadBundle | Reconnect
)
