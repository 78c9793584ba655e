#!/usr/bin/python3
"""First boot (and every boot) of the rig's SD card: installed as /usr/lib/evsectl/evsectl-firstboot.

Run by ``evsectl-firstboot.service`` before ``evsectl.service`` on every boot;
every step does nothing when its work is already done:

1. the service users ``evsectl`` / ``evsectl-hmi`` (and the ``gpio`` group) exist
   (the image has them; a card whose /etc was restored from elsewhere may not);
2. the charger's serial number: ``/etc/evsectl/serial-number``, made once from
   the Pi's own serial number (device tree) or at random, and written into
   ``[station] serial_number`` of a settings file that has none;
3. settings from the FAT boot partition: when the technician put
   ``/boot/firmware/evsectl.toml`` there (editable on any laptop) and it differs
   from ``/etc/evsectl/evsectl.toml``, it is checked by the release's own Python
   (``controller.config.load``, what ``evsectl run`` does) and installed only if
   good; the previous file is kept as ``evsectl.toml.prev``. A bad file is
   logged with its key and line, the previous good file stays, and
   ``<state>/config-error.json`` says what was wrong (for the screen); it is
   removed once a good file is installed;
4. ``/boot/firmware/ssh_authorized_keys``, if present, is added to root's keys.

``--ssh-keys`` instead generates the SSH host keys if there are none (its own
unit, ``evsectl-ssh-keys.service``, before ``ssh.service``, so the charger does
not wait for key generation).

``--root DIR`` runs everything against a tree (tests, or a card mounted on a
laptop); ``--python PY`` is the interpreter that validates settings (default:
the release in force, ``<state>/current/venv/bin/python``, else
``/opt/evsectl/venv/bin/python``). ``--check FILE`` only validates a file
(a missing serial number is allowed: first boot sets it) and exits 1 if bad.

Standard library only: it runs on the image's /usr/bin/python3. Messages go to
stderr with sd-daemon priority prefixes (``<3>`` error …), which the journal keeps.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

CONFIG = "etc/evsectl/evsectl.toml"
SERIAL_FILE = "etc/evsectl/serial-number"
BOOT_CONFIG = "boot/firmware/evsectl.toml"
BOOT_KEYS = "boot/firmware/ssh_authorized_keys"
STATE = "var/lib/evsectl"
ERROR_FILE = "config-error.json"
PYTHONS = ("var/lib/evsectl/current/venv/bin/python", "opt/evsectl/venv/bin/python")
PI_SERIALS = ("sys/firmware/devicetree/base/serial-number", "proc/device-tree/serial-number")
SERIAL_PREFIX = "EVR-"
USERS = (  # name, useradd arguments
    ("evsectl", ["--home-dir", "/var/lib/evsectl", "--groups", "dialout,gpio"]),
    ("evsectl-hmi", ["--home-dir", "/nonexistent", "--groups", "video,input,render,evsectl"]),
)

# run by the release's Python: prints one JSON object
CHECK = r"""
import json, sys
from pathlib import Path
try:
    from controller.config import ConfigError, load
except Exception as e:
    print(json.dumps({"ok": False, "key": None, "line": None, "message": f"cannot import the release: {e}"}))
    raise SystemExit(0)
try:
    load(Path(sys.argv[1]))
except ConfigError as e:
    print(json.dumps({"ok": False, "key": e.key, "line": e.line, "message": str(e)}))
else:
    print(json.dumps({"ok": True}))
"""


def say(priority: int, message: str) -> None:
    print(f"<{priority}>evsectl-firstboot: {message}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    say(6, message)


def error(message: str) -> None:
    say(3, message)


def _p(root: Path, rel: str) -> Path:
    return root / rel


def _prefix_args(root: Path, option: str) -> list[str]:
    return [] if root == Path("/") else [option, str(root)]


def _names(path: Path) -> set[str]:
    try:
        return {line.split(":", 1)[0] for line in path.read_text(encoding="utf-8").splitlines() if line}
    except FileNotFoundError:
        return set()


def _gid(root: Path, group: str) -> int | None:
    try:
        for line in _p(root, "etc/group").read_text(encoding="utf-8").splitlines():
            parts = line.split(":")
            if parts[0] == group and len(parts) > 2:
                return int(parts[2])
    except (FileNotFoundError, ValueError):
        pass
    return None


def ensure_users(root: Path) -> list[str]:
    """Create the gpio group and the service users that are missing; return what was created."""
    made = []
    if "gpio" not in _names(_p(root, "etc/group")):
        subprocess.run(["groupadd", *_prefix_args(root, "--prefix"), "--system", "gpio"], check=True)
        made.append("group gpio")
    for name, extra in USERS:
        if name in _names(_p(root, "etc/passwd")):
            continue
        subprocess.run(["useradd", *_prefix_args(root, "--prefix"), "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", *extra, name], check=True)
        made.append(f"user {name}")
    for what in made:
        info(f"created {what}")
    return made


def ensure_ssh_host_keys(root: Path) -> bool:
    """Generate the SSH host keys if none exist; True if generated."""
    if any(_p(root, "etc/ssh").glob("ssh_host_*_key")):
        return False
    _p(root, "etc/ssh").mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-A", *_prefix_args(root, "-f")], check=True, stdout=subprocess.DEVNULL)
    info("generated the SSH host keys")
    return True


def make_serial(root: Path) -> str:
    """EVR- and the Pi's serial number (its last 12 hex digits, no leading zeros), else 8 random hex digits."""
    for rel in PI_SERIALS:
        try:
            raw = _p(root, rel).read_bytes().rstrip(b"\0\n").decode("ascii", "replace").strip()
        except OSError:
            continue
        digits = re.sub(r"[^0-9A-Fa-f]", "", raw).upper()[-12:].lstrip("0")
        if digits:
            return SERIAL_PREFIX + digits
    return SERIAL_PREFIX + secrets.token_hex(4).upper()


def serial_number(root: Path) -> str:
    """The charger's serial number, made and stored once."""
    path = _p(root, SERIAL_FILE)
    try:
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    value = make_serial(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, value + "\n", 0o644, None)
    info(f"serial number {value}")
    return value


def has_serial(text: str) -> bool:
    try:
        station = tomllib.loads(text).get("station", {})
    except tomllib.TOMLDecodeError:
        return True  # left alone: the check reports the real error with its line
    return isinstance(station, dict) and "serial_number" in station


def with_serial(text: str, serial: str) -> str:
    """``text`` with ``serial_number`` in ``[station]`` if it had none (else unchanged)."""
    return with_serial_at(text, serial)[0]


def with_serial_at(text: str, serial: str) -> tuple[str, int | None]:
    """`with_serial` and the number of the line it inserted (None: nothing inserted)."""
    if has_serial(text):
        return text, None
    line = f'serial_number = "{serial}"   # set at first boot (evsectl-firstboot)\n'
    m = re.search(r"^[ \t]*\[[ \t]*station[ \t]*\][^\n]*\n?", text, flags=re.MULTILINE)
    if m:
        head = text[:m.end()] if text[:m.end()].endswith("\n") else text[:m.end()] + "\n"
        return head + line + text[m.end():], head.count("\n") + 1
    head = text + ("" if text.endswith("\n") or not text else "\n") + "\n[station]\n"
    return head + line, None  # appended at the end: no line of the file moves


def _unshift(result: dict, inserted: int | None, shown_as: str) -> dict:
    """Line numbers of the technician's file, not of the copy with the inserted serial line."""
    line = result.get("line")
    if inserted and isinstance(line, int) and line > inserted:
        result["line"] = line - 1
        if result.get("message"):
            result["message"] = result["message"].replace(f"{shown_as}:{line}:", f"{shown_as}:{line - 1}:", 1)
    return result


def _write_atomic(path: Path, text: str, mode: int, gid: int | None) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if gid is not None:
            try:
                os.chown(tmp, 0, gid)
            except PermissionError:
                pass  # not root (tests): ownership stays as it is
        os.replace(tmp, path)
    except BaseException:
        with _quiet():
            os.unlink(tmp)
        raise


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)  # type: ignore[arg-type]


def release_python(root: Path) -> str | None:
    for rel in PYTHONS:
        candidate = _p(root, rel)
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def check_settings(path: Path, python: str | None, shown_as: str | None = None) -> dict:
    """Validate ``path`` with the release's ``controller.config.load``: {"ok": bool, key, line, message}."""
    if python is None:
        return {"ok": False, "key": None, "line": None, "message": "no release installed to check it with"}
    try:
        done = subprocess.run([python, "-P", "-c", CHECK, str(path)], capture_output=True, text=True, timeout=120,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"ok": False, "key": None, "line": None, "message": f"check failed to run: {e}"}
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"ok": False, "key": None, "line": None, "message": f"check failed: {tail[0]}"}
    if shown_as and result.get("message"):
        result["message"] = result["message"].replace(str(path), shown_as)
    return result


def describe(result: dict) -> str:
    where = []
    if result.get("key"):
        where.append(f"key {result['key']}")
    if result.get("line"):
        where.append(f"line {result['line']}")
    return (", ".join(where) + ": " if where else "") + str(result.get("message"))


