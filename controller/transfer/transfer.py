"""File transfers over FTP, HTTP and HTTPS (R-FW 1, R-DT 2/3).

One module for every file the charger fetches or sends: firmware
(UpdateFirmware), diagnostics and log bundles (GetDiagnostics, GetLog), the
tariff picture, the logo and the screensaver pictures (vendor DataTransfer).
Everything here is blocking and keeps no global state, so the daemon runs it in
a worker thread (``await asyncio.to_thread(download, ...)``). Protocols are the
standard library's: ``ftplib`` for FTP, ``urllib.request``/``http.client`` for
HTTP, ``ssl`` for TLS.

Decisions:

* **URLs.** ``ftp``, ``http`` and ``https`` only (``file:``, ``data:`` and
  anything else is ``bad_url``). Credentials may be in the URL
  (``ftp://user:pass@host:port/path``, percent-encoded); FTP without them logs in
  as ``anonymous``; HTTP(S) with them sends Basic authentication, never to
  the target of a redirect. An FTP path is relative to the login folder
  (RFC 1738; ``%2F`` at its start makes it absolute); a ``;type=i`` suffix is
  ignored (transfers are always binary). Error messages and log lines show the
  URL with its password replaced by ``***``; the password never appears.
* **FTP** is passive and binary. ``download`` asks ``SIZE`` first (to refuse a
  file over ``max_bytes`` before fetching it, and to tell a truncated
  transfer) and resumes a partial file with ``REST`` when the server accepts
  it (probed with ``REST <offset>``; a server that refuses gets a full
  transfer). No FTPS: the guide names FTP, HTTP and HTTPS.
* **HTTP(S)** ignores proxy variables (a charger talks to its CSMS's file
  server directly, and the result must not depend on the service's
  environment). Redirects are followed for downloads (at most 10, never from
  https to http, never to another scheme) and refused for uploads (a POST
  turned into a GET would "succeed" without uploading). HTTPS checks the
  server certificate against the system store plus ``ca_file`` (the installed
  CentralSystemRootCertificate) and the host name, with TLS 1.2 or later.
* **Uploads over HTTP(S)** are ``POST multipart/form-data`` with one field
  named ``file`` carrying the file under its own name: what the diagnostics
  endpoints of CSMSs commonly accept (a PUT of the raw body is not). Any 2xx
  answer is success. Over FTP: ``STOR``; a URL path ending in ``/`` names a
  folder, and the file is stored there under its own name.
* **Atomic result.** A download is written to ``<dest>.part`` (e.g.
  ``tariff.png.part``), fsynced and renamed onto ``dest`` only when complete;
  ``dest`` is never seen half-written. A small ``<dest>.part.meta`` beside it
  records the (password-less) URL and the HTTP validator, so a partial file is
  resumed only for the same URL, and over HTTP with ``If-Range`` so a changed
  file is fetched whole (``Range`` is sent; a 200 instead of a 206 restarts from
  zero). After a transient failure the part file is kept for the next attempt
  (or the next call); after any other failure it is removed.
* **Limits.** ``max_bytes`` is checked against the announced size
  (Content-Length, Content-Range, FTP SIZE) before the body is read and again
  while streaming; over the limit is ``too_large`` and nothing is left behind.
  ``timeout_s`` bounds each network operation (connect, each read or write),
  not the whole transfer: a large file on a slow link may take longer.
* **Retries.** ``1 + retries`` attempts with ``retry_interval_s`` between them,
  slept through the injected ``sleep``. Only transient failures are retried:
  refused or unreachable, timeout, connection lost, truncated body, HTTP 5xx,
  408, 425 and 429, FTP 4xx. Never bad_url, not_found, auth, tls, too_large,
  bad_path, io or another protocol error.
* **Progress** goes to this module's logger at INFO about every 10 % (every
  MiB when the size is unknown) and, at the same moments, to the optional
  ``progress(done, total)`` callback, called in the transferring thread
  (``total`` is None when unknown). An exception raised by the callback aborts
  the transfer and propagates unchanged.
"""

