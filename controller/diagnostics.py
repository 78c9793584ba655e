"""The daemon's log files and the bundles uploaded for GetDiagnostics and GetLog (R-FW 1, R-OPSYS 3).

Owns where logs go on disk (``<state>/logs/evsectl.log``, rotated, and the separate,
persistent security log ``<state>/logs/security.log``), the UTC ISO-8601 line format
that makes them filterable by time, and :func:`build_bundle`: a tar.gz with the log
lines of a time window, the settings with secrets removed, a state summary and the
versions of everything that matters.
"""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import platform
import re
import sys
import tarfile
import tempfile
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from .core.timefmt import parse_rfc3339

LOG_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
SECURITY_LOGGER = "evsectl.security"
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) ")
_SECRET_KEYS = re.compile(r"(?im)^(\s*\"?(?:AuthorizationKey|basic_auth_password|password)\"?\s*=\s*).*$")
_URL_PASSWORD = re.compile(r"(//[^/:@\s]+:)[^@/\s]+@")


def log_dir(state_dir: Path) -> Path:
    return state_dir / "logs"


_KEY_IN_FRAME = re.compile(r'(?i)("key"\s*:\s*"AuthorizationKey"\s*,\s*"value"\s*:\s*")[^"]*')


class RedactingFormatter(logging.Formatter):
    """Never writes a secret into a log (R-SEC 5): URL passwords (ftp://user:pass@host/...)
    and the AuthorizationKey of a ChangeConfiguration frame logged at DEBUG."""

    def format(self, record: logging.LogRecord) -> str:
        text = _URL_PASSWORD.sub(r"\1***@", super().format(record))
        return _KEY_IN_FRAME.sub(r"\1***", text)


def _formatter() -> logging.Formatter:
    f = RedactingFormatter(LOG_FORMAT, DATE_FORMAT)
    f.converter = time.gmtime
    return f


_attached: set[Path] = set()


class LogFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file that a full or read-only disk does not turn into a flood.

    The stock handler prints a traceback to stderr (the journal) for every record it
    cannot write: on a full state disk that is every record. This one says it once,
    drops the file's records while the disk refuses them (stderr/the journal still
    has them), and says when the file is written again.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failing = False
        self._failed = False

    def emit(self, record: logging.LogRecord) -> None:
        self._failed = False
        super().emit(record)
        if self.failing and not self._failed:
            self.failing = False
            sys.stderr.write(f"evsectl: log file {self.baseFilename} is written again\n")

    def handleError(self, record: logging.LogRecord) -> None:
        self._failed = True
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
            return
        if self.stream is not None:  # drop what the disk refused rather than pile it up
            try:
                self.stream.close()
            except OSError:
                pass
            self.stream = None  # type: ignore[assignment]
        if not self.failing:
            self.failing = True
            sys.stderr.write(f"evsectl: cannot write the log file {self.baseFilename} ({exc}); "
                             "its records are dropped until it can be written again\n")


def attach_file_logs(state_dir: Path) -> None:
    """Log to rotating files in the state directory besides stderr (the journal); once per directory."""
    directory = log_dir(state_dir)
    if directory.resolve() in _attached:
        return
    _attached.add(directory.resolve())
    directory.mkdir(parents=True, exist_ok=True, mode=0o750)
    main = LogFileHandler(directory / "evsectl.log", maxBytes=2_000_000, backupCount=5)
    main.setFormatter(_formatter())
    logging.getLogger().addHandler(main)
    security = LogFileHandler(directory / "security.log", maxBytes=1_000_000, backupCount=10)
    security.setFormatter(_formatter())
    sec_logger = logging.getLogger(SECURITY_LOGGER)
    sec_logger.addHandler(security)
    sec_logger.setLevel(logging.INFO)


def _files(directory: Path, stem: str) -> list[Path]:
    """The log file and its rotations, oldest first."""
    rotated = sorted(directory.glob(f"{stem}.log.*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    current = directory / f"{stem}.log"
    return [*rotated, *([current] if current.exists() else [])]


def lines_in_window(files: list[Path], start: datetime | None, stop: datetime | None) -> str:
    """Log lines whose timestamp is within [start, stop]; continuation lines follow their line."""
    out = io.StringIO()
    write_lines_in_window(files, start, stop, out)
    return out.getvalue()


def write_lines_in_window(files: list[Path], start: datetime | None, stop: datetime | None,
                          out: TextIO) -> None:
    """:func:`lines_in_window`, streamed: one line in memory at a time (a bundle's logs
    are up to 12 MB; reading them whole left the daemon's RSS tens of MB higher)."""
    keep = False
    for path in files:
        try:
            f = open(path, encoding="utf-8", errors="replace", newline="")  # noqa: SIM115 - with f below
        except OSError:
            continue
        with f:
            try:
                for line in f:
                    m = _STAMP.match(line)
                    if m:
                        try:
                            at = parse_rfc3339(m.group(1))
                        except ValueError:
                            at = None
                        keep = at is None or ((start is None or at >= start) and (stop is None or at <= stop))
                    if keep:
                        out.write(line)
            except OSError:
                continue


def redact_settings(text: str) -> str:
    """The settings file without secrets (R-SEC 5): passwords, AuthorizationKey, URL credentials."""
    return _URL_PASSWORD.sub(r"\1***@", _SECRET_KEYS.sub(r"\1\"***\"", text))


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("evsectl", "ocpp", "websockets", "jsonschema", "pymodbus", "pyscard", "gpiozero", "pygame"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _window(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def build_bundle(
    dest: Path, *, kind: str, state_dir: Path, settings_path: Path | None, summary: dict[str, Any],
    start: str | None, stop: str | None,
) -> Path:
    """Write the tar.gz for GetDiagnostics ("diagnostics"/"DiagnosticsLog") or GetLog "SecurityLog"."""
    directory = log_dir(state_dir)
    lo, hi = _window(start), _window(stop)
    logs = ["security"] if kind == "SecurityLog" else ["evsectl", "security"]
    members: dict[str, bytes] = {}
    if kind != "SecurityLog":
        if settings_path is not None:
            try:
                members["evsectl.toml"] = redact_settings(settings_path.read_text(errors="replace")).encode()
            except OSError:
                pass
        members["state.json"] = json.dumps(summary, indent=1, default=str).encode()
    members["versions.json"] = json.dumps(versions(), indent=1).encode()
    dest.parent.mkdir(parents=True, exist_ok=True)
    now = int(time.time())
    with tarfile.open(dest, "w:gz") as tar:
        for stem in logs:  # filtered into a temporary file beside the bundle, then streamed in
            with tempfile.TemporaryFile(dir=dest.parent) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                write_lines_in_window(_files(directory, stem), lo, hi, text)
                text.flush()
                info = tarfile.TarInfo(f"{stem}.log")
                info.size, info.mtime, info.mode = raw.seek(0, io.SEEK_END), now, 0o640
                raw.seek(0)
                tar.addfile(info, raw)
                text.detach()
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = now
            info.mode = 0o640
            tar.addfile(info, io.BytesIO(data))
    return dest
