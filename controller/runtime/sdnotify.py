"""systemd's readiness and watchdog protocol (sd_notify), written out: one datagram per state.

``notify("READY=1")`` sends to ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace) and does nothing without it, so the daemon runs the same with
or without systemd. :func:`watchdog` pings ``WATCHDOG=1`` every half of
``$WATCHDOG_USEC`` from the event loop itself: a blocked or dead loop stops the
pings and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)


def _address(value: str) -> str:
    return "\0" + value[1:] if value.startswith("@") else value


def notify(message: str, socket_path: str | None = None) -> bool:
    """Send one sd_notify message; False when there is no systemd to tell."""
    target = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(_address(target))
            s.sendall(message.encode())
        return True
    except OSError as e:
        log.warning("sd_notify %r failed: %s", message, e)
        return False


def watchdog_interval_s(environ: dict[str, str] | None = None) -> float | None:
    """Half the watchdog period systemd asked for, or None when it asked for none."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.01, int(usec) / 2_000_000)
    except ValueError:
        return None


async def watchdog(healthy: Callable[[], bool], interval_s: float) -> None:
    """Ping while ``healthy()``; the pings come from the loop, so a hung loop stops them."""
    while True:
        if healthy():
            notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)
