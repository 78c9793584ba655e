"""Unit tests of ``controller.core.maintenance.Maintenance`` with fakes (no I/O, no event loop).

Requirements covered:

* R-FW 1 — UpdateFirmware / GetDiagnostics / GetLog: every status notification in
  order (FirmwareStatusNotification, DiagnosticsStatusNotification,
  LogStatusNotification with requestId), bad URLs, retries handed to the runtime.
* R-FW 2 — SignedUpdateFirmware: InvalidCertificate answered at once (+ security event
  InvalidFirmwareSigningCertificate, nothing downloaded); the signature checked over the
  downloaded file before anything is installed (InvalidSignature + InvalidFirmwareSignature,
  no InstallFirmware); SignatureVerified → (InstallScheduled) → Installing → Installed /
  InstallationFailed, all SignedFirmwareStatusNotification with the request's requestId;
  AcceptedCanceled / Rejected for a second request.
* R-FW 3 — a firmware is installed only while no transaction runs; after the switch the
  new version confirms itself at BootNotification Accepted (Installed + FirmwareUpdated)
  or the old one, rolled back, reports InstallationFailed — with the stored requestId
  for a signed update.
* R-SEC 4 — the security events the firmware path raises.

The fakes record every ``send`` (action, payload, triggered), every emitted command and
every security event; the timers dict and the clock are the ones the charger core would
pass, and :meth:`Rig.tick` does what ``Charger.handle`` does after each event (fire the
due ``firmware`` timer, then ``step``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import ocpp
import pytest
from fakes import FakeClock

from controller.core import commands as cmd
from controller.core import events as ev
from controller.core.maintenance import Maintenance
from controller.core.timefmt import rfc3339
from controller.security.signature import SignatureError

FW = "FirmwareStatusNotification"
SFW = "SignedFirmwareStatusNotification"
DIAG = "DiagnosticsStatusNotification"
LOG = "LogStatusNotification"
BOX = "CP-UNIT"
SIGNATURE = "c2lnbmF0dXJl"  # base64 of "signature": the core never looks inside
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
LOCATION = "https://fw.example.com/releases/evsectl-0.2.0-py3-none-any.whl"
PATH = "/var/lib/evsectl/firmware/evsectl-0.2.0-py3-none-any.whl"


@cache
def _schema(action: str) -> dict[str, Any]:
    return json.loads((Path(ocpp.__file__).parent / "v16" / "schemas" / f"{action}.json").read_text())


class Rig:
    """A Maintenance wired to recording fakes; ``meta`` survives a "restart" (see :meth:`restart`)."""

    def __init__(self, *, meta: dict[str, str] | None = None, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.sent: list[tuple[str, dict[str, Any], bool]] = []
        self.commands: list[cmd.Command] = []
        self.events: list[tuple[str, str | None]] = []
        self.timers: dict[str, float] = {}
        self.meta: dict[str, str] = {} if meta is None else meta
        self.transaction = False
        self.m = Maintenance(
            send=self._send, emit=self.commands.append, wall=self.clock.wall,
            monotonic=self.clock.monotonic, timers=self.timers, busy=lambda: self.transaction,
            box_identifier=lambda: BOX, security_event=lambda t, i: self.events.append((t, i)),
            meta=(self.meta.get, self.meta.__setitem__),
        )

    def _send(self, action: str, payload: dict[str, Any], ref: Any = None, triggered: bool = False) -> None:
        # whatever the core sends must fit the OCPP 1.6 (security extension) schema: the ocpp
        # library refuses anything else (FormationViolation) and it never reaches the CSMS
        jsonschema.validate(payload, _schema(action))
        self.sent.append((action, dict(payload), triggered))

    # ---------------------------------------------------------------- driving
    def tick(self, seconds: float = 0) -> None:
        """Let time pass, then what the charger core does after every event."""
        self.clock.advance(seconds)
        due = self.timers.get("firmware")
        if due is not None and due <= self.clock.monotonic():
            del self.timers["firmware"]
            self.m.fire()
        self.m.step()

    def restart(self, trial: str) -> Rig:
        """The process after the switch (or after a rollback): same durable meta, fresh core."""
        again = Rig(meta=self.meta, clock=self.clock)
        again.m.trial = trial
        return again

    # ---------------------------------------------------------------- reading
    def take(self) -> list[tuple[str, dict[str, Any]]]:
        out = [(a, p) for a, p, _ in self.sent]
        self.sent.clear()
        return out

    def take_commands(self) -> list[cmd.Command]:
        out, self.commands[:] = list(self.commands), []
        return out

    def take_events(self) -> list[tuple[str, str | None]]:
        out, self.events[:] = list(self.events), []
        return out


def at(rig: Rig, offset_s: float) -> str:
    return rfc3339(rig.clock.wall() + timedelta(seconds=offset_s))


def signed_request(rig: Rig, request_id: int = 42, *, retrieve_in_s: float = 0,
                   install_in_s: float | None = None, location: str = LOCATION,
                   retries: int | None = 3, retry_interval: int | None = 60) -> dict[str, Any]:
    firmware: dict[str, Any] = {
        "location": location, "retrieveDateTime": at(rig, retrieve_in_s),
        "signingCertificate": CERT, "signature": SIGNATURE,
    }
    if install_in_s is not None:
        firmware["installDateTime"] = at(rig, install_in_s)
    p: dict[str, Any] = {"requestId": request_id, "firmware": firmware}
    if retries is not None:
        p["retries"] = retries
    if retry_interval is not None:
        p["retryInterval"] = retry_interval
    return p


def sfw(*statuses: str, request_id: int = 42) -> list[tuple[str, dict[str, Any]]]:
    return [(SFW, {"status": s, "requestId": request_id}) for s in statuses]


def fw(*statuses: str) -> list[tuple[str, dict[str, Any]]]:
    return [(FW, {"status": s}) for s in statuses]


@pytest.fixture
def rig() -> Rig:
    return Rig()


def _signed_to_download(rig: Rig, request_id: int = 42, **kw: Any) -> None:
    """Accepted, the retrieve time reached, the download asked for."""
    assert rig.m.signed_update_firmware(signed_request(rig, request_id, **kw), None) == {"status": "Accepted"}
    rig.tick()
    assert rig.take() == sfw("Downloading", request_id=request_id)
    assert rig.take_commands() == [cmd.DownloadFirmware(
        kw.get("location", LOCATION), 3, 60, SIGNATURE, CERT)]


# =========================================================================== UpdateFirmware (R-FW 1/3)


def test_r_fw_1_3_unsigned_update_whole_sequence_and_confirmation_after_the_switch(rig):
    assert rig.m.update_firmware({"location": LOCATION, "retrieveDate": at(rig, 600),
                                  "retries": 2, "retryInterval": 30}) == {}
    rig.tick(599)
    assert rig.take() == [] and rig.take_commands() == []  # retrieveDate not reached
    rig.tick(1)
    assert rig.take() == fw("Downloading")
    assert rig.take_commands() == [cmd.DownloadFirmware(LOCATION, 2, 30, None, None)]
    assert rig.m._current_firmware_status() == "Downloading"

    rig.m.firmware_downloaded(True, PATH, None)  # the runtime checks no signature: None
    assert rig.take() == fw("Downloaded", "Installing")
    assert rig.take_commands() == [cmd.InstallFirmware(PATH)]
    assert rig.m.installing and rig.meta["firmware_request_id"] == ""
    assert rig.take_events() == []

    new = rig.restart("pending")  # the new release, on trial
    new.m.boot_accepted()
    assert new.take() == fw("Installed")
    assert new.take_commands() == [cmd.CommitFirmware()]
    assert new.take_events() == [("FirmwareUpdated", None)]
    assert new.m.trial is None and new.m.firmware is None
    new.m.boot_accepted()  # a later BootNotification Accepted (reconnect): nothing more
    assert new.take() == [] and new.take_commands() == [] and new.take_events() == []


def test_r_fw_3_unsigned_rolled_back_release_reports_installation_failed(rig):
    rig.m.update_firmware({"location": LOCATION, "retrieveDate": at(rig, 0)})
    rig.tick()
    rig.m.firmware_downloaded(True, PATH, None)
    assert rig.take() == fw("Downloading", "Downloaded", "Installing")
    old = rig.restart("rolled_back")
    old.m.boot_accepted()
    assert old.take() == fw("InstallationFailed")
    assert old.take_commands() == [cmd.CommitFirmware()]  # the marker is cleared
    assert old.take_events() == []  # no FirmwareUpdated


def test_r_fw_1_unsigned_download_failed_and_install_failed(rig):
    rig.m.update_firmware({"location": LOCATION, "retrieveDate": at(rig, 0)})
    rig.tick()
    rig.m.firmware_downloaded(False, None, "HTTP 404")
    assert rig.take() == fw("Downloading", "DownloadFailed")
    assert rig.m.firmware is None
    rig.tick(3600)
    assert rig.take() == [] and rig.take_commands() == [cmd.DownloadFirmware(LOCATION, 0, 0, None, None)]

    rig.m.update_firmware({"location": LOCATION, "retrieveDate": at(rig, 0)})
    rig.tick()
    rig.m.firmware_downloaded(True, PATH, None)
    rig.m.firmware_install_failed("not an evsectl release")
    assert rig.take() == fw("Downloading", "Downloaded", "Installing", "InstallationFailed")
    assert not rig.m.installing and rig.m.firmware is None


def test_r_fw_1_unsigned_bad_retrieve_date_means_now(rig):
    rig.m.update_firmware({"location": LOCATION, "retrieveDate": "tomorrow-ish"})
    rig.tick()
    assert rig.take() == fw("Downloading")


@pytest.mark.parametrize("location", ["file:///etc/passwd", "not a url", "", "gopher://h/x", "http://"])
def test_r_fw_1_unsigned_bad_location_is_download_failed_without_download(rig, location):
    rig.m.update_firmware({"location": location, "retrieveDate": at(rig, 0)})
    rig.tick()
    assert rig.take() == fw("DownloadFailed")
    assert rig.take_commands() == []
    assert rig.m.firmware is None


def test_r_fw_3_unsigned_install_waits_for_the_transaction(rig):
    rig.transaction = True
    rig.m.update_firmware({"location": LOCATION, "retrieveDate": at(rig, 0)})
    rig.tick()
    rig.m.firmware_downloaded(True, PATH, None)
    rig.tick(3600)
    assert rig.take() == fw("Downloading", "Downloaded")
    assert rig.take_commands() == [cmd.DownloadFirmware(LOCATION, 0, 0, None, None)]
    rig.m.trigger_firmware()
    assert rig.sent[-1] == (FW, {"status": "Downloaded"}, True)
    rig.sent.clear()
    rig.transaction = False
    rig.tick()
    assert rig.take() == fw("Installing")
    assert rig.take_commands() == [cmd.InstallFirmware(PATH)]
    rig.tick()
    assert rig.take() == [] and rig.take_commands() == []  # once


# =========================================================================== SignedUpdateFirmware (R-FW 2)


def test_r_fw_2_signed_whole_sequence_with_request_id_and_confirmation(rig):
    _signed_to_download(rig)
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=True)
    assert rig.take() == sfw("Downloaded", "SignatureVerified", "Installing")
    assert rig.take_commands() == [cmd.InstallFirmware(PATH)]
    assert rig.meta["firmware_request_id"] == "42"
    assert rig.take_events() == []

    new = rig.restart("pending")
    new.m.boot_accepted()
    assert new.take() == sfw("Installed")  # the stored requestId, in the new process
    assert new.take_commands() == [cmd.CommitFirmware()]
    assert new.take_events() == [("FirmwareUpdated", None)]


def test_r_fw_2_signed_rolled_back_release_reports_installation_failed_with_request_id(rig):
    _signed_to_download(rig, 7)
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=True)
    assert rig.take() == sfw("Downloaded", "SignatureVerified", "Installing", request_id=7)
    old = rig.restart("rolled_back")
    old.m.boot_accepted()
    assert old.take() == sfw("InstallationFailed", request_id=7)
    assert old.take_commands() == [cmd.CommitFirmware()]
    assert old.take_events() == []


def test_r_fw_2_meta_of_a_signed_update_does_not_leak_into_a_later_unsigned_one(rig):
    _signed_to_download(rig)
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=True)
    rig.m.firmware_install_failed("disk full")
    assert rig.take() == sfw("Downloaded", "SignatureVerified", "Installing", "InstallationFailed")
    rig.m.update_firmware({"location": LOCATION, "retrieveDate": at(rig, 0)})
    rig.tick()
    rig.m.firmware_downloaded(True, PATH, None)
    assert rig.take() == fw("Downloading", "Downloaded", "Installing")
    new = rig.restart("pending")
    new.m.boot_accepted()
    assert new.take() == fw("Installed")  # FirmwareStatusNotification, no requestId


def test_r_fw_2_invalid_certificate_is_answered_at_once_and_nothing_is_downloaded(rig):
    answer = rig.m.signed_update_firmware(signed_request(rig, 9), "chain does not verify: unknown issuer")
    assert answer == {"status": "InvalidCertificate"}
    # the answer is the report: FirmwareStatusEnumType has no InvalidCertificate (whitepaper L01)
    assert "InvalidCertificate" not in _schema(SFW)["definitions"]["FirmwareStatusEnumType"]["enum"]
    assert rig.take() == []
    assert rig.take_events() == [("InvalidFirmwareSigningCertificate", "chain does not verify: unknown issuer")]
    assert rig.timers == {} and rig.m.firmware is None
    rig.tick(86400)
    assert rig.take() == [] and rig.take_commands() == []


def test_r_fw_2_invalid_certificate_leaves_a_running_update_alone(rig):
    _signed_to_download(rig, 1)
    assert rig.m.signed_update_firmware(signed_request(rig, 2), "expired") == {"status": "InvalidCertificate"}
    assert rig.take() == []
    assert rig.take_events() == [("InvalidFirmwareSigningCertificate", "expired")]
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=True)
    assert rig.take() == sfw("Downloaded", "SignatureVerified", "Installing", request_id=1)


def test_r_fw_2_invalid_signature_installs_nothing(rig):
    _signed_to_download(rig)
    rig.m.firmware_downloaded(True, PATH, "InvalidSignature: signature does not match the file",
                              signature_ok=False)
    assert rig.take() == sfw("Downloaded", "InvalidSignature")
    assert rig.take_events() == [
        ("InvalidFirmwareSignature", "InvalidSignature: signature does not match the file")]
    rig.tick(86400)
    assert rig.take_commands() == []  # no InstallFirmware, ever
    assert not rig.m.installing and rig.m.firmware is None
    assert "firmware_request_id" not in rig.meta
    # the next request starts afresh (nothing to cancel)
    assert rig.m.signed_update_firmware(signed_request(rig, 43), None) == {"status": "Accepted"}


def test_r_fw_2_a_signed_download_without_a_signature_verdict_is_invalid_signature(rig):
    """The runtime must check the signature; a result without a verdict is not trusted."""
    _signed_to_download(rig)
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=None)
    assert rig.take() == sfw("Downloaded", "InvalidSignature")
    assert rig.take_events() == [("InvalidFirmwareSignature", "signature does not match")]
    assert rig.take_commands() == []


def test_r_fw_2_3_signature_verified_waits_for_the_transaction(rig):
    _signed_to_download(rig)
    rig.transaction = True
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=True)
    rig.tick(600)
    assert rig.take() == sfw("Downloaded", "SignatureVerified")
    assert rig.take_commands() == []
    rig.transaction = False
    rig.tick()
    assert rig.take() == sfw("Installing")
    assert rig.take_commands() == [cmd.InstallFirmware(PATH)]


def test_r_fw_2_install_scheduled_when_install_date_time_is_later(rig):
    _signed_to_download(rig, install_in_s=3600)
    rig.tick(60)  # the download takes a minute
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=True)
    assert rig.take() == sfw("Downloaded", "SignatureVerified", "InstallScheduled")
    assert rig.timers["firmware"] == pytest.approx(rig.clock.monotonic() + 3540)
    rig.tick(3539)
    assert rig.take() == [] and rig.take_commands() == []
    rig.tick(1)
    assert rig.take() == sfw("Installing")
    assert rig.take_commands() == [cmd.InstallFirmware(PATH)]


def test_r_fw_2_install_scheduled_then_waits_for_the_transaction(rig):
    _signed_to_download(rig, install_in_s=600)
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=True)
    assert rig.take() == sfw("Downloaded", "SignatureVerified", "InstallScheduled")
    rig.transaction = True
    rig.tick(600)
    rig.tick(600)
    assert rig.take() == [] and rig.take_commands() == []
    rig.transaction = False
    rig.tick()
    assert rig.take() == sfw("Installing")


def test_r_fw_2_install_date_time_already_past_installs_at_once(rig):
    _signed_to_download(rig, install_in_s=-60)
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=True)
    assert rig.take() == sfw("Downloaded", "SignatureVerified", "Installing")


def test_r_fw_2_retrieve_date_time_later_waits(rig):
    assert rig.m.signed_update_firmware(signed_request(rig, retrieve_in_s=300), None) == {"status": "Accepted"}
    rig.tick(299)
    assert rig.take() == [] and rig.take_commands() == []
    rig.tick(1)
    assert rig.take() == sfw("Downloading")


def test_r_fw_2_download_failed_with_request_id(rig):
    _signed_to_download(rig, 5)
    rig.m.firmware_downloaded(False, None, "failed after 4 attempt(s)")
    assert rig.take() == sfw("DownloadFailed", request_id=5)
    assert rig.m.firmware is None and rig.take_events() == []


def test_r_fw_2_bad_location_is_download_failed_with_request_id(rig):
    rig.m.signed_update_firmware(signed_request(rig, 6, location="file:///etc/passwd"), None)
    rig.tick()
    assert rig.take() == sfw("DownloadFailed", request_id=6)
    assert rig.take_commands() == []


def test_r_fw_2_installation_failed_with_request_id(rig):
    _signed_to_download(rig, 8)
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=True)
    rig.m.firmware_install_failed("not an evsectl release")
    assert rig.take() == sfw("Downloaded", "SignatureVerified", "Installing", "InstallationFailed", request_id=8)
    assert not rig.m.installing and rig.m.firmware is None
    assert rig.m.signed_update_firmware(signed_request(rig, 10), None) == {"status": "Accepted"}


def test_r_fw_2_second_request_cancels_a_scheduled_one(rig):
    _signed_to_download(rig, 1, install_in_s=3600)
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=True)
    assert rig.take() == sfw("Downloaded", "SignatureVerified", "InstallScheduled", request_id=1)
    answer = rig.m.signed_update_firmware(signed_request(rig, 2, retrieve_in_s=60), None)
    assert answer == {"status": "AcceptedCanceled"}
    rig.tick(3600)  # request 1's install time passes: it is gone
    assert rig.take() == sfw("Downloading", request_id=2)
    assert rig.take_commands() == [cmd.DownloadFirmware(LOCATION, 3, 60, SIGNATURE, CERT)]


def test_r_fw_2_second_request_while_one_is_pending_or_installing(rig):
    assert rig.m.signed_update_firmware(signed_request(rig, 1, retrieve_in_s=600), None) == {"status": "Accepted"}
    assert rig.m.signed_update_firmware(signed_request(rig, 2, retrieve_in_s=600), None) == {
        "status": "AcceptedCanceled"}
    rig.tick(600)
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=True)
    assert rig.take() == sfw("Downloading", "Downloaded", "SignatureVerified", "Installing", request_id=2)
    # the process is about to switch: a third one is refused, the one installing goes on
    assert rig.m.signed_update_firmware(signed_request(rig, 3), None) == {"status": "Rejected"}
    assert rig.m.firmware.request_id == 2 and rig.take() == []


def test_r_fw_2_the_download_of_a_canceled_request_is_not_taken_for_the_new_one(rig):
    """Request 1 is downloading when request 2 (retrieve in an hour) cancels it: request 1's
    result, when it comes, must neither report nor install anything under requestId 2."""
    _signed_to_download(rig, 1)
    assert rig.m.signed_update_firmware(signed_request(rig, 2, retrieve_in_s=3600), None) == {
        "status": "AcceptedCanceled"}
    rig.m.firmware_downloaded(True, "/fw/old.whl", None, signature_ok=True)  # request 1's
    assert rig.take() == []
    assert rig.take_commands() == []
    rig.tick(3600)
    assert rig.take() == sfw("Downloading", request_id=2)
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=True)
    assert rig.take() == sfw("Downloaded", "SignatureVerified", "Installing", request_id=2)
    assert [c for c in rig.take_commands() if isinstance(c, cmd.InstallFirmware)] == [cmd.InstallFirmware(PATH)]


def test_r_fw_2_a_new_download_waits_for_the_canceled_one_still_running(rig):
    """Request 2 is due while request 1's download still runs (results carry no id): it starts
    once request 1's result is in, so each result is attributed to its own request."""
    _signed_to_download(rig, 1)
    assert rig.m.signed_update_firmware(signed_request(rig, 2), None) == {"status": "AcceptedCanceled"}
    rig.tick()
    assert rig.take() == [] and rig.take_commands() == []  # not yet: one download at a time
    rig.m.firmware_downloaded(True, "/fw/old.whl", "bad", signature_ok=False)  # request 1's
    assert rig.take() == sfw("Downloading", request_id=2)
    assert rig.take_commands() == [cmd.DownloadFirmware(LOCATION, 3, 60, SIGNATURE, CERT)]
    assert rig.take_events() == []  # request 1 was canceled: not reported under request 2
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=True)
    assert rig.take() == sfw("Downloaded", "SignatureVerified", "Installing", request_id=2)


