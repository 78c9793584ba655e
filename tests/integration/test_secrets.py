"""R-SEC 5 over the wire: the AuthorizationKey and the charger's private key never leave
their secrets store.

One run of the real daemon does everything that could leak them: an AuthorizationKey
seeded in the settings, another one set by ChangeConfiguration, a refused (401)
connection with the new one and a reconnection, the key pair generated for
SignChargePointCertificate and its certificate accepted, a diagnostics bundle and a
security log uploaded to a local HTTP server, GetConfiguration, ``evsectl status --json``.
Then everything the daemon wrote is searched for the secrets in every form they could
take (hex in both cases, the raw bytes, the Basic-auth token; PEM body, DER, DER hex and
the private scalar). Allowed to hold them: the key file ``<state>/certs/cp-<kid>.key``
and the state database, whose ``config_keys`` table is the AuthorizationKey's store
(both readable by the service user only). Run at the default log level (INFO) and at DEBUG.
"""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from daemon_harness import REPO, Daemon
from tls_material import make_ca, pem_of

from controller.csms import CentralSystem

BOX = "CP-TEST"
SEEDED_KEY = "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678"  # 20 bytes, in the settings file
CHANGED_KEY = "5EC2E75EC2E75EC2E75EC2E75EC2E75EC2E75EC2"  # 20 bytes, set over OCPP
CS_ROOT = "CentralSystemRootCertificate"


