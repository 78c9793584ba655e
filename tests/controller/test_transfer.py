"""Tests of the transfer module (controller.transfer) against real servers on 127.0.0.1.

Requirements covered: R-FW 1 (firmware, diagnostics and log transfers over FTP,
HTTP and HTTPS with retries and retryInterval), R-DT 2 (tariff picture
download), R-DT 3 (logo and screensaver pictures, an FTP folder of two PNGs),
R-SEC 2 (server certificate checked against the installed
CentralSystemRootCertificate, TLS >= 1.2).

Every server is started by the test in a thread on a free port: pyftpdlib for
FTP, http.server for HTTP and, with a test CA from tests/support/tls_material.py,
HTTPS. Retries never really sleep: the tests inject `sleep` and count calls.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import logging
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from file_servers import FileServer, running_ftp, serve_http, tarpit  # noqa: F401 - tarpit is a fixture
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from tls_material import make_ca, server_context

from controller.transfer import (
    KINDS,
    TransferError,
    TransferResult,
    download,
    list_ftp_dir,
    safe_join,
    safe_name,
    tls_context,
    upload,
)

pytestmark = pytest.mark.timeout(30)

_rng = random.Random(20240601)
FIRMWARE = _rng.randbytes(300_000)  # ~10 progress steps of CHUNK
TARIFF = b"\x89PNG\r\n\x1a\n" + _rng.randbytes(20_000)
OTHER = _rng.randbytes(50_000)
FILES = {"fw.bin": FIRMWARE, "tariff.png": TARIFF, "other.bin": OTHER}
ETAG = '"v1"'

USER = "alice"
PASSWORD = "pa:ss@wd/Z"  # needs percent-encoding in a URL
QPASSWORD = urllib.parse.quote(PASSWORD, safe="")

LOGGER = "controller.transfer.transfer"


class Sleeps(list):
    """An injected `sleep` that records instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- PKI


@dataclass
class Pki:
    ca: Path  # the "installed CentralSystemRootCertificate"
    other_ca: Path
    server_ctx: ssl.SSLContext
    wrong_host_ctx: ssl.SSLContext


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    root, other = make_ca("evsectl test root"), make_ca("some other root")
    (d / "ca.pem").write_text(root.pem)
    (d / "other.pem").write_text(other.pem)
    return Pki(d / "ca.pem", d / "other.pem", server_context(root.issue_server(), d),
               server_context(root.issue_server(("files.example.invalid",)), d))


# --------------------------------------------------------------------------- HTTP(S)


@dataclass
class HttpState:
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    flaky_failures: int = 0
    truncated: set[str] = field(default_factory=set)
    uploads: dict[tuple[str, str], bytes] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)