def test_r_fw_2_an_unsigned_update_cancels_a_signed_download_too(rig):
    _signed_to_download(rig, 1)
    rig.m.update_firmware({"location": LOCATION, "retrieveDate": at(rig, 3600)})
    rig.m.firmware_downloaded(True, "/fw/old.whl", None, signature_ok=True)
    assert rig.take() == [] and rig.take_commands() == []
    rig.tick(3600)
    assert rig.take() == fw("Downloading")


def test_r_fw_1_spurious_timer_and_results_without_an_update_do_nothing(rig):
    rig.m.fire()
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=True)
    rig.m.boot_accepted()  # no trial
    assert rig.take() == [] and rig.take_commands() == [] and rig.take_events() == []


def test_r_fw_2_bad_date_times_mean_now(rig):
    p = signed_request(rig)
    p["firmware"]["retrieveDateTime"] = "soon"
    p["firmware"]["installDateTime"] = "later"
    assert rig.m.signed_update_firmware(p, None) == {"status": "Accepted"}
    rig.tick()
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=True)
    assert rig.take() == sfw("Downloading", "Downloaded", "SignatureVerified", "Installing")


def test_r_fw_2_retries_default_to_zero(rig):
    rig.m.signed_update_firmware(signed_request(rig, retries=None, retry_interval=None), None)
    rig.tick()
    assert rig.take_commands() == [cmd.DownloadFirmware(LOCATION, 0, 0, SIGNATURE, CERT)]


