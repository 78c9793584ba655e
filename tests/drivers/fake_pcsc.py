"""Test doubles for the PC/SC backend: pcscd in its own network namespace and a
virtual contactless card speaking vpcd's socket protocol.

vpcd (Debian's ``vsmartcard-vpcd``, the virtual reader driver of pcscd) listens on
127.0.0.1:35963 (first reader) in server mode; a card is "inserted" by connecting
to it and "removed" by closing the connection. Frames both ways are a 2-byte
big-endian length then the payload. vpcd sends 1-byte control frames -- 0x00 power
off, 0x01 power on, 0x02 reset, 0x04 get ATR (answered with the ATR) -- and
command APDUs (answered with a response APDU). Our card answers GET DATA
``FF CA 00 00 00`` with the UID the test chose + ``90 00``, anything else with
``6D 00`` (instruction not supported). Debian's ``vicc`` cannot answer FF CA and
binds all interfaces: not used (see PLATFORM-NOTES). pcscd runs inside
``unshare --net`` so vpcd's listener is unreachable from outside; the card's
socket is opened from a thread that joined that namespace (setns is per thread).
One pcscd per machine (its socket is always /run/pcscd/pcscd.comm): root needed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

VPCD_PORT = 35963
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
VPCD_CONF = Path("/etc/reader.conf.d/vpcd")
# ATR of a contactless storage card as PC/SC part 3 readers synthesise it.
ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")
CLONE_NEWNET = 0x40000000


def why_unavailable() -> str | None:
    """None when pcscd with vpcd can run here, else the reason to skip."""
    if os.geteuid() != 0:
        return "pcscd with a virtual reader needs root (its socket is /run/pcscd)"
    for tool in ("pcscd", "unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not VPCD_CONF.exists():
        return "vsmartcard-vpcd is not installed (no /etc/reader.conf.d/vpcd)"
    try:
        import smartcard.scard  # noqa: F401
    except ImportError:
        return "pyscard is not installed"
    if _pcscd_running():
        return "another pcscd is running on this machine"
    return None


def _pcscd_running() -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        state = text[text.rfind(")") + 2 :][:1]
        if name == "pcscd" and state not in ("Z", "X"):
            return True
    return False


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


class Pcscd:
    """pcscd in the foreground, in a fresh network namespace with only lo up."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        # unshare and sh exec: the Popen pid is pcscd's, /proc/<pid>/ns/net its namespace
        self.proc = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "ip link set lo up && exec pcscd -f"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while not self._reader_present():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("pcscd did not come up with the vpcd reader")
            time.sleep(0.02)

    @property
    def netns(self) -> str:
        assert self.proc is not None
        return f"/proc/{self.proc.pid}/ns/net"

    @staticmethod
    def _reader_present() -> bool:
        from smartcard import scard

        if not PCSCD_SOCKET.exists():
            return False
        rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if rv != scard.SCARD_S_SUCCESS:
            return False
        try:
            rv, readers = scard.SCardListReaders(ctx, [])
            return rv == scard.SCARD_S_SUCCESS and bool(readers)
        finally:
            scard.SCardReleaseContext(ctx)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class VirtualCard:
    """A contactless card on vpcd's first reader; ``insert(uid)`` / ``remove()``."""

    def __init__(self, pcscd: Pcscd, port: int = VPCD_PORT) -> None:
        self.pcscd = pcscd
        self.port = port
        self.apdus: list[bytes] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.uid = b""

    def insert(self, uid: bytes | str, timeout_s: float = 5.0) -> None:
        self.remove()
        self.uid = bytes.fromhex(uid) if isinstance(uid, str) else uid
        box: dict[str, object] = {}

        def connect() -> None:  # a thread of its own: setns changes the calling thread only
            try:
                _setns(self.pcscd.netns)
                deadline = time.monotonic() + timeout_s
                while True:
                    try:
                        box["sock"] = socket.create_connection(("127.0.0.1", self.port), 1.0)
                        return
                    except OSError as exc:
                        if time.monotonic() > deadline:
                            box["error"] = exc
                            return
                        time.sleep(0.02)
            except OSError as exc:
                box["error"] = exc

        t = threading.Thread(target=connect, daemon=True)
        t.start()
        t.join(timeout_s + 1)
        if "sock" not in box:
            raise RuntimeError(f"virtual card: cannot reach vpcd: {box.get('error')}")
        sock = box["sock"]
        assert isinstance(sock, socket.socket)
        sock.settimeout(None)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
        self._thread.start()

    def remove(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None

    def _serve(self, sock: socket.socket) -> None:
        try:
            while True:
                head = _recv_exact(sock, 2)
                (length,) = struct.unpack(">H", head)
                data = _recv_exact(sock, length)
                reply = self._answer(data)
                if reply is not None:
                    sock.sendall(struct.pack(">H", len(reply)) + reply)
        except (OSError, EOFError):
            return

    def _answer(self, data: bytes) -> bytes | None:
        if len(data) == 1:  # control: 0 off, 1 on, 2 reset, 4 ATR
            return ATR if data[0] == 0x04 else None
        self.apdus.append(data)
        if data[:4] == b"\xff\xca\x00\x00":
            return self.uid + b"\x90\x00"
        return b"\x6d\x00"


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf
