"""Structured logging to the systemd journal over its native socket (R-OPSYS 3).

Each record becomes one datagram of ``FIELD=value`` lines (the journal's native
protocol; a value with a newline uses the length-prefixed binary form): MESSAGE,
PRIORITY (syslog level), SYSLOG_IDENTIFIER, CODE_FILE/LINE/FUNC, LOGGER, and the
OCPP fields a call site passes as ``extra``: ``connector`` → CONNECTOR,
``transaction_id`` → TRANSACTION_ID, ``ocpp_message_id`` → OCPP_MESSAGE_ID,
``ocpp_action`` → OCPP_ACTION. ``journalctl -u evsectl CONNECTOR=1`` then finds a
connector's story.
"""

from __future__ import annotations

import logging
import os
import socket
import struct

JOURNAL_SOCKET = "/run/systemd/journal/socket"
EXTRA_FIELDS = {
    "connector": "CONNECTOR",
    "transaction_id": "TRANSACTION_ID",
    "ocpp_message_id": "OCPP_MESSAGE_ID",
    "ocpp_action": "OCPP_ACTION",
}
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def encode(fields: dict[str, object]) -> bytes:
    """The journal's native wire format for one entry."""
    out = bytearray()
    for key, value in fields.items():
        data = str(value).encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def under_journal() -> bool:
    """True when stderr goes to the journal (systemd sets JOURNAL_STREAM)."""
    return bool(os.environ.get("JOURNAL_STREAM")) and os.path.exists(JOURNAL_SOCKET)


class JournalHandler(logging.Handler):
    def __init__(self, socket_path: str = JOURNAL_SOCKET, identifier: str = "evsectl") -> None:
        super().__init__()
        self.socket_path = socket_path
        self.identifier = identifier
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def fields(self, record: logging.LogRecord) -> dict[str, object]:
        fields: dict[str, object] = {
            "MESSAGE": self.format(record),
            "PRIORITY": _PRIORITY.get(record.levelno, 6),
            "SYSLOG_IDENTIFIER": self.identifier,
            "LOGGER": record.name,
            "CODE_FILE": record.pathname,
            "CODE_LINE": record.lineno,
            "CODE_FUNC": record.funcName,
        }
        for attr, field in EXTRA_FIELDS.items():
            value = getattr(record, attr, None)
            if value is not None:
                fields[field] = value
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._sock.sendto(encode(self.fields(record)), self.socket_path)
        except OSError:
            self.handleError(record)

    def close(self) -> None:
        self._sock.close()
        super().close()