def test_r_trig_triggered_firmware_status_is_idle_or_in_progress(rig):
    rig.m.trigger_firmware()
    assert rig.sent == [(FW, {"status": "Idle"}, True)]
    rig.sent.clear()
    _signed_to_download(rig)
    rig.m.trigger_firmware()
    assert rig.sent == [(FW, {"status": "Downloading"}, True)]
    rig.sent.clear()
    rig.m.firmware_downloaded(True, PATH, None, signature_ok=False)
    rig.sent.clear()
    rig.m.trigger_firmware()
    assert rig.sent == [(FW, {"status": "Idle"}, True)]


# =========================================================================== GetDiagnostics / GetLog (R-FW 1)


def test_r_fw_1_get_diagnostics_sequence(rig):
    answer = rig.m.get_diagnostics({"location": "ftp://u:p@files.example.com/in/", "retries": 2,
                                    "retryInterval": 15, "startTime": "2026-04-16T00:00:00Z"})
    name = f"{BOX}-diagnostics-20260416T080730Z.tar.gz"
    assert answer == {"fileName": name}
    assert rig.take() == [(DIAG, {"status": "Uploading"})]
    assert rig.take_commands() == [cmd.UploadBundle(
        "diagnostics", "ftp://u:p@files.example.com/in/", name, "2026-04-16T00:00:00Z", None, 2, 15, None)]
    rig.m.trigger_diagnostics()
    assert rig.sent == [(DIAG, {"status": "Uploading"}, True)]
    rig.sent.clear()
    rig.m.upload_finished("diagnostics", None, True, None)
    assert rig.take() == [(DIAG, {"status": "Uploaded"})]
    rig.m.trigger_diagnostics()
    assert rig.sent == [(DIAG, {"status": "Idle"}, True)]
    rig.sent.clear()

    rig.m.get_diagnostics({"location": "http://files.example.com/upload"})
    rig.m.upload_finished("diagnostics", None, False, "HTTP 500")
    assert rig.take() == [(DIAG, {"status": "Uploading"}), (DIAG, {"status": "UploadFailed"})]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "::not a url::", "scp://h/x"])
