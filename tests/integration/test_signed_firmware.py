"""R-FW 2 over the wire: SignedUpdateFirmware against the real daemon (R-FW 3, R-SEC 4 alongside).

The real daemon (``python -m controller run``, mock drivers, simulated clock) talks to our
CSMS on 127.0.0.1 and downloads from an HTTP server started here (``file_servers.web``).
The manufacturer PKI is made with ``tests/support/tls_material.py``: a root (installed over OCPP with
InstallCertificate / ManufacturerRootCertificate), an RSA and an ECDSA signing certificate,
an expired signing certificate from the same root, and a signing certificate from another
root. The firmware is the release artifact of the project (0.2.0, built once per module by
the ``artifacts`` fixture of ``test_firmware_and_diagnostics``), signed over its bytes with
SHA-256 (RSA PKCS#1 v1.5 and ECDSA, base64), as ``openssl dgst -sha256 -sign`` would.

Every SignedFirmwareStatusNotification sequence is compared message by message, and the
security events the whitepaper asks for (FirmwareUpdated, InvalidFirmwareSignature,
InvalidFirmwareSigningCertificate) are looked for among the SecurityEventNotifications.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import time
from dataclasses import dataclass
from typing import Any

import pytest
import test_firmware_and_diagnostics as unsigned
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from ocpp.messages import CallResult
from test_firmware_and_diagnostics import (
    BOX,
    GOOD_VERSION,
    assert_running_version_untouched,
    cmdline,
    now_text,
    sequence,
)
from tls_material import make_ca, pem_of

from controller import __version__
from controller.csms import CentralSystem

SFW = "SignedFirmwareStatusNotification"
SEC = "SecurityEventNotification"
MANUFACTURER_ROOT = "ManufacturerRootCertificate"

pytestmark = pytest.mark.timeout(120)
pytest_plugins = ["file_servers"]  # web

# the unsigned firmware tests' fixtures: ``artifacts`` (the 0.2.0 release built once for this
# module with tools/build_release.py) and ``boot`` (a daemon with its boot accepted)
artifacts = unsigned.artifacts
boot = unsigned.boot


# --------------------------------------------------------------------------- manufacturer PKI


@dataclass(frozen=True)
class Signer:
    """A signing key and its certificate (PEM): ``sign(data)`` is firmware.signature."""

    key: Any
    certificate: str

    def sign(self, data: bytes) -> str:
        if isinstance(self.key, rsa.RSAPrivateKey):
            raw = self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())  # RSA PKCS#1 v1.5
        else:
            raw = self.key.sign(data, ec.ECDSA(hashes.SHA256()))  # DER, as openssl dgst makes it
        return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class ManufacturerPki:
    root: str  # PEM of the root the daemon gets with InstallCertificate
    rsa: Signer  # RSA 2048, valid, issued by root
    ecdsa: Signer  # P-256, valid, issued by root
    expired: Signer  # RSA, issued by root, expired yesterday
    foreign: Signer  # RSA, valid, issued by another root (never installed)


@pytest.fixture(scope="module")
def mpki() -> ManufacturerPki:
    now = dt.datetime.now(dt.UTC)
    root = make_ca("Manufacturer Root CA")
    other = make_ca("Manufacturer Root CA")  # same name, another key: only the key tells
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    old_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ManufacturerPki(
        root=root.pem,
        rsa=Signer(rsa_key, pem_of(root.issue_code_signing("Firmware signer RSA", rsa_key))),
        ecdsa=Signer(ec_key, pem_of(root.issue_code_signing("Firmware signer EC", ec_key))),
        expired=Signer(old_key, pem_of(root.issue_code_signing(
            "Firmware signer expired", old_key,
            not_before=now - dt.timedelta(days=400), not_after=now - dt.timedelta(days=1)))),
        foreign=Signer(foreign_key, pem_of(other.issue_code_signing("Firmware signer", foreign_key))),
    )


# --------------------------------------------------------------------------- helpers


async def install_root(csms: CentralSystem, mpki: ManufacturerPki) -> None:
    answer = await csms.call(BOX, "InstallCertificate",
                             {"certificateType": MANUFACTURER_ROOT, "certificate": mpki.root})
    assert answer == {"status": "Accepted"}


async def signed_update(csms: CentralSystem, request_id: int, location: str, signer: Signer, signature: str,
                        *, install_in_s: float | None = None) -> dict[str, Any]:
    firmware: dict[str, Any] = {"location": location, "retrieveDateTime": now_text(),
                                "signingCertificate": signer.certificate, "signature": signature}
    if install_in_s is not None:
        firmware["installDateTime"] = now_text(install_in_s)
    return await csms.call(BOX, "SignedUpdateFirmware",
                           {"requestId": request_id, "retries": 0, "firmware": firmware})


def sfw(request_id: int, *statuses: str) -> list[dict[str, Any]]:
    return [{"status": s, "requestId": request_id} for s in statuses]


def security_events(csms: CentralSystem, since: int, *types: str) -> list[Any]:
    """SecurityEventNotification records since ``since`` of the given types (all when none)."""
    return [r for r in csms.calls(SEC) if r.seq > since and (not types or r.payload["type"] in types)]


async def wait_event(csms: CentralSystem, since: int, type_: str, timeout: float = 10.0) -> Any:
    return await csms.wait_for(SEC, since=since, timeout=timeout,
                               predicate=lambda r: r.payload["type"] == type_)


def answer_seq(csms: CentralSystem, since: int, action: str) -> int:
    """The seq of the frame in which the charger answered our ``action`` CALL (sent after ``since``)."""
    asked = {}
    for frame in csms.frames(BOX, "out", since=since):
        message = frame.message()
        if getattr(message, "action", None) == action:
            asked[message.unique_id] = frame
    for frame in csms.frames(BOX, "in", since=since):
        message = frame.message()
        if isinstance(message, CallResult) and message.unique_id in asked:
            return frame.seq
    raise AssertionError(f"no answer to {action} after #{since}")


def firmware_files(d: Any) -> list[str]:
    folder = d.state_dir / "firmware"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- valid


async def test_r_fw_2_3_valid_rsa_signed_update_installs_and_boots_the_new_release(
        boot, csms, web, artifacts, mpki):
    """Downloading, Downloaded, SignatureVerified, Installing; the process re-executes 0.2.0,
    whose BootNotification says so; it reports Installed with the same requestId and the
    security event FirmwareUpdated."""
    web.state.files[artifacts.good_name] = artifacts.good
    d = await boot()
    assert d.proc is not None
    pid = d.proc.pid
    await install_root(csms, mpki)
    mark = csms.mark()
    answer = await signed_update(csms, 501, web.url(f"/fw/{artifacts.good_name}"), mpki.rsa,
                                 mpki.rsa.sign(artifacts.good))
    assert answer == {"status": "Accepted"}
    payloads = await sequence(csms, SFW, mark, "Installed", timeout=60)
    assert payloads == sfw(501, "Downloading", "Downloaded", "SignatureVerified", "Installing", "Installed")
    assert [r.payload for r in csms.calls("FirmwareStatusNotification") if r.seq > mark] == []

    fw = [r for r in csms.calls(SFW) if r.seq > mark]
    boots = [r for r in csms.calls("BootNotification") if r.seq > mark]
    assert [b.payload["firmwareVersion"] for b in boots] == [GOOD_VERSION]
    assert fw[3].seq < boots[0].seq < fw[4].seq  # Installing, the new version boots, Installed
    updated = await wait_event(csms, mark, "FirmwareUpdated")
    assert updated.seq > boots[0].seq
    assert len(security_events(csms, mark, "FirmwareUpdated")) == 1
    assert security_events(csms, mark, "InvalidFirmwareSignature", "InvalidFirmwareSigningCertificate") == []

    assert d.proc.pid == pid and d.proc.returncode is None  # same process, the release's interpreter
    assert cmdline(pid)[0] == str(d.state_dir / "releases" / GOOD_VERSION / "venv" / "bin" / "python")
    assert os.readlink(d.state_dir / "current") == f"releases/{GOOD_VERSION}"
    assert web.state.count(f"/fw/{artifacts.good_name}") == 1
    end = time.monotonic() + 5
    while (d.state_dir / "firmware" / "trial.json").exists():
        assert time.monotonic() < end, "the trial marker was never cleared"
        await asyncio.sleep(0.05)
    # nothing runs any more: the extended trigger says Idle
    mark = csms.mark()
    assert await csms.call(BOX, "ExtendedTriggerMessage", {"requestedMessage": "FirmwareStatusNotification"}) == {
        "status": "Accepted"}
    assert (await csms.wait_for(SFW, since=mark)).payload == {"status": "Idle"}
    csms.assert_clean(BOX)


async def test_r_fw_2_valid_ecdsa_signature_is_verified_and_the_install_scheduled(
        boot, csms, web, artifacts, mpki):
    """ECDSA over SHA-256 verifies; installDateTime an hour ahead: InstallScheduled, and nothing
    is installed before that time."""
    web.state.files[artifacts.good_name] = artifacts.good
    d = await boot()
    assert d.proc is not None
    pid, argv = d.proc.pid, cmdline(d.proc.pid)
    await install_root(csms, mpki)
    mark = csms.mark()
    answer = await signed_update(csms, 502, web.url(f"/fw/{artifacts.good_name}"), mpki.ecdsa,
                                 mpki.ecdsa.sign(artifacts.good), install_in_s=3600)
    assert answer == {"status": "Accepted"}
    payloads = await sequence(csms, SFW, mark, "InstallScheduled", settle=0.8)
    assert payloads == sfw(502, "Downloading", "Downloaded", "SignatureVerified", "InstallScheduled")
    assert firmware_files(d) == [artifacts.good_name]  # verified, kept for the install time
    assert security_events(csms, mark, "InvalidFirmwareSignature", "InvalidFirmwareSigningCertificate") == []
    await assert_running_version_untouched(d, csms, pid, argv)
    csms.assert_clean(BOX)


# --------------------------------------------------------------------------- bad signature


@pytest.mark.parametrize("scheme", ["rsa", "ecdsa"])
async def test_r_fw_2_bad_signature_is_invalid_signature_and_nothing_is_installed(
        scheme, boot, csms, web, artifacts, mpki):
    """A trusted signing certificate, but the signature is over other bytes: Downloading,
    Downloaded, InvalidSignature; the event InvalidFirmwareSignature; the file is deleted and
    the running version untouched (same program, 0.1.0, no ``<state>/current``)."""
    signer: Signer = getattr(mpki, scheme)
    web.state.files[artifacts.good_name] = artifacts.good
    d = await boot()
    assert d.proc is not None
    pid, argv = d.proc.pid, cmdline(d.proc.pid)
    await install_root(csms, mpki)
    mark = csms.mark()
    answer = await signed_update(csms, 503, web.url(f"/fw/{artifacts.good_name}"), signer,
                                 signer.sign(artifacts.good + b"\0"))
    assert answer == {"status": "Accepted"}
    payloads = await sequence(csms, SFW, mark, "InvalidSignature", settle=0.8)
    assert payloads == sfw(503, "Downloading", "Downloaded", "InvalidSignature")
    event = await wait_event(csms, mark, "InvalidFirmwareSignature")
    assert event.seq > next(r.seq for r in csms.calls(SFW) if r.seq > mark and r.payload["status"] == "Downloaded")
    assert len(security_events(csms, mark, "InvalidFirmwareSignature")) == 1
    assert security_events(csms, mark, "FirmwareUpdated", "InvalidFirmwareSigningCertificate") == []
    assert web.state.count(f"/fw/{artifacts.good_name}") == 1
    assert firmware_files(d) == []  # the file whose signature failed is deleted
    assert not (d.state_dir / "releases").exists()
    assert __version__ != GOOD_VERSION
    await assert_running_version_untouched(d, csms, pid, argv)
    csms.assert_clean(BOX)


# --------------------------------------------------------------------------- untrusted certificate


@pytest.mark.parametrize("case", ["another_root", "expired", "no_root_installed"])
async def test_r_fw_2_untrusted_signing_certificate_is_invalid_certificate_and_nothing_is_downloaded(
        case, boot, csms, web, artifacts, mpki):
    """The answer is InvalidCertificate, then the event InvalidFirmwareSigningCertificate; the
    server never sees a request. No SignedFirmwareStatusNotification: FirmwareStatusEnumType has
    no InvalidCertificate (whitepaper L01: the .conf status is the report), and the ocpp library
    refuses one that carries it (FormationViolation) — the daemon must not even try."""
    signer = {"another_root": mpki.foreign, "expired": mpki.expired, "no_root_installed": mpki.rsa}[case]
    web.state.files[artifacts.good_name] = artifacts.good
    d = await boot()
    assert d.proc is not None
    pid, argv = d.proc.pid, cmdline(d.proc.pid)
    if case != "no_root_installed":
        await install_root(csms, mpki)
    mark = csms.mark()
    answer = await signed_update(csms, 504, web.url(f"/fw/{artifacts.good_name}"), signer,
                                 signer.sign(artifacts.good))  # the signature itself is right
    assert answer == {"status": "InvalidCertificate"}
    event = await wait_event(csms, mark, "InvalidFirmwareSigningCertificate")
    assert answer_seq(csms, mark, "SignedUpdateFirmware") < event.seq  # answered first
    reason = {"another_root": "chain does not verify", "expired": "not valid at validation time",
              "no_root_installed": "no ManufacturerRootCertificate installed"}[case]
    assert reason in event.payload["techInfo"]
    assert len(security_events(csms, mark, "InvalidFirmwareSigningCertificate")) == 1
    assert security_events(csms, mark, "InvalidFirmwareSignature", "FirmwareUpdated") == []
    # nothing is fetched, not even later
    d.advance(3600)
    await asyncio.sleep(0.8)
    assert web.state.requests == []
    assert [r.payload for r in csms.calls(SFW) if r.seq > mark] == []
    assert "FormationViolation" not in d.log_path.read_text(errors="replace")
    assert firmware_files(d) == []
    await assert_running_version_untouched(d, csms, pid, argv)
    csms.assert_clean(BOX)