class _Uploads(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes, str]]]  # one list per server (see upload_server)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.received.append((self.path, body, self.headers.get("Content-Type", "")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upload_server() -> Iterator[tuple[str, list[tuple[str, bytes, str]]]]:
    received: list[tuple[str, bytes, str]] = []
    handler = type("Uploads", (_Uploads,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def uploaded_files(body: bytes, content_type: str) -> dict[str, bytes]:
    """The members of the tar.gz bundles of a multipart/form-data upload, by name."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    out: dict[str, bytes] = {}
    for part in message.iter_parts():
        data = part.get_payload(decode=True)
        out[f"upload:{part.get_filename()}"] = data
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                extracted = tar.extractfile(member)
                if extracted is not None:
                    out[f"bundle:{part.get_filename()}:{member.name}"] = extracted.read()
    return out


def key_needles(key: str) -> dict[str, bytes]:
    raw = bytes.fromhex(key)
    return {
        f"{key} (hex)": key.encode(),
        f"{key} (hex, lower case)": key.lower().encode(),
        f"{key} (raw bytes)": raw,
        f"{key} (Basic token)": base64.b64encode(f"{BOX}:{key}".encode()),
        f"{key} (raw, base64)": base64.b64encode(raw),
    }


def private_key_needles(key_file: Path) -> dict[str, bytes]:
    pem = key_file.read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    body = [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]
    needles = {
        "private key PEM": pem.strip(),
        "private key DER": der,
        "private key DER hex": der.hex().encode(),
        "private key DER HEX": der.hex().upper().encode(),
        "private scalar": scalar,
        "private scalar hex": scalar.hex().encode(),
        "private scalar HEX": scalar.hex().upper().encode(),
        "private key DER base64": base64.b64encode(der),
    }
    for i, line in enumerate(body):  # every full line of the PEM body on its own
        if len(line) >= 40:
            needles[f"private key PEM line {i}"] = line.encode()
    return needles


def leaks(haystacks: dict[str, bytes], needles: dict[str, bytes]) -> list[str]:
    return [f"{what} in {where}" for where, data in haystacks.items() for what, needle in needles.items()
            if needle in data]


def written_files(d: Daemon) -> dict[str, bytes]:
    """Every regular file under the daemon's directory except the settings the test wrote."""
    out: dict[str, bytes] = {}
    for path in sorted(d.tmp.rglob("*")):
        if path.is_file() and not path.is_symlink() and path != d.config:
            out[str(path.relative_to(d.tmp))] = path.read_bytes()
    return out


def sqlite_dump(db: Path) -> list[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return list(con.iterdump())
    finally:
        con.close()


async def exercise_and_search(make_daemon, upload_server, *, log_level: str) -> list[str]:
    """Run the daemon through everything that could leak a secret; the leaks found."""
    upload_url, uploads = upload_server
    root = make_ca("secrets test root")
    async with CentralSystem(basic_auth_password=SEEDED_KEY) as csms:
        d = make_daemon(csms.url, keys={"SecurityProfile": 1, "AuthorizationKey": SEEDED_KEY})
        settings = d.config.read_text()
        assert SEEDED_KEY in settings  # the settings hold it: the bundle must not
        d.config.write_text(settings.replace('level = "DEBUG"', f'level = "{log_level}"'))
        await d.start()
        await csms.wait_for("BootNotification", identity=BOX, timeout=15)
        await d.until(lambda s: s["link"] == "connected", what="boot accepted")

        # a new key over OCPP, a refused attempt, a reconnection with the new key
        csms.basic_auth_password = "0" * 40  # the charger reconnects at once with its new key (TC_073)
        answer = await csms.call(BOX, "ChangeConfiguration", {"key": "AuthorizationKey", "value": CHANGED_KEY})
        assert answer == {"status": "Accepted"}
        for _ in range(300):
            if any(h.status == 401 for h in csms.handshakes(BOX)):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("no refused attempt")
        csms.basic_auth_password = CHANGED_KEY
        mark = csms.mark()
        await csms.wait_for("BootNotification", identity=BOX, since=mark, timeout=15)
        await d.until(lambda s: s["link"] == "connected", what="boot accepted again")

        # the charger makes its key pair, a certificate is accepted for it
        answer = await csms.call(BOX, "InstallCertificate", {"certificateType": CS_ROOT, "certificate": root.pem})
        assert answer == {"status": "Accepted"}
        mark = csms.mark()
        answer = await csms.call(BOX, "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})
        assert answer == {"status": "Accepted"}
        csr = (await csms.wait_for("SignCertificate", identity=BOX, since=mark)).payload["csr"]
        answer = await csms.call(BOX, "CertificateSigned", {"certificateChain": pem_of(root.sign_csr(csr))})
        assert answer == {"status": "Accepted"}

        # what the CSMS can ask for
        answers = {
            "GetConfiguration (all)": await csms.call(BOX, "GetConfiguration", {}),
            "GetConfiguration (asked)": await csms.call(BOX, "GetConfiguration", {"key": ["AuthorizationKey"]}),
        }
        assert answers["GetConfiguration (asked)"].get("unknownKey") == ["AuthorizationKey"]
        mark = csms.mark()
        await csms.call(BOX, "GetDiagnostics", {"location": f"{upload_url}/diagnostics/"})
        await csms.wait_for("DiagnosticsStatusNotification", identity=BOX, since=mark, timeout=15,
                            predicate=lambda r: r.payload["status"] in ("Uploaded", "UploadFailed"))
        for request_id, log_type in ((7, "SecurityLog"), (8, "DiagnosticsLog")):
            mark = csms.mark()
            answer = await csms.call(BOX, "GetLog", {"logType": log_type, "requestId": request_id,
                                                     "log": {"remoteLocation": f"{upload_url}/logs/"}})
            assert answer["status"] == "Accepted"
            await csms.wait_for("LogStatusNotification", identity=BOX, since=mark, timeout=15,
                                predicate=lambda r: r.payload["status"] in ("Uploaded", "UploadFailed"))
        assert [r.payload["status"] for r in csms.calls("DiagnosticsStatusNotification")][-1] == "Uploaded"
        assert [r.payload["status"] for r in csms.calls("LogStatusNotification")][-1] == "Uploaded"
        assert len(uploads) == 3

        status_proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller", "status", "--json", "--config", str(d.config),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
            env={**os.environ, "EVSECTL_CONFIG": str(d.config)},
        )
        status_out, status_err = await asyncio.wait_for(status_proc.communicate(), 30)
        assert status_proc.returncode == 0, status_err
        json.loads(status_out)

        db = d.state_dir / "evsectl.sqlite"
        dump = sqlite_dump(db)
        await d.stop()  # logs flushed, nothing more written

    certs = d.state_dir / "certs"
    (key_file,) = sorted(certs.glob("cp-*.key"))
    needles = {**key_needles(SEEDED_KEY), **key_needles(CHANGED_KEY), **private_key_needles(key_file)}

    # what the daemon sent and printed
    haystacks: dict[str, bytes] = {
        "frames the charger sent": "\n".join(f.text for f in csms.frames(BOX, "in")).encode(),
        "evsectl status --json": status_out + status_err,
        **{name: json.dumps(a).encode() for name, a in answers.items()},
    }
    for path, body, content_type in uploads:
        assert content_type.startswith("multipart/form-data"), content_type
        for name, data in uploaded_files(body, content_type).items():
            haystacks[f"{path} {name}"] = data
    security_logs = [data for name, data in haystacks.items() if "SecurityLog" in name and name.endswith("security.log")]
    assert security_logs and b"FailedToAuthenticateAtCentralSystem" in security_logs[0]  # TC_079: GetLog SecurityLog
    bundle_names = [n for n in haystacks if n.startswith("/diagnostics/") and n.endswith("evsectl.toml")]
    assert bundle_names, f"the diagnostics bundle holds the settings: {sorted(haystacks)}"
    assert b"AuthorizationKey" in haystacks[bundle_names[0]]  # there, but redacted (below)

    # the SQLite dump: only the config_keys row of the AuthorizationKey may hold it
    key_rows = [line for line in dump if "AuthorizationKey" in line and line.startswith('INSERT INTO "config_keys"')]
    other_rows = [line for line in dump if line not in key_rows]
    haystacks["sqlite dump (all but the AuthorizationKey row of config_keys)"] = "\n".join(other_rows).encode()
    haystacks["sqlite dump (the AuthorizationKey row)"] = "\n".join(key_rows).encode()

    # every file the daemon wrote (stdout/stderr log, state/logs/*, certs, database, ...)
    files = written_files(d)
    assert "daemon.log" in files and "state/logs/evsectl.log" in files and "state/logs/security.log" in files
    secrets_store = {str(key_file.relative_to(d.tmp))}
    database = {name for name in files if name.startswith("state/evsectl.sqlite")}
    for name, data in files.items():
        if name not in secrets_store:
            haystacks[name] = data

    private = {k: v for k, v in needles.items() if k.startswith("private")}
    # the database (files and row) is the AuthorizationKey's store: only the private key is searched there
    keeps_authorization_key = database | {"sqlite dump (the AuthorizationKey row)"}
    found = leaks({k: v for k, v in haystacks.items() if k not in keeps_authorization_key}, needles)
    found += leaks({k: v for k, v in haystacks.items() if k in keeps_authorization_key}, private)

    # the secrets store itself: the key file holds the key; the AuthorizationKey set over
    # OCPP is in config_keys (the seeded one is not persisted: it stays in the settings file)
    assert leaks({"key file": files[str(key_file.relative_to(d.tmp))]}, private)
    assert any(CHANGED_KEY in row for row in key_rows), "config_keys is where the AuthorizationKey is kept"
    assert not any(SEEDED_KEY in row for row in dump)

    # readable by the service user alone
    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(certs) == 0o700
    for path in certs.iterdir():
        assert mode(path) == 0o600, path
    for path in d.state_dir.glob("evsectl.sqlite*"):
        assert mode(path) == 0o600, path
    assert mode(d.state_dir) & 0o007 == 0  # nothing for "others" in the state directory
    return found


async def test_r_sec_5_authorization_key_and_private_key_leak_nowhere(make_daemon, upload_server) -> None:
    """At the default log level (INFO): found nowhere but in their stores."""
    found = await exercise_and_search(make_daemon, upload_server, log_level="INFO")
    assert found == [], "secrets leaked:\n  " + "\n  ".join(found)


async def test_r_sec_5_secrets_leak_nowhere_at_debug_log_level(make_daemon, upload_server) -> None:
    """At DEBUG every frame is logged: the key's value is redacted from them too."""
    found = await exercise_and_search(make_daemon, upload_server, log_level="DEBUG")
    assert found == [], "secrets leaked:\n  " + "\n  ".join(found)