from __future__ import annotations

import base64
import ftplib
import http.client
import json
import logging
import mimetypes
import os
import posixpath
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from controller import __version__

log = logging.getLogger(__name__)

KINDS = frozenset(
    {"bad_url", "refused", "not_found", "auth", "timeout", "tls", "too_large", "bad_path",
     "protocol", "io"}
)
SCHEMES = ("ftp", "http", "https")
CHUNK = 64 * 1024
_UNKNOWN_SIZE_LOG_STEP = 1 << 20
_USER_AGENT = f"evsectl/{__version__}"

Progress = Callable[[int, "int | None"], None]


class TransferError(Exception):
    """A transfer failed. ``kind`` is one of :data:`KINDS`; ``message`` names the
    URL (without its password). ``transient`` tells whether a retry may help;
    ``attempts`` is how many attempts were made before giving up."""

    def __init__(self, kind: str, message: str, *, transient: bool = False) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown transfer error kind {kind!r}")
        super().__init__(kind, message)
        self.kind = kind
        self.message = message
        self.transient = transient
        self.attempts = 1
        self.status: int | None = None  # the HTTP status, when one caused the failure

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True)
class TransferResult:
    path: Path  # the file written (download) or sent (upload)
    size: int  # bytes in the file
    attempts: int  # attempts used, 1 + the retries that were needed


# --------------------------------------------------------------------------- names


def safe_name(name: str) -> str:
    """``name`` itself if it is a plain file name that stays in its folder;
    else ``TransferError("bad_path")`` (empty, ``.``, ``..``, a separator, an
    absolute path, NUL or another control character)."""
    if not isinstance(name, str) or name in ("", ".", ".."):
        raise TransferError("bad_path", f"{name!r} is not a file name")
    if "/" in name or "\\" in name:
        raise TransferError("bad_path", f"file name {name!r} contains a path separator")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise TransferError("bad_path", f"file name {name!r} contains a control character")
    return name


def safe_join(base: Path, name: str) -> Path:
    """``base / name`` for a ``name`` that cannot leave ``base`` (see :func:`safe_name`)."""
    return Path(base) / safe_name(name)


# --------------------------------------------------------------------------- URLs

_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_USERINFO = re.compile(r"^([^:/?#]*://)([^@/?#]*)@", re.S)


def _redact_raw(url: str) -> str:
    """Best effort for a URL that could not be parsed: hide what may be a password."""
    def hide(m: re.Match[str]) -> str:
        user = m.group(2).split(":", 1)[0]
        return f"{m.group(1)}{user}:***@" if ":" in m.group(2) else m.group(0)

    text = _USERINFO.sub(hide, url) if "@" in url else url
    return text if len(text) <= 200 else text[:200] + "…"


@dataclass(frozen=True)
class _Url:
    scheme: str
    host: str
    port: int | None
    user: str | None
    password: str | None
    path: str  # as in the URL, still percent-encoded
    query: str
    shown: str  # for messages: the URL with its password replaced by ***

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port is not None else host

    @property
    def http_url(self) -> str:
        """The URL as sent over HTTP: without user information or fragment."""
        return urllib.parse.urlunsplit(
            (self.scheme, self.hostport, self.path or "/", self.query, "")
        )

    @property
    def ftp_path(self) -> str:
        path = self.path[1:] if self.path.startswith("/") else self.path
        path = re.sub(r";type=[aid]$", "", path, flags=re.I)
        return urllib.parse.unquote(path)

    def scrub(self, text: str) -> str:
        if self.password:
            for secret in {self.password, urllib.parse.quote(self.password, safe="")}:
                text = text.replace(secret, "***")
        return text