def import_boot_config(root: Path, serial: str, python: str | None) -> str:
    """Install /boot/firmware/evsectl.toml if present, changed and valid.

    Returns "absent", "unchanged", "installed" or "rejected".
    """
    source = _p(root, BOOT_CONFIG)
    target = _p(root, CONFIG)
    state = _p(root, STATE)
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        return "absent"
    try:
        text = raw.decode("utf-8-sig").replace("\r\n", "\n")  # written on any laptop
    except UnicodeDecodeError as e:
        return _reject(state, source, {"ok": False, "key": None, "line": None,
                                       "message": f"/{BOOT_CONFIG}: not UTF-8 text: {e}"})
    text, inserted = with_serial_at(text, serial)
    try:
        if target.read_text(encoding="utf-8") == text:
            _clear_error(state)
            return "unchanged"
    except FileNotFoundError:
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".evsectl.toml.new.", suffix=".toml", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # readable by the release's check; the final file is 0640
        result = _unshift(check_settings(Path(tmp), python, shown_as=f"/{BOOT_CONFIG}"), inserted,
                          f"/{BOOT_CONFIG}")
    finally:
        with _quiet():
            os.unlink(tmp)
    if not result.get("ok"):
        return _reject(state, source, result)
    gid = _gid(root, "evsectl")
    if target.exists():
        shutil.copy2(target, target.with_name("evsectl.toml.prev"))
    _write_atomic(target, text, 0o640, gid)
    _clear_error(state)
    info(f"installed /{BOOT_CONFIG} as /{CONFIG} (previous kept as evsectl.toml.prev)")
    return "installed"


def _reject(state: Path, source: Path, result: dict) -> str:
    error(f"/{BOOT_CONFIG} rejected, keeping the previous /{CONFIG}: {describe(result)}")
    if state.is_dir():
        record = {"file": f"/{BOOT_CONFIG}", "key": result.get("key"), "line": result.get("line"),
                  "message": result.get("message")}
        _write_atomic(state / ERROR_FILE, json.dumps(record, indent=2) + "\n", 0o644, None)
    return "rejected"


def _clear_error(state: Path) -> None:
    with _quiet():
        (state / ERROR_FILE).unlink()


def ensure_installed_serial(root: Path, serial: str) -> bool:
    """Write the serial number into the installed settings if they have none."""
    target = _p(root, CONFIG)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    new = with_serial(text, serial)
    if new == text:
        return False
    _write_atomic(target, new, 0o640, _gid(root, "evsectl"))
    info(f"serial number {serial} written into /{CONFIG}")
    return True


def add_authorized_keys(root: Path) -> int:
    try:
        keys = [k.strip() for k in _p(root, BOOT_KEYS).read_text(encoding="utf-8-sig").splitlines()
                if k.strip() and not k.startswith("#")]
    except FileNotFoundError:
        return 0
    target = _p(root, "root/.ssh/authorized_keys")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    have = target.read_text(encoding="utf-8").splitlines() if target.exists() else []
    new = [k for k in keys if k not in have]
    if new:
        _write_atomic(target, "".join(f"{k}\n" for k in [*have, *new]), 0o600, None)
        info(f"added {len(new)} SSH key(s) from /{BOOT_KEYS} for root")
    return len(new)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="evsectl-firstboot", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path("/"), help="the tree to work on (default: /)")
    p.add_argument("--python", help="interpreter with the release, to validate settings")
    p.add_argument("--ssh-keys", action="store_true", help="only generate missing SSH host keys")
    p.add_argument("--check", type=Path, metavar="FILE", help="only validate FILE (exit 1 if bad)")
    args = p.parse_args(argv)
    root = args.root.resolve()
    python = args.python or release_python(root)
    if args.check:
        text = args.check.read_text(encoding="utf-8-sig")
        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / "evsectl.toml"
            probed, inserted = with_serial_at(text, SERIAL_PREFIX + "CHECK")
            probe.write_text(probed, encoding="utf-8")
            result = _unshift(check_settings(probe, python, shown_as=str(args.check)), inserted, str(args.check))
        if not result.get("ok"):
            print(f"{args.check}: {describe(result)}", file=sys.stderr)
            return 1
        print(f"{args.check}: OK")
        return 0
    if args.ssh_keys:
        ensure_ssh_host_keys(root)
        return 0
    status = 0
    try:
        ensure_users(root)
    except (OSError, subprocess.CalledProcessError) as e:
        error(f"cannot create the service users: {e}")
        status = 1
    serial = serial_number(root)
    ensure_installed_serial(root, serial)
    import_boot_config(root, serial, python)  # a rejected file never fails the boot
    try:
        add_authorized_keys(root)
    except OSError as e:
        error(f"cannot add /{BOOT_KEYS}: {e}")
    return status


if __name__ == "__main__":
    sys.exit(main())