def test_r_fw_1_get_diagnostics_bad_location(rig, location):
    assert rig.m.get_diagnostics({"location": location}) == {}
    assert rig.take() == [(DIAG, {"status": "UploadFailed"})]
    assert rig.take_commands() == []


def test_r_fw_1_get_log_sequences(rig):
    answer = rig.m.get_log({"logType": "SecurityLog", "requestId": 11, "retries": 1,
                            "log": {"remoteLocation": "https://logs.example.com/up",
                                    "oldestTimestamp": "2026-04-01T00:00:00Z"}})
    name = f"{BOX}-SecurityLog-20260416T080730Z.tar.gz"
    assert answer == {"status": "Accepted", "filename": name}
    assert rig.take() == [(LOG, {"status": "Uploading", "requestId": 11})]
    assert rig.take_commands() == [cmd.UploadBundle(
        "SecurityLog", "https://logs.example.com/up", name, "2026-04-01T00:00:00Z", None, 1, 0, 11)]
    rig.m.trigger_log()
    assert rig.sent == [(LOG, {"status": "Uploading", "requestId": 11}, True)]
    rig.sent.clear()
    rig.m.upload_finished("SecurityLog", 11, True, None)
    assert rig.take() == [(LOG, {"status": "Uploaded", "requestId": 11})]
    rig.m.trigger_log()
    assert rig.sent == [(LOG, {"status": "Idle"}, True)]
    rig.sent.clear()

    answer = rig.m.get_log({"logType": "DiagnosticsLog", "requestId": 12,
                            "log": {"remoteLocation": "http://logs.example.com/broken"}})
    assert answer["status"] == "Accepted" and answer["filename"].startswith(f"{BOX}-DiagnosticsLog-")
    rig.m.upload_finished("DiagnosticsLog", 12, False, "HTTP 500")
    assert rig.take() == [(LOG, {"status": "Uploading", "requestId": 12}),
                          (LOG, {"status": "UploadFailure", "requestId": 12})]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "::not a url::", ""])
