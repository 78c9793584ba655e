"""The installer's settings: one TOML file, validated once at the edge.

Owns the file's schema (``[station]``, ``[ocpp]``, ``[ocpp.keys]``,
``[ocpp.vendor_ids]``, ``[drivers]``, ``[drivers.options.<kind>]``, ``[rig]``,
``[log]``, ``[queue]``), its defaults, and errors that name the bad key and its line.
Where the file lives: ``--config``, else ``EVSECTL_CONFIG``, else
``/etc/evsectl/evsectl.toml``.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.keys import KeyConfigError
from .core.models import ModelProfile, UnknownModelError, find_model
from .core.outbox import MAX_QUEUED_MESSAGES

DEFAULT_CONFIG = Path("/etc/evsectl/evsectl.toml")
DEFAULT_STATE_DIR = Path("/var/lib/evsectl")
DRIVER_KINDS = ("meter", "rfid", "power", "platform")


def default_runtime_dir() -> Path:
    """systemd's RuntimeDirectory, else /run/evsectl (root) or $XDG_RUNTIME_DIR/evsectl."""
    if os.environ.get("RUNTIME_DIRECTORY"):
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0])
    if os.geteuid() == 0:
        return Path("/run/evsectl")
    return Path(os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/evsectl-{os.getuid()}") / "evsectl"


class ConfigError(Exception):
    """A bad settings file; the message names the file, the key and the line."""

    def __init__(self, path: Path | str, message: str, key: str | None = None, line: int | None = None):
        self.path, self.key, self.line = str(path), key, line
        where = self.path + (f":{line}" if line else "")
        what = f"{key}: " if key else ""
        super().__init__(f"{where}: {what}{message}")


@dataclass(frozen=True)
class Settings:
    path: Path
    model: ModelProfile
    serial_number: str
    state_dir: Path
    supervision_url: str
    box_identifier: str
    keys: dict[str, Any]
    vendor_ids: dict[str, str]
    drivers: dict[str, str]
    driver_options: dict[str, dict[str, Any]]
    control_socket: Path
    log_level: str = "INFO"
    response_timeout_s: float = 30.0
    reconnect_max_s: float = 60.0
    sim_clock: bool = False
    firmware_trial_s: float = 300.0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    hmi_socket: Path = Path("/run/evsectl/hmi.sock")  # [hmi] socket: next to the control socket
    hmi_idle_s: float = 120.0  # [hmi] idle_s: screensaver after this long without activity
    picture_deadline_s: float = 8.0  # [hmi] download_deadline_s: bound of a picture DataTransfer
    max_queued_messages: int = MAX_QUEUED_MESSAGES  # [queue] max_messages: the on-disk queue bound


def config_path(cli_value: str | None) -> Path:
    if cli_value:
        return Path(cli_value)
    env = os.environ.get("EVSECTL_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG


def _sections(text: str) -> list[tuple[int, str, str]]:
    """(line number, table, stripped line) for every line, with the table it is in."""
    current, out = "", []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        m = re.match(r"^\[\s*([^\[\]]+?)\s*\]$", line)
        if m:
            current = m.group(1).replace(" ", "").replace('"', "")
        out.append((number, current, line))
    return out


def _line_of(text: str, table: str, key: str | None) -> int | None:
    """Line number of ``key`` inside ``[table]`` (also written inline or dotted in the
    parent table), else of the table header."""
    lines = _sections(text)
    header = next((n for n, t, line in lines if t == table and line.startswith("[")), None)
    if key is None:
        return header
    word = re.escape(key)
    for n, t, line in lines:
        if t == table and re.match(rf'^"?{word}"?\s*=', line):
            return n
    if "." in table:  # `keys = { X = 1 }` or `keys.X = 1` in [ocpp]
        parent, _, child = table.rpartition(".")
        for n, t, line in lines:
            if t == parent and re.match(rf'^"?{re.escape(child)}"?\s*[.=]', line) and re.search(
                rf'\b{word}"?\s*=', line
            ):
                return n
    return header


_KNOWN = {
    "station": {"model", "serial_number", "state_dir", "firmware_version"},
    "ocpp": {"supervision_url", "box_identifier", "keys", "vendor_ids", "response_timeout_s", "reconnect_max_s"},
    "drivers": {*DRIVER_KINDS, "options"},
    "rig": {"control_socket", "sim_clock"},
    "log": {"level"},
    "firmware": {"trial_s"},
    "hmi": {"socket", "idle_s", "download_deadline_s"},
    "queue": {"max_messages"},
}


def load(path: Path) -> Settings:
    """Read and validate the settings file; raise ConfigError on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "file not found (use --config FILE or EVSECTL_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, f"cannot read: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ConfigError(path, f"not valid TOML: {e}", line=int(m.group(1)) if m else None) from None
    return parse(data, text, path)


def parse(data: dict[str, Any], text: str, path: Path) -> Settings:
    def fail(table: str, key: str | None, message: str) -> ConfigError:
        name = f"{table}.{key}" if key else table
        return ConfigError(path, message, key=name, line=_line_of(text, table, key))

    for table, value in data.items():
        if table not in _KNOWN:
            raise fail(table, None, f"unknown table [{table}]; known: {', '.join(sorted(_KNOWN))}")
        if not isinstance(value, dict):
            raise fail(table, None, "must be a table")
        for key in value:
            if key not in _KNOWN[table]:
                raise fail(table, key, f"unknown key; known in [{table}]: {', '.join(sorted(_KNOWN[table]))}")

    def get(table: str, key: str, kind: type, default: Any = ...) -> Any:
        value = data.get(table, {}).get(key, default)
        if value is ...:
            raise fail(table, key, "is required")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise fail(table, key, f"must be a {kind.__name__}, not {type(value).__name__}")
        return value

    model_name = get("station", "model", str)
    try:
        model = find_model(model_name)
    except UnknownModelError as e:
        raise fail("station", "model", str(e)) from None
    serial = get("station", "serial_number", str)
    if not 0 < len(serial) <= 25:
        raise fail("station", "serial_number", "must be 1..25 characters (OCPP chargePointSerialNumber)")
    state_dir = Path(get("station", "state_dir", str, str(DEFAULT_STATE_DIR)))
    url = get("ocpp", "supervision_url", str)
    if not re.match(r"^wss?://[^/\s]+", url):
        raise fail("ocpp", "supervision_url", f"must be a ws:// or wss:// URL, got {url!r}")
    box = get("ocpp", "box_identifier", str)
    if not box or "/" in box or len(box) > 50:
        raise fail("ocpp", "box_identifier", "must be 1..50 characters without '/'")
    timeout = get("ocpp", "response_timeout_s", (int, float), 30.0)  # type: ignore[arg-type]
    if not 1 <= timeout <= 300:
        raise fail("ocpp", "response_timeout_s", "must be 1..300 seconds")
    reconnect_max = get("ocpp", "reconnect_max_s", (int, float), 60.0)  # type: ignore[arg-type]
    if not 1 <= reconnect_max <= 3600:
        raise fail("ocpp", "reconnect_max_s", "must be 1..3600 seconds")
    keys = dict(get("ocpp", "keys", dict, {}))
    vendor_ids = get("ocpp", "vendor_ids", dict, {})
    for k, v in vendor_ids.items():
        if k not in ("cost", "tariff", "image") or not isinstance(v, str) or not v:
            raise fail("ocpp.vendor_ids", k, "known names are cost, tariff, image (non-empty strings)")
    drivers = {kind: get("drivers", kind, str, "mock") for kind in DRIVER_KINDS}
    options = get("drivers", "options", dict, {})
    for kind, opts in options.items():
        if kind not in DRIVER_KINDS or not isinstance(opts, dict):
            raise fail("drivers.options", kind, f"must be a table named after a driver kind {DRIVER_KINDS}")
    socket_path = Path(get("rig", "control_socket", str, str(default_runtime_dir() / "control.sock")))
    sim_clock = get("rig", "sim_clock", bool, False)
    trial_s = get("firmware", "trial_s", (int, float), 300)  # type: ignore[arg-type]
    if not 10 <= trial_s <= 3600:
        raise fail("firmware", "trial_s", "must be 10..3600 seconds")
    hmi_socket = Path(get("hmi", "socket", str, str(socket_path.parent / "hmi.sock")))
    hmi_idle_s = get("hmi", "idle_s", (int, float), 120)  # type: ignore[arg-type]
    if not 5 <= hmi_idle_s <= 86400:
        raise fail("hmi", "idle_s", "must be 5..86400 seconds")
    picture_deadline_s = get("hmi", "download_deadline_s", (int, float), 8)  # type: ignore[arg-type]
    if not 1 <= picture_deadline_s <= 25:
        raise fail("hmi", "download_deadline_s", "must be 1..25 seconds (inside the CSMS call time-out)")
    max_queued = get("queue", "max_messages", int, MAX_QUEUED_MESSAGES)
    if not 100 <= max_queued <= 10_000_000:
        raise fail("queue", "max_messages", "must be 100..10000000 messages")
    level = get("log", "level", str, "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise fail("log", "level", "must be DEBUG, INFO, WARNING or ERROR")
    settings = Settings(
        path=path, model=model, serial_number=serial, state_dir=state_dir, supervision_url=url,
        box_identifier=box, keys=keys, vendor_ids=dict(vendor_ids), drivers=drivers,
        driver_options={k: dict(v) for k, v in options.items()}, control_socket=socket_path,
        log_level=level, response_timeout_s=float(timeout), reconnect_max_s=float(reconnect_max), sim_clock=sim_clock, firmware_trial_s=float(trial_s), raw=data,
        hmi_socket=hmi_socket, hmi_idle_s=float(hmi_idle_s), picture_deadline_s=float(picture_deadline_s),
        max_queued_messages=max_queued,
    )
    _check_keys(settings, text, fail)
    return settings


def _check_keys(settings: Settings, text: str, fail: Any) -> None:
    """Seed a throw-away key store so a bad ``[ocpp.keys]`` value fails at load time."""
    from .core.keys import KeyStore

    try:
        KeyStore(settings.model.key_values(), seeds=seed_values(settings))
    except KeyConfigError as e:
        raise fail("ocpp.keys", e.key, str(e)) from None


def seed_values(settings: Settings) -> dict[str, Any]:
    """Initial OCPP key values: [ocpp] URL/identifier plus the [ocpp.keys] table."""
    return {"SupervisionUrl": settings.supervision_url, "BoxIdentifier": settings.box_identifier, **settings.keys}