def _parse_url(url: str, what: str, schemes: tuple[str, ...] = SCHEMES) -> _Url:
    if not isinstance(url, str) or not url:
        raise TransferError("bad_url", f"{what}: no URL given")
    if _CONTROL_OR_SPACE.search(url):
        raise TransferError(
            "bad_url", f"{what} {_redact_raw(url)!r}: the URL contains spaces or control characters"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise TransferError("bad_url", f"{what} {_redact_raw(url)!r}: malformed URL ({exc})") from None
    scheme = parts.scheme.lower()
    user = urllib.parse.unquote(parts.username) if parts.username is not None else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    userinfo = ""
    if parts.username is not None:
        userinfo = parts.username + (":***" if parts.password is not None else "") + "@"
    netloc = parts.netloc.rpartition("@")[2]
    shown = f"{scheme}://{userinfo}{netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")
    if scheme not in schemes:
        names = ", ".join(schemes)
        raise TransferError(
            "bad_url",
            f"{what} {shown if scheme else _redact_raw(url)}: unsupported URL scheme "
            f"{scheme or '(none)'!r} (supported: {names})",
        )
    if not host:
        raise TransferError("bad_url", f"{what} {shown}: the URL has no host")
    return _Url(scheme, host, port, user, password, parts.path, parts.query, shown)