def test_r_fw_1_get_log_bad_location_is_rejected_with_bad_message(rig, location):
    answer = rig.m.get_log({"logType": "DiagnosticsLog", "requestId": 7, "log": {"remoteLocation": location}})
    assert answer == {"status": "Rejected"}
    assert rig.take() == [(LOG, {"status": "BadMessage", "requestId": 7})]
    assert rig.take_commands() == []


# =========================================================================== the runtime's side (R-FW 2)
#
# The core runs one firmware download at a time and waits for its FirmwareDownloaded: the
# runtime (controller.runtime.maintenance.MaintenanceRunner._download) must answer every
# DownloadFirmware, and report a signature it could not check as not verified.


class _Runtime:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.core = SimpleNamespace(security=None)
        self.dispatched: list[Any] = []

    def dispatch(self, event: Any) -> None:
        self.dispatched.append(event)


@pytest.fixture
def runner(tmp_path, monkeypatch):
    import controller.security.signature as sig  # the runner imports these on first use (idle RSS)
    import controller.transfer as transfer
    from controller.runtime import maintenance as rm

    rt = _Runtime()
    r = rm.MaintenanceRunner(rt, state_dir=tmp_path / "state", settings_path=tmp_path / "evsectl.toml", trial_s=60)
    fetched: list[str] = []

    def fake_download(url, dest, **_kw):
        fetched.append(url)
        if "boom" in url:
            raise RuntimeError("boom")
        dest.write_bytes(b"release bytes")
        return SimpleNamespace(path=dest)

    monkeypatch.setattr(transfer, "download", fake_download)
    return SimpleNamespace(r=r, rt=rt, rm=rm, sig=sig, fetched=fetched, monkeypatch=monkeypatch)


