"""File servers on 127.0.0.1 for the firmware/diagnostics integration tests (R-FW 1).

Started by the tests in threads: ``http.server`` for HTTP and (with a test CA
from ``tls_material``) HTTPS, pyftpdlib for FTP, and a "tarpit" port that
accepts connections in the kernel and never answers. The HTTP server serves
whatever files a test puts in ``state.files``, counts every request per path
and stores multipart uploads. (``tests/controller/test_transfer.py`` has its
own HTTP handler: it plays flaky, truncating and ETag-checking servers.)

HTTP routes (GET):
  /fw/<name>     the bytes of ``state.files[name]`` (404 when absent)
  /busy/<name>   503 (a transient failure: retried)
  /huge/<name>   200 announcing a Content-Length of 400 MB (over the firmware limit)
  anything else  404
HTTP routes (POST, multipart/form-data, field ``file``):
  /upload        201, stored in ``state.uploads[filename]``
  /upload-broken 500
"""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import ssl
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer
from tls_material import make_ca, server_context

FTP_USER = "alice"
FTP_PASSWORD = "pa:ss@wd/Z"  # needs percent-encoding in a URL
FTP_QPASSWORD = urllib.parse.quote(FTP_PASSWORD, safe="")
HUGE_BYTES = 400_000_000  # over the daemon's 300 MiB firmware limit


# --------------------------------------------------------------------------- PKI


@dataclass
class Pki:
    ca: Path  # the test root: installed as <state>/certs/central_system_root.pem
    server_ctx: ssl.SSLContext  # 127.0.0.1/localhost, signed by the test root
    untrusted_ctx: ssl.SSLContext  # 127.0.0.1/localhost, signed by another root


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    root, other = make_ca("evsectl test root"), make_ca("some other root")
    (d / "ca.pem").write_text(root.pem)
    return Pki(d / "ca.pem", server_context(root.issue_server(), d),
               server_context(other.issue_server(), d))


# --------------------------------------------------------------------------- HTTP(S)


@dataclass
class HttpState:
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, raw path)
    uploads: dict[str, bytes] = field(default_factory=dict)  # file name -> content
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, path: str, method: str = "GET") -> int:
        with self.lock:
            return Counter(self.requests)[(method, path)]


class _Handler(BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.settimeout(5)
            self.connection.do_handshake()

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        st = self.server.state
        with st.lock:
            st.requests.append(("GET", self.path))
        route, _, name = self.path.lstrip("/").partition("/")
        if route == "fw" and name in st.files:
            return self._send(200, st.files[name], {"Content-Type": "application/octet-stream"})
        if route == "busy":
            return self._send(503, b"try again later")
        if route == "huge":
            self.send_response(200)
            self.send_header("Content-Length", str(HUGE_BYTES))
            self.end_headers()
            try:
                self.wfile.write(b"\0" * 1024)
            except OSError:
                pass
            self.close_connection = True
            return None
        return self._send(404, b"no such file")

    def do_POST(self) -> None:
        st = self.server.state
        with st.lock:
            st.requests.append(("POST", self.path))
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/upload":
            msg = email.message_from_bytes(
                f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body,
                policy=email.policy.HTTP,
            )
            for part in msg.iter_parts():
                if part.get_param("name", header="content-disposition") == "file":
                    with st.lock:
                        st.uploads[part.get_filename()] = part.get_payload(decode=True)
            return self._send(201, b"stored")
        if self.path == "/upload-broken":
            return self._send(500, b"disk full")
        return self._send(404)


class FileServer(ThreadingHTTPServer):
    """An HTTP(S) server on 127.0.0.1 (a free port) with ``handler`` and its ``state``."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None, handler: type[BaseHTTPRequestHandler] = _Handler,
                 state: Any = None) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.state = state if state is not None else HttpState()
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.scheme = "https" if tls else "http"

    def handle_error(self, request: object, client_address: object) -> None:  # quiet: clients are rude on purpose
        pass

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1", userinfo: str = "") -> str:
        return f"{self.scheme}://{userinfo}{host}:{self.port}{path}"


def serve_http(srv: FileServer, before_stop: Callable[[], None] = lambda: None) -> Iterator[FileServer]:
    """Run ``srv`` in a thread for a fixture; ``before_stop`` unblocks handlers still waiting."""
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        before_stop()
        srv.shutdown()
        srv.server_close()
        thread.join(2)


def _serve(tls: ssl.SSLContext | None) -> Iterator[FileServer]:
    yield from serve_http(FileServer(tls))


@pytest.fixture
def web() -> Iterator[FileServer]:
    yield from _serve(None)


@pytest.fixture
def tls_web(pki: Pki) -> Iterator[FileServer]:
    yield from _serve(pki.server_ctx)


@pytest.fixture
def untrusted_web(pki: Pki) -> Iterator[FileServer]:
    yield from _serve(pki.untrusted_ctx)


# --------------------------------------------------------------------------- FTP


@dataclass
class FtpServer:
    root: Path
    port: int = 0

    def url(self, path: str) -> str:
        """A URL with the credentials in it (the password percent-encoded)."""
        return f"ftp://{FTP_USER}:{FTP_QPASSWORD}@127.0.0.1:{self.port}{path}"


@contextmanager
def running_ftp(handler: type[FTPHandler], authorizer: DummyAuthorizer) -> Iterator[int]:
    """Serve ``handler`` with ``authorizer`` on 127.0.0.1 in a thread; yields the port."""
    handler.authorizer = authorizer
    handler.banner = "test ftpd"
    handler.auth_failed_timeout = 0.01  # pyftpdlib waits 3 s after a bad password by default
    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    server = FTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            server.serve_forever(timeout=0.02, blocking=False, handle_exit=False)
        server.close_all()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server.address[1]
    finally:
        stop.set()
        thread.join(2)


@pytest.fixture
def ftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    root = tmp_path_factory.mktemp("ftproot")
    for folder in ("fw", "incoming"):
        (root / folder).mkdir()
    authorizer = DummyAuthorizer()
    authorizer.add_user(FTP_USER, FTP_PASSWORD, str(root), perm="elradfmwMT")

    class Handler(FTPHandler):
        pass

    with running_ftp(Handler, authorizer) as port:
        yield FtpServer(root, port)


# --------------------------------------------------------------------------- odd ports


@pytest.fixture
def tarpit() -> Iterator[int]:
    """A port that accepts connections (in the kernel) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port nobody listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