# --------------------------------------------------------------------------- TLS


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """Client context: system trust store plus ``ca_file``, host name checked,
    TLS 1.2 or later. ``TransferError("tls")`` when ``ca_file`` cannot be loaded."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=os.fspath(ca_file))
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise TransferError("tls", f"cannot load the CA certificate {ca_file}: {exc}") from None
    return ctx


# --------------------------------------------------------------------------- errors


def _fail(kind: str, u: _Url, what: str, detail: str, *, transient: bool = False) -> TransferError:
    return TransferError(kind, u.scrub(f"{what} {u.shown}: {detail}"), transient=transient)


def _net_error(exc: BaseException, u: _Url, what: str, timeout_s: float, *,
               in_body: bool = False) -> TransferError:
    """Map a network exception (socket, ssl, http.client, EOF) to a TransferError."""
    if isinstance(exc, TransferError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or str(exc)
        return _fail("tls", u, what, f"the server certificate was rejected ({detail})")
    if isinstance(exc, TimeoutError):
        return _fail("timeout", u, what, f"no answer from {u.hostport} within {timeout_s:g} s",
                     transient=True)
    if isinstance(exc, ssl.SSLError):
        if in_body:
            return _fail("protocol", u, what, f"TLS connection lost ({exc})", transient=True)
        return _fail("tls", u, what, f"TLS handshake with {u.hostport} failed ({exc})")
    if isinstance(exc, ConnectionRefusedError):
        return _fail("refused", u, what, f"connection to {u.hostport} refused", transient=True)
    if isinstance(exc, socket.gaierror):
        return _fail("refused", u, what, f"cannot resolve {u.host} ({exc.strerror or exc})",
                     transient=True)
    if isinstance(exc, (ConnectionError, EOFError, http.client.IncompleteRead)):
        return _fail("protocol", u, what, f"connection to {u.hostport} lost ({exc or type(exc).__name__})",
                     transient=True)
    if isinstance(exc, http.client.HTTPException):
        return _fail("protocol", u, what, f"bad answer from {u.hostport} ({type(exc).__name__}: {exc})")
    if isinstance(exc, OSError):
        return _fail("refused", u, what, f"cannot reach {u.hostport} ({exc.strerror or exc})",
                     transient=True)
    return _fail("protocol", u, what, f"{type(exc).__name__}: {exc}")


def _http_status_error(code: int, reason: str, u: _Url, what: str) -> TransferError:
    detail = f"HTTP {code} {reason}".rstrip()
    if code in (401, 403, 407):
        return _fail("auth", u, what, f"access denied ({detail})")
    if code in (404, 410):
        return _fail("not_found", u, what, f"no such file ({detail})")
    if code >= 500 or code in (408, 425, 429):
        return _fail("protocol", u, what, f"server error ({detail})", transient=True)
    if 300 <= code < 400:
        return _fail("protocol", u, what, f"redirect not followed ({detail})")
    return _fail("protocol", u, what, f"unexpected answer ({detail})")


def _ftp_error(exc: BaseException, u: _Url, what: str, timeout_s: float, *,
               upload: bool = False) -> TransferError:
    if isinstance(exc, TransferError):
        return exc
    if isinstance(exc, ftplib.Error):
        reply = str(exc).strip()
        code = reply[:3]
        if isinstance(exc, ftplib.error_temp):
            return _fail("protocol", u, what, f"server busy or failing ({reply})", transient=True)
        if code in ("530", "532"):
            return _fail("auth", u, what, f"login refused ({reply})")
        if code == "550" and not upload:
            return _fail("not_found", u, what, f"no such file or folder ({reply})")
        if code == "553" and upload:
            return _fail("bad_path", u, what, f"file name refused by the server ({reply})")
        return _fail("protocol", u, what, f"refused by the server ({reply})")
    return _net_error(exc, u, what, timeout_s)


# --------------------------------------------------------------------------- progress


class _Progress:
    def __init__(self, label: str, total: int | None, callback: Progress | None) -> None:
        self.label = label
        self.total = total
        self.callback = callback
        self.mark: int | None = None
        self.reported = -1

    def update(self, done: int) -> None:
        mark = done * 10 // self.total if self.total else done // _UNKNOWN_SIZE_LOG_STEP
        if mark != self.mark:
            self.mark = mark
            self._report(done)

    def finish(self, done: int) -> None:
        if done != self.reported:
            self._report(done)

    def _report(self, done: int) -> None:
        self.reported = done
        if self.total:
            log.info("%s: %d%% (%d of %d bytes)", self.label, done * 100 // self.total, done,
                     self.total)
        else:
            log.info("%s: %d bytes", self.label, done)
        if self.callback is not None:
            self.callback(done, self.total)


# --------------------------------------------------------------------------- part file


class _Part:
    """``<dest>.part`` and its ``.meta`` (URL and HTTP validator) beside ``dest``."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.path = dest.with_suffix(dest.suffix + ".part")
        self.meta = self.path.with_name(self.path.name + ".meta")

    def resume_point(self, shown: str, max_bytes: int) -> tuple[int, str | None]:
        """Bytes already there for this URL, and the validator recorded with them."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return 0, None
        meta: dict[str, object] = {}
        try:
            meta = json.loads(self.meta.read_text(encoding="utf-8"))
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            meta = {"url": None}
        if ("url" in meta and meta["url"] != shown) or size > max_bytes:
            self.discard()
            return 0, None
        validator = meta.get("validator")
        return size, validator if isinstance(validator, str) else None

    def record(self, shown: str, validator: str | None) -> None:
        try:
            self.meta.write_text(json.dumps({"url": shown, "validator": validator}),
                                 encoding="utf-8")
        except OSError as exc:
            raise TransferError("io", f"cannot write {self.meta}: {exc.strerror or exc}") from None

    def open(self, offset: int) -> BinaryIO:
        try:
            if offset:
                f = open(self.path, "r+b")
                f.seek(offset)
                f.truncate()
                return f
            return open(self.path, "wb")
        except OSError as exc:
            raise TransferError("io", f"cannot write {self.path}: {exc.strerror or exc}") from None

    def commit(self, f: BinaryIO) -> None:
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(self.path, self.dest)
            _fsync_dir(self.dest.parent)
            self.meta.unlink(missing_ok=True)
        except OSError as exc:
            raise TransferError("io", f"cannot store {self.dest}: {exc.strerror or exc}") from None

    def discard(self) -> None:
        for p in (self.path, self.meta):
            try:
                p.unlink(missing_ok=True)
            except OSError:
                log.warning("cannot remove %s", p)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Sink:
    """Receives the body: enforces max_bytes, writes, reports progress."""

    def __init__(self, f: BinaryIO, path: Path, offset: int, max_bytes: int,
                 progress: _Progress, too_large: Callable[[int], TransferError]) -> None:
        self.f = f
        self.path = path
        self.done = offset
        self.max_bytes = max_bytes
        self.progress = progress
        self.too_large = too_large

    def write(self, chunk: bytes) -> None:
        if self.done + len(chunk) > self.max_bytes:
            raise self.too_large(self.done + len(chunk))
        try:
            self.f.write(chunk)
        except OSError as exc:
            raise TransferError("io", f"cannot write {self.path}: {exc.strerror or exc}") from None
        self.done += len(chunk)
        self.progress.update(self.done)


def _too_large(u: _Url, max_bytes: int, announced: bool) -> Callable[[int], TransferError]:
    def make(size: int) -> TransferError:
        if announced:
            return _fail("too_large", u, "download of",
                         f"the file has {size} bytes, more than the limit of {max_bytes}")
        return _fail("too_large", u, "download of",
                     f"more than the limit of {max_bytes} bytes received; transfer stopped")
    return make


# --------------------------------------------------------------------------- HTTP


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    def __init__(self, follow: bool) -> None:
        self.follow = follow

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        new_scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if not self.follow or new_scheme not in ("http", "https"):
            return None  # the default error handler then raises HTTPError(code)
        if req.type == "https" and new_scheme != "https":
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(ca_file: Path | None, *, follow_redirects: bool) -> urllib.request.OpenerDirector:
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(context=tls_context(ca_file)),
        _RedirectHandler(follow_redirects),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.UnknownHandler(),
    ):
        opener.add_handler(handler)
    return opener


def _http_request(u: _Url, method: str, headers: dict[str, str],
                  data: Iterator[bytes] | None = None) -> urllib.request.Request:
    req = urllib.request.Request(u.http_url, data=data, method=method,
                                 headers={"User-Agent": _USER_AGENT, **headers})
    if u.user is not None:
        token = base64.b64encode(f"{u.user}:{u.password or ''}".encode()).decode("ascii")
        req.add_unredirected_header("Authorization", f"Basic {token}")
    return req


def _http_open(opener: urllib.request.OpenerDirector, req: urllib.request.Request, u: _Url,
               what: str, timeout_s: float) -> http.client.HTTPResponse:
    try:
        return opener.open(req, timeout=timeout_s)
    except TransferError:
        raise
    except urllib.error.HTTPError as exc:
        exc.close()
        err = _http_status_error(exc.code, str(exc.reason or ""), u, what)
        err.status = exc.code
        raise err from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, BaseException):
            raise _net_error(exc.reason, u, what, timeout_s) from None
        raise _fail("protocol", u, what, str(exc.reason)) from None
    except (OSError, EOFError, http.client.HTTPException) as exc:
        raise _net_error(exc, u, what, timeout_s) from None


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.I)


def _http_download(u: _Url, part: _Part, *, max_bytes: int, timeout_s: float,
                   ca_file: Path | None, progress: Progress | None) -> int:
    what = "download of"
    offset, validator = part.resume_point(u.shown, max_bytes)
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    opener = _opener(ca_file, follow_redirects=True)
    try:
        resp = _http_open(opener, _http_request(u, "GET", headers), u, what, timeout_s)
    except TransferError as exc:
        if offset and exc.status == 416:  # the part is not a prefix: start over
            part.discard()
            return _http_download(u, part, max_bytes=max_bytes, timeout_s=timeout_s,
                                  ca_file=ca_file, progress=progress)
        raise
    with resp:
        length_header = resp.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if offset and resp.status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                part.discard()
                raise _fail("protocol", u, what,
                            f"asked for bytes from {offset}, the server answered "
                            f"{resp.headers.get('Content-Range')!r}; restarting", transient=True)
            total = int(m.group(3)) if m.group(3) != "*" else (
                offset + length if length is not None else None)
            log.info("%s %s: resuming at byte %d", what, u.shown, offset)
        else:
            offset = 0
            total = length
        if total is not None and total > max_bytes:
            raise _too_large(u, max_bytes, True)(total)
        etag = resp.headers.get("ETag")
        strong = etag if etag and not etag.startswith("W/") else None
        part.record(u.shown, strong or resp.headers.get("Last-Modified"))
        f = part.open(offset)
        try:
            sink = _Sink(f, part.path, offset, max_bytes,
                         _Progress(f"{what} {u.shown}", total, progress),
                         _too_large(u, max_bytes, False))
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, EOFError, http.client.HTTPException) as exc:
                    raise _net_error(exc, u, what, timeout_s, in_body=True) from None
                if not chunk:
                    break
                sink.write(chunk)
            if total is not None and sink.done < total:
                raise _fail("protocol", u, what,
                            f"connection closed after {sink.done} of {total} bytes", transient=True)
            sink.progress.finish(sink.done)
            part.commit(f)
            return sink.done
        finally:
            f.close()


def _multipart(src: Path, size: int, boundary: str, progress: _Progress) -> tuple[
        int, Callable[[], Iterator[bytes]]]:
    name = re.sub(r"[\r\n\"\\]", "_", src.name)
    ctype = mimetypes.guess_type(src.name)[0] or "application/octet-stream"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: {ctype}\r\n\r\n"
    ).encode("utf-8")
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")

    def body() -> Iterator[bytes]:
        yield head
        sent = 0
        try:
            with open(src, "rb") as f:
                while sent < size:
                    chunk = f.read(min(CHUNK, size - sent))
                    if not chunk:
                        raise TransferError("io", f"{src} shrank while being uploaded")
                    sent += len(chunk)
                    yield chunk
                    progress.update(sent)
        except OSError as exc:
            raise TransferError("io", f"cannot read {src}: {exc.strerror or exc}") from None
        yield tail

    return len(head) + size + len(tail), body


def _http_upload(u: _Url, src: Path, size: int, *, timeout_s: float, ca_file: Path | None,
                 progress: Progress | None) -> int:
    what = "upload to"
    prog = _Progress(f"{what} {u.shown}", size, progress)
    boundary = f"evsectl-{uuid.uuid4().hex}"
    length, body = _multipart(src, size, boundary, prog)
    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(length),
    }
    opener = _opener(ca_file, follow_redirects=False)
    resp = _http_open(opener, _http_request(u, "POST", headers, body()), u, what, timeout_s)
    with resp:
        try:
            resp.read(1 << 16)
        except (OSError, EOFError, http.client.HTTPException):
            pass  # the status is what counts
    prog.finish(size)
    return size


# --------------------------------------------------------------------------- FTP


def _ftp_connect(u: _Url, what: str, timeout_s: float, *, upload: bool = False) -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=timeout_s)
    try:
        ftp.connect(u.host, u.port or ftplib.FTP_PORT)
        ftp.login(u.user or "", u.password or "")  # "" is anonymous
        ftp.set_pasv(True)
        ftp.voidcmd("TYPE I")
    except BaseException as exc:
        ftp.close()
        if isinstance(exc, (ftplib.all_errors)):
            raise _ftp_error(exc, u, what, timeout_s, upload=upload) from None
        raise
    return ftp


def _ftp_close(ftp: ftplib.FTP) -> None:
    try:
        ftp.quit()
    except (*ftplib.all_errors, OSError):
        pass
    finally:
        ftp.close()


def _ftp_size(ftp: ftplib.FTP, path: str) -> int | None:
    try:
        return ftp.size(path)
    except (ftplib.error_perm, ftplib.error_temp, ftplib.error_reply, ValueError):
        return None  # SIZE not supported (or no such file: RETR will say)


def _ftp_rest_supported(ftp: ftplib.FTP, offset: int) -> bool:
    try:
        ftp.sendcmd(f"REST {offset}")
        return True
    except (ftplib.error_perm, ftplib.error_temp, ftplib.error_reply):
        return False


def _ftp_download(u: _Url, part: _Part, *, max_bytes: int, timeout_s: float,
                  progress: Progress | None) -> int:
    what = "download of"
    path = u.ftp_path
    ftp = _ftp_connect(u, what, timeout_s)
    try:
        total = _ftp_size(ftp, path)
        if total is not None and total > max_bytes:
            raise _too_large(u, max_bytes, True)(total)
        offset, _ = part.resume_point(u.shown, max_bytes)
        if offset and total is not None and offset > total:
            part.discard()
            offset = 0
        if offset and not _ftp_rest_supported(ftp, offset):
            log.info("%s %s: the server cannot resume, fetching the whole file", what, u.shown)
            offset = 0
        elif offset:
            log.info("%s %s: resuming at byte %d", what, u.shown, offset)
        part.record(u.shown, None)
        f = part.open(offset)
        try:
            sink = _Sink(f, part.path, offset, max_bytes,
                         _Progress(f"{what} {u.shown}", total, progress),
                         _too_large(u, max_bytes, False))
            if total is None or offset < total:
                ftp.retrbinary(f"RETR {path}", sink.write, blocksize=CHUNK, rest=offset or None)
            if total is not None and sink.done != total:
                raise _fail("protocol", u, what,
                            f"received {sink.done} of {total} bytes", transient=True)
            sink.progress.finish(sink.done)
            part.commit(f)
        finally:
            f.close()
        _ftp_close(ftp)
        return sink.done
    except TransferError:
        ftp.close()
        raise
    except BaseException as exc:
        ftp.close()
        if isinstance(exc, ftplib.all_errors):
            raise _ftp_error(exc, u, what, timeout_s) from None
        raise


def _ftp_upload(u: _Url, src: Path, size: int, *, timeout_s: float,
                progress: Progress | None) -> int:
    what = "upload to"
    target = u.ftp_path
    if target == "" or target.endswith("/"):
        target += safe_name(src.name)
    prog = _Progress(f"{what} {u.shown}", size, progress)
    try:
        f = open(src, "rb")
    except OSError as exc:
        raise TransferError("io", f"cannot read {src}: {exc.strerror or exc}") from None
    with f:
        sent = 0

        def sent_block(block: bytes) -> None:
            nonlocal sent
            sent += len(block)
            prog.update(sent)

        ftp = _ftp_connect(u, what, timeout_s, upload=True)
        try:
            ftp.storbinary(f"STOR {target}", f, blocksize=CHUNK, callback=sent_block)
        except BaseException as exc:
            ftp.close()
            if isinstance(exc, ftplib.all_errors):
                raise _ftp_error(exc, u, what, timeout_s, upload=True) from None
            raise
        _ftp_close(ftp)
    prog.finish(sent)
    return sent


# --------------------------------------------------------------------------- public API


def _check(timeout_s: float, retries: int, retry_interval_s: float) -> None:
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, not {timeout_s!r}")
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, not {retries!r}")
    if not retry_interval_s >= 0:
        raise ValueError(f"retry_interval_s must be >= 0, not {retry_interval_s!r}")


def _retrying(fn: Callable[[], int], retries: int, retry_interval_s: float,
              sleep: Callable[[float], None]) -> tuple[int, int]:
    attempts = 1 + retries
    for attempt in range(1, attempts + 1):
        try:
            return fn(), attempt
        except TransferError as exc:
            exc.attempts = attempt
            if not exc.transient or attempt == attempts:
                raise
            log.warning("%s (attempt %d of %d); retrying in %g s", exc, attempt, attempts,
                        retry_interval_s)
            sleep(retry_interval_s)
    raise AssertionError("unreachable")


def download(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    timeout_s: float = 30.0,
    retries: int = 0,
    retry_interval_s: float = 0.0,
    ca_file: Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress: Progress | None = None,
) -> TransferResult:
    """Fetch ``url`` (ftp, http, https) into ``dest`` atomically; see the module
    docstring. Raises :class:`TransferError`."""
    _check(timeout_s, retries, retry_interval_s)
    if not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive int, not {max_bytes!r}")
    what = "download of"
    u = _parse_url(url, what)
    if u.scheme == "ftp" and (not u.ftp_path or u.ftp_path.endswith("/")):
        raise _fail("bad_url", u, what, "the URL names a folder, not a file")
    dest = Path(dest)
    part = _Part(dest)

    def attempt() -> int:
        if u.scheme == "ftp":
            return _ftp_download(u, part, max_bytes=max_bytes, timeout_s=timeout_s,
                                 progress=progress)
        return _http_download(u, part, max_bytes=max_bytes, timeout_s=timeout_s,
                              ca_file=ca_file, progress=progress)

    log.info("%s %s to %s started", what, u.shown, dest)
    try:
        size, attempts = _retrying(attempt, retries, retry_interval_s, sleep)
    except TransferError as exc:
        if not exc.transient:
            part.discard()
        log.warning("%s failed after %d attempt(s): %s", what, exc.attempts, exc)
        raise
    log.info("%s %s complete: %d bytes in %s (%d attempt(s))", what, u.shown, size, dest,
             attempts)
    return TransferResult(dest, size, attempts)


def upload(
    url: str,
    src: Path,
    *,
    timeout_s: float = 30.0,
    retries: int = 0,
    retry_interval_s: float = 0.0,
    ca_file: Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress: Progress | None = None,
) -> TransferResult:
    """Send ``src`` to ``url``: FTP ``STOR`` (into the folder, under the file's
    own name, when the path ends with ``/``), HTTP(S) ``POST`` multipart/form-data
    with field ``file``. Raises :class:`TransferError`."""
    _check(timeout_s, retries, retry_interval_s)
    what = "upload to"
    u = _parse_url(url, what)
    src = Path(src)
    try:
        size = src.stat().st_size
    except OSError as exc:
        raise TransferError("io", f"cannot read {src}: {exc.strerror or exc}") from None
    if u.scheme == "ftp" and (u.ftp_path == "" or u.ftp_path.endswith("/")):
        safe_name(src.name)

    def attempt() -> int:
        if u.scheme == "ftp":
            return _ftp_upload(u, src, size, timeout_s=timeout_s, progress=progress)
        return _http_upload(u, src, size, timeout_s=timeout_s, ca_file=ca_file,
                            progress=progress)

    log.info("%s %s of %s (%d bytes) started", what, u.shown, src, size)
    try:
        sent, attempts = _retrying(attempt, retries, retry_interval_s, sleep)
    except TransferError as exc:
        log.warning("%s failed after %d attempt(s): %s", what, exc.attempts, exc)
        raise
    log.info("%s %s complete: %d bytes (%d attempt(s))", what, u.shown, sent, attempts)
    return TransferResult(src, sent, attempts)


def list_ftp_dir(url: str, *, timeout_s: float = 30.0, ca_file: Path | None = None) -> list[str]:
    """Names of the files (not folders) in the FTP folder ``url``, sorted.
    Uses MLSD, or NLST on servers without it (which may then list subfolders
    too). The names are the server's: pass them through :func:`safe_join`
    before storing anything under them. ``ca_file`` is accepted for the same
    call shape as the other functions; plain FTP has no certificate."""
    _check(timeout_s, 0, 0.0)
    what = "listing of"
    u = _parse_url(url, what, ("ftp",))
    path = u.ftp_path
    ftp = _ftp_connect(u, what, timeout_s)
    try:
        try:
            names = [name for name, facts in ftp.mlsd(path, facts=["type"])
                     if facts.get("type", "file").lower() == "file"]
        except ftplib.error_perm as exc:
            if str(exc)[:3] not in ("500", "501", "502", "504"):
                raise
            names = [posixpath.basename(n.rstrip("/")) for n in ftp.nlst(*([path] if path else []))]
    except BaseException as exc:
        ftp.close()
        if isinstance(exc, ftplib.all_errors):
            raise _ftp_error(exc, u, what, timeout_s) from None
        raise
    _ftp_close(ftp)
    return sorted({n for n in names if n not in ("", ".", "..")})
