"""The HMI's side of the controller socket: a thread that keeps a connection up.

Imports ``controller.ipc.messages`` and nothing else of the controller. Every
snapshot read goes into ``inbox`` (a ``queue.Queue`` the main loop reads once
per frame); when the controller is gone, an "out of service" snapshot goes in
and the thread retries every ``retry_s`` until it is back.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
from collections.abc import Callable

from controller.ipc import messages as m

log = logging.getLogger(__name__)


class Client:
    def __init__(self, path: str, *, retry_s: float = 1.0, notify: Callable[[], None] | None = None) -> None:
        self.path = path
        self.retry_s = retry_s
        self.inbox: queue.Queue[m.Snapshot] = queue.Queue()
        self._notify = notify or (lambda: None)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hmi-ipc", daemon=True)
        self.connected = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(timeout=2)

    def send(self, msg: m.Message) -> bool:
        """Send an intent; False when there is no controller (the touch is lost, harmlessly)."""
        with self._lock:
            sock = self._sock
            if sock is None:
                return False
            try:
                sock.sendall(m.encode(msg))
                return True
            except OSError:
                return False

    def _put(self, snap: m.Snapshot) -> None:
        self.inbox.put(snap)
        self._notify()

    def _run(self) -> None:
        lost = True
        while not self._stop.is_set():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                if lost:
                    self._put(m.out_of_service())
                    lost = False
                self._stop.wait(self.retry_s)
                continue
            with self._lock:
                self._sock = sock
            self.connected = True
            log.info("connected to the controller at %s", self.path)
            try:
                for line in sock.makefile("rb"):
                    try:
                        msg = m.decode(line)
                    except m.ProtocolError as e:
                        log.warning("controller sent a bad line: %s", e)
                        break
                    if isinstance(msg, m.Snapshot):
                        self._put(msg)
            except OSError:
                pass
            finally:
                with self._lock:
                    self._sock = None
                self.connected = False
                sock.close()
            log.warning("controller connection lost; retrying")
            self._put(m.out_of_service())
            lost = False
            self._stop.wait(self.retry_s)