def _verifier(outcome: BaseException | None):
    calls: list[tuple[Any, ...]] = []

    def verify(path, signature, certificate):
        calls.append((path, signature, certificate))
        if outcome is not None:
            raise outcome

    return verify, calls


async def test_r_fw_2_runtime_reports_a_verified_signature_and_keeps_the_file(runner):
    verify, calls = _verifier(None)
    runner.monkeypatch.setattr(runner.sig, "verify_file_signature", verify)
    await runner.r._download(cmd.DownloadFirmware("http://h/fw/a.whl", 0, 0, SIGNATURE, CERT))
    path = runner.r.work_dir / "a.whl"
    assert runner.rt.dispatched == [ev.FirmwareDownloaded(True, path=str(path), error=None, signature_ok=True)]
    assert calls == [(path, SIGNATURE, CERT)] and path.exists()


async def test_r_fw_1_runtime_checks_no_signature_for_an_unsigned_update(runner):
    verify, calls = _verifier(None)
    runner.monkeypatch.setattr(runner.sig, "verify_file_signature", verify)
    await runner.r._download(cmd.DownloadFirmware("http://h/fw/a.whl", 0, 0))
    assert runner.rt.dispatched == [
        ev.FirmwareDownloaded(True, path=str(runner.r.work_dir / "a.whl"), error=None, signature_ok=None)]
    assert calls == []


