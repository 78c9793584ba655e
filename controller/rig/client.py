"""The client side of the control socket, used by ``evsectl sim`` and ``evsectl status``."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from . import protocol


class NotRunningError(Exception):
    pass


class RigCommandError(Exception):
    pass


def request(path: Path, message: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """Send one command and return the answer; raise if the daemon is not there or refuses."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as e:
        sock.close()
        raise NotRunningError(f"the evsectl daemon is not running (no control socket at {path}: {e.strerror})") from None
    with sock, sock.makefile("rb") as reader:
        sock.sendall(protocol.encode(message))
        line = reader.readline()
    if not line:
        raise NotRunningError(f"the evsectl daemon closed the control socket {path}")
    answer = protocol.decode(line)
    if not answer.get("ok"):
        raise RigCommandError(answer.get("error", "refused"))
    return answer
