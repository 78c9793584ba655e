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
    request_id: int | None = None  # set for a SignedUpdateFirmware
    signature: str | None = None
    signing_certificate: str | None = None
    install_at: datetime | None = None
    due: bool = False  # retrieve time reached while a canceled update's download still ran


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
        security_event: Callable[[str, str | None], None] = lambda _t, _i: None,
        meta: tuple[Callable[[str], str | None], Callable[[str, str], None]] | None = None,
    ) -> None:
        self.send = send
        self.emit = emit
        self.wall = wall
        self.monotonic = monotonic
        self.timers = timers
        self.busy = busy
        self.box_identifier = box_identifier
        self.security_event = security_event
        self._meta_get, self._meta_set = meta or (lambda _n: None, lambda _n, _v: None)
        self.firmware_status = "Idle"
        self.diagnostics_status = "Idle"
        self.log_status = "Idle"
        self.log_request_id: int | None = None
        self.firmware: _Firmware | None = None
        self.installing = False
        # the update whose DownloadFirmware runs: results carry no id, so a new download
        # starts only once the previous one (maybe of a canceled update) has answered
        self.downloading: _Firmware | None = None
        self.trial: str | None = None  # "pending" | "rolled_back" after a firmware switch

    # ------------------------------------------------------------ status notifications
    def _firmware(self, status: str) -> None:
        self.firmware_status = status
        fw = self.firmware
        log.info("firmware: %s", status)
        if fw is not None and fw.request_id is not None:
            self.send("SignedFirmwareStatusNotification", {"status": status, "requestId": fw.request_id})
        else:
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

    def signed_update_firmware(self, p: dict[str, Any], certificate_problem: str | None) -> dict[str, Any]:
        """SignedUpdateFirmware (security extension): the signing certificate is checked
        at once (``certificate_problem`` from the certificate store), the signature after
        the download, before anything is installed."""
        spec = p["firmware"]
        request_id = p["requestId"]
        if certificate_problem is not None:
            log.warning("SignedUpdateFirmware %s: signing certificate refused: %s", request_id, certificate_problem)
            self.security_event("InvalidFirmwareSigningCertificate", certificate_problem)
            # the answer says it: FirmwareStatusEnumType has no InvalidCertificate (whitepaper L01),
            # a SignedFirmwareStatusNotification with it breaks the schema and is never sent
            return {"status": "InvalidCertificate"}
        status = "AcceptedCanceled" if self.firmware is not None and not self.installing else "Accepted"
        if self.installing:
            return {"status": "Rejected"}
        try:
            retrieve = parse_rfc3339(spec["retrieveDateTime"])
        except ValueError:
            retrieve = self.wall()
        install_at = None
        if spec.get("installDateTime"):
            try:
                install_at = parse_rfc3339(spec["installDateTime"])
            except ValueError:
                install_at = None
        self.firmware = _Firmware(
            spec["location"], int(p.get("retries") or 0), int(p.get("retryInterval") or 0),
            request_id=request_id, signature=spec["signature"], signing_certificate=spec["signingCertificate"],
            install_at=install_at,
        )
        self.timers["firmware"] = self.monotonic() + max(0.0, (retrieve - self.wall()).total_seconds())
        return {"status": status}

    def fire(self) -> None:
        """The firmware timer: retrieveDate reached (or installDateTime, once verified)."""
        fw = self.firmware
        if fw is None:
            return
        if fw.path is not None:  # the install time of a signed update has come
            fw.install_at = None
            self.step()
            return
        if self.downloading is not None:  # a canceled update's download still runs
            fw.due = True
            return
        fw.due = False
        if not _url_ok(fw.location):
            self._firmware("DownloadFailed")
            self.firmware = None
            return
        self.downloading = fw
        self._firmware("Downloading")
        self.emit(cmd.DownloadFirmware(
            fw.location, fw.retries, fw.retry_interval_s, fw.signature, fw.signing_certificate
        ))

    def firmware_downloaded(
        self, ok: bool, path: str | None, error: str | None, signature_ok: bool | None = None
    ) -> None:
        fw, owner, self.downloading = self.firmware, self.downloading, None
        if fw is None or owner is not fw:
            log.info("download of a canceled firmware update finished (ok=%s): ignored", ok)
            if fw is not None and fw.due:
                self.fire()
            return
        if not ok:
            log.warning("firmware download failed: %s", error)
            self._firmware("DownloadFailed")
            self.firmware = None
            return
        self._firmware("Downloaded")
        if fw.request_id is not None:
            if not signature_ok:
                self.security_event("InvalidFirmwareSignature", (error or "signature does not match")[:255])
                self._firmware("InvalidSignature")
                self.firmware = None
                return
            self._firmware("SignatureVerified")
            if fw.install_at is not None and fw.install_at > self.wall():
                fw.path = path
                self._firmware("InstallScheduled")
                self.timers["firmware"] = self.monotonic() + (fw.install_at - self.wall()).total_seconds()
                return
            fw.install_at = None
        fw.path = path
        self.step()

    def step(self) -> None:
        """Install once the download is there and no transaction runs."""
        fw = self.firmware
        if fw is None or fw.path is None or fw.install_at is not None or self.installing or self.busy():
            return
        self.installing = True
        self._firmware("Installing")
        # the next start reports Installed / InstallationFailed the same way (signed or not)
        self._meta_set("firmware_request_id", "" if fw.request_id is None else str(fw.request_id))
        self.emit(cmd.InstallFirmware(fw.path))

    def firmware_install_failed(self, error: str) -> None:
        log.error("firmware installation failed: %s", error)
        self.installing = False
        self._firmware("InstallationFailed")
        self.firmware = None

    def boot_accepted(self) -> None:
        """After a switch: the new version confirms itself, or the old one reports the failure."""
        if self.trial is None:
            return
        request = self._meta_get("firmware_request_id")
        self.firmware = _Firmware("", 0, 0, request_id=int(request) if request else None)
        self.emit(cmd.CommitFirmware())
        if self.trial == "pending":
            self._firmware("Installed")
            self.security_event("FirmwareUpdated", None)
        else:
            self._firmware("InstallationFailed")
        self.firmware = None
        self.trial = None

    # ------------------------------------------------------------ GetDiagnostics / GetLog
    def get_diagnostics(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.diagnostics_status == "Uploading":
            return {}  # one bundle at a time: no fileName, nothing started (bounds CPU and memory)
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
        if self.log_status == "Uploading":
            return {"status": "Rejected"}  # one log upload at a time
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