@pytest.mark.parametrize("failure", [
    SignatureError("InvalidSignature", "signature does not match the file"),
    OSError("unreadable"),
    ValueError("a verifier that breaks in an unexpected way"),
])
async def test_r_fw_2_runtime_deletes_a_file_whose_signature_is_not_verified(runner, failure):
    verify, _ = _verifier(failure)
    runner.monkeypatch.setattr(runner.sig, "verify_file_signature", verify)
    await runner.r._download(cmd.DownloadFirmware("http://h/fw/a.whl", 0, 0, SIGNATURE, CERT))
    [event] = runner.rt.dispatched
    assert event.ok and event.signature_ok is False and event.error == str(failure)
    assert not (runner.r.work_dir / "a.whl").exists()


async def test_r_fw_2_runtime_answers_a_download_that_crashes(runner):
    await runner.r._download(cmd.DownloadFirmware("http://h/boom/a.whl", 0, 0, SIGNATURE, CERT))
    assert runner.rt.dispatched == [ev.FirmwareDownloaded(False, error="internal error: boom")]


def test_r_fw_1_one_bundle_upload_at_a_time():
    """Found by the fuzzer: unbounded concurrent bundles starved the event loop."""
    sent, emitted = [], []
    timers: dict[str, float] = {}
    from datetime import UTC, datetime

    from controller.core import commands as cmd
    from controller.core.maintenance import Maintenance

    mt = Maintenance(
        send=lambda action, payload, **_: sent.append((action, payload)), emit=emitted.append,
        wall=lambda: datetime(2026, 1, 1, tzinfo=UTC), monotonic=lambda: 0.0, timers=timers,
        busy=lambda: False, box_identifier=lambda: "CP",
    )
    first = mt.get_diagnostics({"location": "ftp://127.0.0.1/diag/"})
    assert "fileName" in first
    assert mt.get_diagnostics({"location": "ftp://127.0.0.1/diag/"}) == {}
    log = {"logType": "DiagnosticsLog", "requestId": 1, "log": {"remoteLocation": "ftp://127.0.0.1/l/"}}
    assert mt.get_log(log)["status"] == "Accepted"
    assert mt.get_log({**log, "requestId": 2}) == {"status": "Rejected"}
    assert sum(isinstance(c, cmd.UploadBundle) for c in emitted) == 2
    mt.upload_finished("diagnostics", None, True, None)
    assert "fileName" in mt.get_diagnostics({"location": "ftp://127.0.0.1/diag/"})
