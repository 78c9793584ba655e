"""Firmware updates, diagnostics and log uploads: the OCPP side, with no I/O (R-FW).

:class:`Maintenance` answers UpdateFirmware, GetDiagnostics and GetLog, runs their
status sequences (FirmwareStatusNotification, DiagnosticsStatusNotification,
LogStatusNotification) and tells the runtime what to transfer or install through
commands; the runtime reports back with events. A firmware is installed only while
no transaction runs (it waits for the last one to end), and the new version
confirms itself by reaching BootNotification Accepted (the runtime's trial marker;
see ``controller.firmware``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import commands as cmd
from .timefmt import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)

SCHEMES = ("ftp", "http", "https")


@dataclass
class _Firmware:
    location: str
    retries: int
    retry_interval_s: int
    path: str | None = None


def _url_ok(url: str) -> bool:
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://[^/\s]+", url or "")
    return bool(m) and m.group(1).lower() in SCHEMES


class Maintenance:
    def __init__(
        self,
        *,
        send: Callable[..., None],
        emit: Callable[[cmd.Command], None],
        wall: Callable[[], datetime],
        monotonic: Callable[[], float],
        timers: dict[str, float],
        busy: Callable[[], bool],
        box_identifier: Callable[[], str],
    ) -> None:
        self.send = send
        self.emit = emit
        self.wall = wall
        self.monotonic = monotonic
        self.timers = timers
        self.busy = busy
        self.box_identifier = box_identifier
        self.firmware_status = "Idle"
        self.diagnostics_status = "Idle"
        self.log_status = "Idle"
        self.log_request_id: int | None = None
        self.firmware: _Firmware | None = None
        self.installing = False
        self.trial: str | None = None  # "pending" | "rolled_back" after a firmware switch

    # ------------------------------------------------------------ status notifications
    def _firmware(self, status: str) -> None:
        self.firmware_status = status
        log.info("firmware: %s", status)
        self.send("FirmwareStatusNotification", {"status": status})

    def _diagnostics(self, status: str) -> None:
        self.diagnostics_status = status
        self.send("DiagnosticsStatusNotification", {"status": status})

    def _log(self, status: str, request_id: int | None) -> None:
        self.log_status = status
        payload: dict[str, Any] = {"status": status}
        if request_id is not None:
            payload["requestId"] = request_id
        self.send("LogStatusNotification", payload)

    def trigger_firmware(self) -> None:
        self.send("FirmwareStatusNotification", {"status": self._current_firmware_status()}, triggered=True)

    def trigger_diagnostics(self) -> None:
        status = "Uploading" if self.diagnostics_status == "Uploading" else "Idle"
        self.send("DiagnosticsStatusNotification", {"status": status}, triggered=True)

    def trigger_log(self) -> None:
        payload: dict[str, Any] = {"status": "Uploading" if self.log_status == "Uploading" else "Idle"}
        if payload["status"] == "Uploading" and self.log_request_id is not None:
            payload["requestId"] = self.log_request_id
        self.send("LogStatusNotification", payload, triggered=True)

    def _current_firmware_status(self) -> str:
        # OCPP 1.6 §5.16: Idle unless busy with a firmware update
        return self.firmware_status if self.firmware_status in ("Downloading", "Downloaded", "Installing") else "Idle"

    # ------------------------------------------------------------ UpdateFirmware
    def update_firmware(self, p: dict[str, Any]) -> dict[str, Any]:
        try:
            retrieve = parse_rfc3339(p["retrieveDate"])
        except ValueError:
            retrieve = self.wall()
        self.firmware = _Firmware(p["location"], int(p.get("retries") or 0), int(p.get("retryInterval") or 0))
        delay = max(0.0, (retrieve - self.wall()).total_seconds())
        self.timers["firmware"] = self.monotonic() + delay
        log.info("firmware update from %s at %s", _redact(p["location"]), rfc3339(retrieve))
        return {}

    def fire(self) -> None:
        """The firmware timer: retrieveDate reached."""
        fw = self.firmware
        if fw is None:
            return
        if not _url_ok(fw.location):
            self._firmware("DownloadFailed")
            self.firmware = None
            return
        self._firmware("Downloading")
        self.emit(cmd.DownloadFirmware(fw.location, fw.retries, fw.retry_interval_s))

    def firmware_downloaded(self, ok: bool, path: str | None, error: str | None) -> None:
        fw = self.firmware
        if fw is None:
            return
        if not ok:
            log.warning("firmware download failed: %s", error)
            self._firmware("DownloadFailed")
            self.firmware = None
            return
        fw.path = path
        self._firmware("Downloaded")
        self.step()

    def step(self) -> None:
        """Install once the download is there and no transaction runs."""
        fw = self.firmware
        if fw is None or fw.path is None or self.installing or self.busy():
            return
        self.installing = True
        self._firmware("Installing")
        self.emit(cmd.InstallFirmware(fw.path))

    def firmware_install_failed(self, error: str) -> None:
        log.error("firmware installation failed: %s", error)
        self.installing = False
        self.firmware = None
        self._firmware("InstallationFailed")

    def boot_accepted(self) -> None:
        """After a switch: the new version confirms itself, or the old one reports the failure."""
        if self.trial == "pending":
            self.emit(cmd.CommitFirmware())
            self._firmware("Installed")
        elif self.trial == "rolled_back":
            self.emit(cmd.CommitFirmware())
            self._firmware("InstallationFailed")
        self.trial = None

    # ------------------------------------------------------------ GetDiagnostics / GetLog
    def get_diagnostics(self, p: dict[str, Any]) -> dict[str, Any]:
        location = p["location"]
        name = f"{self.box_identifier()}-diagnostics-{self.wall().strftime('%Y%m%dT%H%M%SZ')}.tar.gz"
        if not _url_ok(location):
            self._diagnostics("UploadFailed")
            return {}
        self._diagnostics("Uploading")
        self.emit(cmd.UploadBundle(
            "diagnostics", location, name, p.get("startTime"), p.get("stopTime"),
            int(p.get("retries") or 0), int(p.get("retryInterval") or 0), None,
        ))
        return {"fileName": name}

    def get_log(self, p: dict[str, Any]) -> dict[str, Any]:
        request_id = p["requestId"]
        spec = p["log"]
        location = spec["remoteLocation"]
        kind = p["logType"]
        name = f"{self.box_identifier()}-{kind}-{self.wall().strftime('%Y%m%dT%H%M%SZ')}.tar.gz"
        if not _url_ok(location):
            self._log("BadMessage", request_id)
            return {"status": "Rejected"}
        self.log_request_id = request_id
        self._log("Uploading", request_id)
        self.emit(cmd.UploadBundle(
            kind, location, name, spec.get("oldestTimestamp"), spec.get("latestTimestamp"),
            int(p.get("retries") or 0), int(p.get("retryInterval") or 0), request_id,
        ))
        return {"status": "Accepted", "filename": name}

    def upload_finished(self, kind: str, request_id: int | None, ok: bool, error: str | None) -> None:
        if not ok:
            log.warning("%s upload failed: %s", kind, error)
        if kind == "diagnostics":
            self._diagnostics("Uploaded" if ok else "UploadFailed")
        else:
            self._log("Uploaded" if ok else "UploadFailure", request_id)


def _redact(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", url)