class Handler(BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.settimeout(5)
            self.connection.do_handshake()

    # -- helpers
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              length: bool = True) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _file(self, name: str, *, ranges: bool = True) -> None:
        data = FILES.get(name)
        if data is None:
            return self._send(404, b"no such file")
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if ranges and rng and (if_range is None or if_range == ETAG):
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            start = int(m.group(1))
            if start >= len(data):
                return self._send(416, headers={"Content-Range": f"bytes */{len(data)}"})
            return self._send(206, data[start:], {
                "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}", "ETag": ETAG})
        self._send(200, data, {"ETag": ETAG, "Accept-Ranges": "bytes" if ranges else "none"})

    # -- routes
    def do_GET(self) -> None:
        st = self.server.state
        st.requests.append(("GET", self.path, dict(self.headers)))
        path, _, query = self.path.partition("?")
        parts = path.strip("/").split("/")
        route, name = parts[0], "/".join(parts[1:])
        if route == "files":
            return self._file(name)
        if route == "norange":
            return self._file(name, ranges=False)
        if route == "nolength":  # HTTP/1.0: the body ends when the connection closes
            self.send_response(200)
            self.end_headers()
            self.wfile.write(FILES[name])
            return None
        if route == "flaky":
            if st.flaky_failures > 0:
                st.flaky_failures -= 1
                return self._send(500, b"try again")
            return self._file(name)
        if route == "truncate-once":
            if name not in st.truncated:
                st.truncated.add(name)
                data = FILES[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", ETAG)
                self.end_headers()
                self.wfile.write(data[: len(data) // 3])
                self.wfile.flush()
                self.close_connection = True
                return None
            return self._file(name)
        if route == "slow":
            st.release.wait(5)
            return self._send(200, b"late")
        if route == "private":
            token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != f"Basic {token}":
                return self._send(401, b"who are you", {"WWW-Authenticate": 'Basic realm="x"'})
            return self._file(name)
        if route == "redirect-to":
            target = urllib.parse.parse_qs(query)["u"][0]
            return self._send(302, headers={"Location": target})
        return self._send(404, b"not here")

    def do_POST(self) -> None:
        st = self.server.state
        st.requests.append(("POST", self.path, dict(self.headers)))
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/upload":
            msg = email.message_from_bytes(
                f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body,
                policy=email.policy.HTTP,
            )
            assert msg.is_multipart()
            for part in msg.iter_parts():
                field_name = part.get_param("name", header="content-disposition")
                st.uploads[(field_name, part.get_filename())] = part.get_payload(decode=True)
            return self._send(201, b"stored")
        if self.path == "/upload-moved":
            return self._send(302, headers={"Location": "/upload"})
        if self.path == "/upload-broken":
            return self._send(503, b"later")
        return self._send(404)


def _serve(tls: ssl.SSLContext | None):
    srv = FileServer(tls, Handler, HttpState())
    yield from serve_http(srv, before_stop=srv.state.release.set)


@pytest.fixture
def web():
    yield from _serve(None)


@pytest.fixture
def tls_web(pki):
    yield from _serve(pki.server_ctx)


@pytest.fixture
def wrong_host_web(pki):
    yield from _serve(pki.wrong_host_ctx)


# --------------------------------------------------------------------------- FTP


@dataclass
class FtpState:
    root: Path
    port: int = 0
    commands: list[str] = field(default_factory=list)
    rest_supported: bool = True
    size_supported: bool = True
    mlsd_supported: bool = True
    busy_retr: int = 0

    def url(self, path: str, *, login: bool = True, password: str = QPASSWORD) -> str:
        userinfo = f"{USER}:{password}@" if login else ""
        return f"ftp://{userinfo}127.0.0.1:{self.port}{path}"


@pytest.fixture
def ftp(tmp_path_factory):
    root = tmp_path_factory.mktemp("ftproot")
    for folder in ("fw", "pub", "saver/old", "incoming"):
        (root / folder).mkdir(parents=True)
    (root / "fw" / "fw.bin").write_bytes(FIRMWARE)
    (root / "pub" / "tariff.png").write_bytes(TARIFF)
    (root / "saver" / "day.png").write_bytes(TARIFF)
    (root / "saver" / "night.png").write_bytes(TARIFF[::-1])
    st = FtpState(root)

    class Handler(FTPHandler):
        def ftp_REST(self, line):
            st.commands.append(f"REST {line}")
            if not st.rest_supported:
                return self.respond("502 Command not implemented.")
            return super().ftp_REST(line)

        def ftp_SIZE(self, path):
            if not st.size_supported:
                return self.respond("502 Command not implemented.")
            return super().ftp_SIZE(path)

        def ftp_MLSD(self, path):
            if not st.mlsd_supported:
                return self.respond("502 Command not implemented.")
            return super().ftp_MLSD(path)

        def ftp_RETR(self, file):
            st.commands.append("RETR")
            if st.busy_retr > 0:
                st.busy_retr -= 1
                return self.respond("450 Busy, try again later.")
            return super().ftp_RETR(file)

    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, PASSWORD, str(root), perm="elradfmwMT")
    authorizer.add_anonymous(str(root))  # read-only
    with running_ftp(Handler, authorizer) as st.port:
        yield st


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir())


# =========================================================================== downloads


def test_r_fw_1_http_download_is_atomic_and_reports_progress(web, tmp_path, sleeps, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    seen: list[tuple[int, int | None]] = []
    dest = tmp_path / "fw.bin"
    res = download(web.url("/files/fw.bin"), dest, max_bytes=1 << 20, sleep=sleeps,
                   progress=lambda done, total: seen.append((done, total)))
    assert res == TransferResult(dest, len(FIRMWARE), 1)
    assert dest.read_bytes() == FIRMWARE
    assert leftovers(dest) == ["fw.bin"]
    assert sleeps == []
    # about every 10 %, ending with the whole file
    assert 5 <= len(seen) <= 12
    assert seen[-1] == (len(FIRMWARE), len(FIRMWARE))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    steps = [r.getMessage() for r in caplog.records if "%" in r.getMessage()]
    assert 5 <= len(steps) <= 12 and steps[-1].endswith(f"100% ({len(FIRMWARE)} of {len(FIRMWARE)} bytes)")


def test_r_fw_1_download_replaces_an_existing_file_only_when_complete(web, tmp_path):
    dest = tmp_path / "tariff.png"
    dest.write_bytes(b"old picture")
    with pytest.raises(TransferError):
        download(web.url("/missing.png"), dest, max_bytes=1 << 20)
    assert dest.read_bytes() == b"old picture"
    download(web.url("/files/tariff.png"), dest, max_bytes=1 << 20)
    assert dest.read_bytes() == TARIFF


def test_r_fw_1_http_follows_redirects(web, tmp_path):
    target = urllib.parse.quote(web.url("/files/tariff.png"), safe="")
    dest = tmp_path / "t.png"
    download(web.url(f"/redirect-to?u={target}"), dest, max_bytes=1 << 20)
    assert dest.read_bytes() == TARIFF


def test_r_fw_1_http_credentials_in_url_are_sent_as_basic_auth(web, tmp_path):
    dest = tmp_path / "fw.bin"
    download(web.url("/private/fw.bin", userinfo=f"{USER}:{QPASSWORD}@"), dest, max_bytes=1 << 20)
    assert dest.read_bytes() == FIRMWARE
    with pytest.raises(TransferError) as err:
        download(web.url("/private/fw.bin", userinfo=f"{USER}:wrong@"), dest, max_bytes=1 << 20,
                 retries=3, sleep=(sleeps := Sleeps()))
    assert err.value.kind == "auth" and sleeps == [] and "wrong" not in str(err.value)


def test_r_fw_1_https_download_checks_the_installed_root(tls_web, pki, tmp_path, sleeps):
    for host in ("127.0.0.1", "localhost"):
        dest = tmp_path / f"fw-{host}.bin"
        res = download(tls_web.url("/files/fw.bin", host=host), dest, max_bytes=1 << 20,
                       ca_file=pki.ca, sleep=sleeps)
        assert res.size == len(FIRMWARE) and dest.read_bytes() == FIRMWARE


@pytest.mark.parametrize("which", ["no_root", "other_root"])
def test_r_fw_1_https_without_the_installed_root_is_tls(tls_web, pki, tmp_path, sleeps, which):
    ca = None if which == "no_root" else pki.other_ca
    dest = tmp_path / "fw.bin"
    with pytest.raises(TransferError) as err:
        download(tls_web.url("/files/fw.bin"), dest, max_bytes=1 << 20, ca_file=ca,
                 retries=3, retry_interval_s=1, sleep=sleeps)
    assert err.value.kind == "tls" and not err.value.transient
    assert "certificate" in err.value.message and tls_web.url("/files/fw.bin") in err.value.message
    assert sleeps == [] and err.value.attempts == 1  # a certificate does not get better with time
    assert leftovers(dest) == []


def test_r_fw_1_https_checks_the_host_name(wrong_host_web, pki, tmp_path):
    with pytest.raises(TransferError) as err:
        download(wrong_host_web.url("/files/fw.bin"), tmp_path / "fw.bin", max_bytes=1 << 20,
                 ca_file=pki.ca)
    assert err.value.kind == "tls"
    assert "mismatch" in err.value.message and "'127.0.0.1'" in err.value.message


def test_r_fw_1_https_to_a_plain_http_server_is_tls(web, tmp_path):
    url = web.url("/files/fw.bin").replace("http://", "https://")
    with pytest.raises(TransferError) as err:
        download(url, tmp_path / "fw.bin", max_bytes=1 << 20)
    assert err.value.kind == "tls"


def test_r_fw_1_https_is_never_redirected_to_http(tls_web, web, pki, tmp_path):
    target = urllib.parse.quote(web.url("/files/tariff.png"), safe="")
    with pytest.raises(TransferError) as err:
        download(tls_web.url(f"/redirect-to?u={target}"), tmp_path / "t.png", max_bytes=1 << 20,
                 ca_file=pki.ca)
    assert err.value.kind == "protocol" and "302" in err.value.message
    assert not any(r[1].startswith("/files") for r in web.state.requests)


def test_r_fw_1_tls_context_is_tls_1_2_or_later_with_host_names_checked(pki):
    ctx = tls_context(pki.ca)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    common_names = [dict(rdn[0] for rdn in c["subject"]).get("commonName") for c in ctx.get_ca_certs()]
    assert "evsectl test root" in common_names
    with pytest.raises(TransferError) as err:
        tls_context(pki.ca.parent / "missing.pem")
    assert err.value.kind == "tls"


def test_r_fw_1_ftp_download_with_credentials_in_the_url(ftp, tmp_path, sleeps):
    dest = safe_join(tmp_path, "fw.bin")
    res = download(ftp.url("/fw/fw.bin"), dest, max_bytes=1 << 20, sleep=sleeps)
    assert res == TransferResult(dest, len(FIRMWARE), 1)
    assert dest.read_bytes() == FIRMWARE and leftovers(dest) == ["fw.bin"]


def test_r_dt_2_tariff_download_over_anonymous_ftp(ftp, tmp_path):
    dest = safe_join(tmp_path, "tariff.png")
    download(ftp.url("/pub/tariff.png", login=False), dest, max_bytes=2048 * 1024)
    assert dest.read_bytes() == TARIFF


def test_r_fw_1_ftp_wrong_password_is_auth(ftp, tmp_path, sleeps, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TransferError) as err:
        download(ftp.url("/fw/fw.bin", password="n0t-it%40all"), tmp_path / "fw.bin",
                 max_bytes=1 << 20, retries=2, sleep=sleeps)
    assert err.value.kind == "auth" and sleeps == []
    assert f"ftp://{USER}:***@127.0.0.1:{ftp.port}/fw/fw.bin" in err.value.message
    for text in (str(err.value), repr(err.value), caplog.text):
        assert "n0t-it" not in text


@pytest.mark.parametrize("scheme", ["http", "ftp"])
def test_r_fw_1_missing_file_is_not_found_and_not_retried(scheme, web, ftp, tmp_path, sleeps):
    url = web.url("/files/nope.bin") if scheme == "http" else ftp.url("/fw/nope.bin")
    dest = tmp_path / "nope.bin"
    with pytest.raises(TransferError) as err:
        download(url, dest, max_bytes=1 << 20, retries=3, retry_interval_s=10, sleep=sleeps)
    assert err.value.kind == "not_found" and not err.value.transient
    assert sleeps == [] and err.value.attempts == 1
    assert leftovers(dest) == []


@pytest.mark.parametrize("scheme", ["http", "https", "ftp"])
def test_r_fw_1_refused_port_is_retried_with_the_retry_interval(scheme, tmp_path, sleeps):
    port = free_port()
    url = f"{scheme}://{USER}:{QPASSWORD}@127.0.0.1:{port}/fw.bin"
    t0 = time.monotonic()
    with pytest.raises(TransferError) as err:
        download(url, tmp_path / "fw.bin", max_bytes=1 << 20, retries=3, retry_interval_s=42.5,
                 sleep=sleeps)
    assert time.monotonic() - t0 < 5  # nothing really slept
    assert err.value.kind == "refused" and err.value.transient
    assert sleeps == [42.5, 42.5, 42.5] and err.value.attempts == 4
    assert f"127.0.0.1:{port}" in err.value.message and PASSWORD not in err.value.message
    assert QPASSWORD not in err.value.message


def test_r_fw_1_refused_upload_is_retried_too(tmp_path, sleeps):
    src = tmp_path / "diag.tar.gz"
    src.write_bytes(OTHER)
    with pytest.raises(TransferError) as err:
        upload(f"http://127.0.0.1:{free_port()}/upload", src, retries=2, retry_interval_s=3,
               sleep=sleeps)
    assert err.value.kind == "refused" and sleeps == [3, 3] and err.value.attempts == 3


def test_r_fw_1_server_error_then_ok_is_retried(web, tmp_path, sleeps):
    web.state.flaky_failures = 2
    dest = tmp_path / "fw.bin"
    res = download(web.url("/flaky/fw.bin"), dest, max_bytes=1 << 20, retries=2,
                   retry_interval_s=5, sleep=sleeps)
    assert res.attempts == 3 and sleeps == [5, 5] and dest.read_bytes() == FIRMWARE


def test_r_fw_1_server_error_after_the_last_retry_fails(web, tmp_path, sleeps):
    web.state.flaky_failures = 5
    with pytest.raises(TransferError) as err:
        download(web.url("/flaky/fw.bin"), tmp_path / "fw.bin", max_bytes=1 << 20, retries=1,
                 retry_interval_s=5, sleep=sleeps)
    assert err.value.kind == "protocol" and "500" in err.value.message
    assert err.value.attempts == 2 and sleeps == [5]


def test_r_fw_1_ftp_busy_answer_is_retried(ftp, tmp_path, sleeps):
    ftp.busy_retr = 1
    dest = tmp_path / "fw.bin"
    res = download(ftp.url("/fw/fw.bin"), dest, max_bytes=1 << 20, retries=1,
                   retry_interval_s=7, sleep=sleeps)
    assert res.attempts == 2 and sleeps == [7] and dest.read_bytes() == FIRMWARE


def test_r_fw_1_http_timeout(web, tmp_path, sleeps):
    t0 = time.monotonic()
    with pytest.raises(TransferError) as err:
        download(web.url("/slow"), tmp_path / "x", max_bytes=1 << 20, timeout_s=0.2, retries=1,
                 retry_interval_s=9, sleep=sleeps)
    assert time.monotonic() - t0 < 2
    assert err.value.kind == "timeout" and "0.2 s" in err.value.message
    assert sleeps == [9] and err.value.attempts == 2


def test_r_fw_1_ftp_timeout(tarpit, tmp_path, sleeps):  # noqa: F811 - the fixture
    t0 = time.monotonic()
    with pytest.raises(TransferError) as err:
        download(f"ftp://127.0.0.1:{tarpit}/fw.bin", tmp_path / "x", max_bytes=1 << 20,
                 timeout_s=0.2, sleep=sleeps)
    assert time.monotonic() - t0 < 2
    assert err.value.kind == "timeout" and sleeps == []


# --------------------------------------------------------------------------- size limits


def test_r_fw_1_too_large_by_content_length(web, tmp_path, sleeps):
    dest = tmp_path / "fw.bin"
    with pytest.raises(TransferError) as err:
        download(web.url("/files/fw.bin"), dest, max_bytes=100_000, retries=2, sleep=sleeps)
    assert err.value.kind == "too_large" and str(len(FIRMWARE)) in err.value.message
    assert sleeps == [] and leftovers(dest) == []


def test_r_fw_1_too_large_while_streaming_without_length(web, tmp_path, sleeps):
    dest = tmp_path / "fw.bin"
    with pytest.raises(TransferError) as err:
        download(web.url("/nolength/fw.bin"), dest, max_bytes=100_000, retries=2, sleep=sleeps)
    assert err.value.kind == "too_large" and "100000" in err.value.message
    assert sleeps == [] and leftovers(dest) == []


def test_r_fw_1_exactly_max_bytes_is_accepted(web, tmp_path):
    dest = tmp_path / "t.png"
    assert download(web.url("/nolength/tariff.png"), dest, max_bytes=len(TARIFF)).size == len(TARIFF)


def test_r_fw_1_ftp_too_large_by_size(ftp, tmp_path):
    dest = tmp_path / "fw.bin"
    with pytest.raises(TransferError) as err:
        download(ftp.url("/fw/fw.bin"), dest, max_bytes=100_000)
    assert err.value.kind == "too_large" and "RETR" not in ftp.commands
    assert leftovers(dest) == []


def test_r_fw_1_ftp_too_large_while_streaming_without_size(ftp, tmp_path):
    ftp.size_supported = False
    dest = tmp_path / "fw.bin"
    with pytest.raises(TransferError) as err:
        download(ftp.url("/fw/fw.bin"), dest, max_bytes=100_000)
    assert err.value.kind == "too_large" and "RETR" in ftp.commands
    assert leftovers(dest) == []


# --------------------------------------------------------------------------- resume


def test_r_fw_1_http_resumes_a_partial_file_with_range(web, tmp_path):
    dest = tmp_path / "fw.bin"
    dest.with_suffix(".bin.part").write_bytes(FIRMWARE[:100_000])
    res = download(web.url("/files/fw.bin"), dest, max_bytes=1 << 20)
    assert res.size == len(FIRMWARE) and dest.read_bytes() == FIRMWARE
    assert web.state.requests[-1][2].get("Range") == "bytes=100000-"
    assert leftovers(dest) == ["fw.bin"]


def test_r_fw_1_http_restarts_when_the_server_ignores_range(web, tmp_path):
    dest = tmp_path / "fw.bin"
    dest.with_suffix(".bin.part").write_bytes(b"x" * 1000)
    download(web.url("/norange/fw.bin"), dest, max_bytes=1 << 20)
    assert dest.read_bytes() == FIRMWARE


def test_r_fw_1_http_part_as_long_as_the_file_restarts_after_416(web, tmp_path):
    dest = tmp_path / "fw.bin"
    dest.with_suffix(".bin.part").write_bytes(b"z" * len(FIRMWARE))
    download(web.url("/files/fw.bin"), dest, max_bytes=1 << 20)
    assert dest.read_bytes() == FIRMWARE
    assert [r[2].get("Range") for r in web.state.requests] == [f"bytes={len(FIRMWARE)}-", None]


def test_r_fw_1_http_changed_file_is_fetched_whole(web, tmp_path):
    """If-Range: the validator recorded with the part no longer matches."""
    dest = tmp_path / "fw.bin"
    url = web.url("/files/fw.bin")
    dest.with_suffix(".bin.part").write_bytes(b"stale" * 1000)
    dest.with_suffix(".bin.part.meta").write_text(json.dumps({"url": url, "validator": '"v0"'}))
    download(url, dest, max_bytes=1 << 20)
    assert dest.read_bytes() == FIRMWARE
    assert web.state.requests[-1][2]["If-Range"] == '"v0"'
    assert leftovers(dest) == ["fw.bin"]


def test_r_fw_1_http_truncated_transfer_resumes_on_the_retry(web, tmp_path, sleeps):
    dest = tmp_path / "fw.bin"
    res = download(web.url("/truncate-once/fw.bin"), dest, max_bytes=1 << 20, retries=1,
                   retry_interval_s=2, sleep=sleeps)
    assert res.attempts == 2 and sleeps == [2] and dest.read_bytes() == FIRMWARE
    first, second = web.state.requests
    assert "Range" not in first[2]
    assert second[2]["Range"] == f"bytes={len(FIRMWARE) // 3}-" and second[2]["If-Range"] == ETAG


def test_r_fw_1_partial_file_is_kept_after_a_transient_failure_for_the_next_call(web, tmp_path):
    dest = tmp_path / "fw.bin"
    with pytest.raises(TransferError) as err:
        download(web.url("/truncate-once/fw.bin"), dest, max_bytes=1 << 20)
    assert err.value.transient and err.value.kind == "protocol"
    assert dest.with_suffix(".bin.part").stat().st_size == len(FIRMWARE) // 3
    download(web.url("/truncate-once/fw.bin"), dest, max_bytes=1 << 20)
    assert dest.read_bytes() == FIRMWARE
    assert web.state.requests[-1][2]["Range"] == f"bytes={len(FIRMWARE) // 3}-"


def test_r_fw_1_partial_file_of_another_url_is_not_resumed(web, tmp_path):
    dest = tmp_path / "tariff.png"
    with pytest.raises(TransferError):
        download(web.url("/truncate-once/fw.bin"), dest, max_bytes=1 << 20)
    assert dest.with_suffix(".png.part").exists()
    download(web.url("/files/tariff.png"), dest, max_bytes=1 << 20)
    assert dest.read_bytes() == TARIFF
    assert "Range" not in web.state.requests[-1][2]
    assert leftovers(dest) == ["tariff.png"]


def test_r_fw_1_ftp_resumes_a_partial_file_with_rest(ftp, tmp_path):
    dest = tmp_path / "fw.bin"
    dest.with_suffix(".bin.part").write_bytes(FIRMWARE[:100_000])
    res = download(ftp.url("/fw/fw.bin"), dest, max_bytes=1 << 20)
    assert res.size == len(FIRMWARE) and dest.read_bytes() == FIRMWARE
    assert "REST 100000" in ftp.commands
    assert leftovers(dest) == ["fw.bin"]


def test_r_fw_1_ftp_without_rest_fetches_the_whole_file(ftp, tmp_path):
    ftp.rest_supported = False
    dest = tmp_path / "fw.bin"
    dest.with_suffix(".bin.part").write_bytes(b"y" * 100_000)
    download(ftp.url("/fw/fw.bin"), dest, max_bytes=1 << 20)
    assert dest.read_bytes() == FIRMWARE and "REST 100000" in ftp.commands


# =========================================================================== uploads


def test_r_fw_1_http_upload_posts_multipart_file(web, tmp_path, sleeps):
    src = tmp_path / "diagnostics-20240601.tar.gz"
    src.write_bytes(FIRMWARE)
    seen = []
    res = upload(web.url("/upload"), src, sleep=sleeps, progress=lambda d, t: seen.append((d, t)))
    assert res == TransferResult(src, len(FIRMWARE), 1)
    assert web.state.uploads == {("file", src.name): FIRMWARE}
    assert seen[-1] == (len(FIRMWARE), len(FIRMWARE))


def test_r_fw_1_https_upload_checks_the_installed_root(tls_web, pki, tmp_path):
    src = tmp_path / "log.tar.gz"
    src.write_bytes(OTHER)
    upload(tls_web.url("/upload"), src, ca_file=pki.ca)
    assert tls_web.state.uploads == {("file", "log.tar.gz"): OTHER}
    with pytest.raises(TransferError) as err:
        upload(tls_web.url("/upload"), src, ca_file=pki.other_ca)
    assert err.value.kind == "tls"


def test_r_fw_1_http_upload_failures(web, tmp_path, sleeps):
    src = tmp_path / "log.tar.gz"
    src.write_bytes(OTHER)
    with pytest.raises(TransferError) as err:
        upload(web.url("/upload-moved"), src, retries=2, sleep=sleeps)
    assert err.value.kind == "protocol" and not err.value.transient and sleeps == []
    assert web.state.uploads == {}  # the POST was not turned into a GET
    with pytest.raises(TransferError) as err:
        upload(web.url("/upload-broken"), src, retries=2, retry_interval_s=1, sleep=sleeps)
    assert err.value.kind == "protocol" and "503" in err.value.message and sleeps == [1, 1]
    with pytest.raises(TransferError) as err:
        upload(web.url("/upload"), tmp_path / "missing.tar.gz")
    assert err.value.kind == "io"


def test_r_fw_1_ftp_upload_into_a_folder_under_its_own_name(ftp, tmp_path, sleeps):
    src = tmp_path / "diagnostics.tar.gz"
    src.write_bytes(FIRMWARE)
    res = upload(ftp.url("/incoming/"), src, sleep=sleeps)
    assert res == TransferResult(src, len(FIRMWARE), 1)
    assert (ftp.root / "incoming" / "diagnostics.tar.gz").read_bytes() == FIRMWARE


def test_r_fw_1_ftp_upload_to_a_file_name(ftp, tmp_path):
    src = tmp_path / "diagnostics.tar.gz"
    src.write_bytes(OTHER)
    upload(ftp.url("/incoming/CP0001-diag.tgz"), src)
    assert (ftp.root / "incoming" / "CP0001-diag.tgz").read_bytes() == OTHER


def test_r_fw_1_ftp_upload_refused_by_the_server(ftp, tmp_path, sleeps):
    src = tmp_path / "diagnostics.tar.gz"
    src.write_bytes(OTHER)
    with pytest.raises(TransferError) as err:  # anonymous is read-only
        upload(ftp.url("/incoming/", login=False), src, retries=2, sleep=sleeps)
    assert err.value.kind == "protocol" and "550" in err.value.message and sleeps == []
    assert not (ftp.root / "incoming" / "diagnostics.tar.gz").exists()


# =========================================================================== FTP folders


@pytest.mark.parametrize("path", ["/saver/", "/saver"])
def test_r_dt_3_screensaver_folder_lists_the_two_pictures(ftp, path):
    assert list_ftp_dir(ftp.url(path)) == ["day.png", "night.png"]
    assert list_ftp_dir(ftp.url(path, login=False)) == ["day.png", "night.png"]


def test_r_dt_3_folder_listing_without_mlsd_uses_nlst(ftp, tmp_path):
    ftp.mlsd_supported = False
    names = list_ftp_dir(ftp.url("/saver/"))
    assert {"day.png", "night.png"} <= set(names)  # NLST cannot tell folders from files
    for name in names:
        if name.endswith(".png"):
            download(ftp.url(f"/saver/{name}"), safe_join(tmp_path, name), max_bytes=1 << 20)
    assert (tmp_path / "night.png").read_bytes() == TARIFF[::-1]


def test_r_dt_3_folder_listing_failures(ftp, web):
    with pytest.raises(TransferError) as err:
        list_ftp_dir(ftp.url("/nothing-here/"))
    assert err.value.kind == "not_found"
    with pytest.raises(TransferError) as err:
        list_ftp_dir(web.url("/saver/"))
    assert err.value.kind == "bad_url" and "ftp" in err.value.message
    with pytest.raises(TransferError) as err:
        list_ftp_dir(ftp.url("/saver/", password="bad"))
    assert err.value.kind == "auth"


# =========================================================================== bad input


@pytest.mark.parametrize("url", [
    "file:///etc/passwd",
    "sftp://host/fw.bin",
    "gopher://host/fw.bin",
    "data:,hello",
    "ftps://host/fw.bin",
    "host/fw.bin",
])
def test_r_fw_1_unsupported_scheme_is_bad_url(url, tmp_path, sleeps):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x")
    for call in (lambda: download(url, tmp_path / "fw.bin", max_bytes=10, retries=3, sleep=sleeps),
                 lambda: upload(url, src, retries=3, sleep=sleeps)):
        with pytest.raises(TransferError) as err:
            call()
        assert err.value.kind == "bad_url" and "scheme" in err.value.message
    assert sleeps == [] and leftovers(src) == ["src.bin"]


@pytest.mark.parametrize("url", [
    "",
    "http://",
    "ftp:///fw.bin",
    "http://[::1/fw.bin",
    "http://127.0.0.1:99999/fw.bin",
    "http://127.0.0.1:port/fw.bin",
    "http://127.0.0.1/fw bin",
    "http://127.0.0.1/fw\r\nX-Injected: 1",
    "ftp://127.0.0.1/firmware/",
])
def test_r_fw_1_malformed_url_is_bad_url(url, tmp_path, sleeps):
    with pytest.raises(TransferError) as err:
        download(url, tmp_path / "fw.bin", max_bytes=10, retries=3, sleep=sleeps)
    assert err.value.kind == "bad_url" and sleeps == []


@pytest.mark.parametrize("name", ["..", ".", "", "../fw.bin", "/etc/passwd", "a/b", "a\\b",
                                  "fw\x00.bin", "fw\n.bin"])
def test_r_fw_1_path_escape_is_bad_path(name, tmp_path):
    with pytest.raises(TransferError) as err:
        safe_name(name)
    assert err.value.kind == "bad_path"
    with pytest.raises(TransferError) as err:
        safe_join(tmp_path, name)
    assert err.value.kind == "bad_path"


def test_r_fw_1_safe_names_pass(tmp_path):
    for name in ("tariff.png", "fw-1.2.3.tar.gz", "..hidden", "a..b", "screen saver.png"):
        assert safe_name(name) == name
        assert safe_join(tmp_path, name) == tmp_path / name


@pytest.mark.parametrize("case", ["bad_scheme", "malformed", "refused", "http_auth", "ftp_auth",
                                  "not_found"])
def test_r_sec_5_password_never_in_error_messages_or_logs(case, web, ftp, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "Sup3rS3cret"
    urls = {
        "bad_scheme": f"sftp://{USER}:{secret}@127.0.0.1/fw.bin",
        "malformed": f"http://{USER}:{secret}@[::1/fw.bin",
        "refused": f"ftp://{USER}:{secret}@127.0.0.1:{free_port()}/fw.bin",
        "http_auth": web.url("/private/fw.bin", userinfo=f"{USER}:{secret}@"),
        "ftp_auth": ftp.url("/fw/fw.bin", password=secret),
        "not_found": web.url("/files/none.bin", userinfo=f"{USER}:{secret}@"),
    }
    with pytest.raises(TransferError) as err:
        download(urls[case], tmp_path / "fw.bin", max_bytes=1 << 20, retries=1,
                 sleep=lambda s: None)
    assert err.value.kind in KINDS
    for text in (str(err.value), repr(err.value), err.value.message, caplog.text):
        assert secret not in text
    if case != "malformed":
        assert USER in err.value.message and "***" in err.value.message
