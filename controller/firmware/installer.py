"""Release artifacts installed side by side, switched atomically, rolled back on a failed trial.

Artifact
    Either one wheel ``evsectl-<version>-py3-none-any.whl`` (a code-only
    release: its dependencies are those of the running installation), or a
    ``.tar.gz`` holding that wheel plus the wheels of all its dependencies (a
    complete offline set, built by ``tools/build_release.py --with-deps``).
    The kind is told by the content, not by the file name, since a download
    may be named anything. `inspect_artifact` checks it without installing it.

Layout under the state directory (``[station] state_dir``, /var/lib/evsectl)::

    <state>/releases/<version>/          one directory per installed release
        venv/                            its own virtual environment
        release.json                     version, artifact, kind; written last
    <state>/releases/.work-*/            a build in progress (removed on failure,
                                         swept by the next install)
    <state>/current -> releases/<version>  relative symlink: the release in force
    <state>/firmware/                    downloads, the lock, the trial marker
    <state>/firmware/trial.json          the trial marker (see below)

A release directory appears under its version name only complete: it is built
in ``releases/.work-*/release``, checked, synced to disk, then renamed into
place. ``current`` is relative so the tree can be built elsewhere (an SD image
mounted on a build host) and still resolve on the Pi; it is replaced by
creating the new link under a temporary name and ``os.replace``-ing it, so at
every instant it resolves to either the old or the new release.

Code-only releases see the running environment's site-packages through a
``.pth`` file in their own site-packages (plain directory lines, appended after
the venv's own directory, so the new ``controller`` shadows any older one and
no ``.pth`` of the old environment is run). Why: the charger has no network at
run time and a code-only release does not change the dependencies, so they are
reused rather than downloaded; the wheel is installed with ``--no-deps
--no-index`` before the ``.pth`` is written, so pip never sees (nor touches)
the running environment. When the running environment is itself a code-only
release, its own ``.pth`` targets are inherited instead of its directory, so
releases never chain on each other; a complete release installs everything
with ``--no-index --find-links`` and stands alone (a later code-only release
does depend on its directory: keep it while such a release is installed).
A complete set may carry an ``EXTRAS`` file (``tools/build_release.py
--extras pi,hmi``): those extras of evsectl are installed with it, their wheels
checked present first, so a rig keeps its Modbus, PC/SC, GPIO and screen
backends across an update (without it, only the core dependencies come).

Trial. Before switching, the caller writes the marker (`begin_trial`): the new
version, the exact argv that starts the previous version again, where
``current`` pointed, and a deadline. A launcher calls `note_start` at each
start; `needs_rollback` is true once the new release has started twice without
committing (it crashed or was restarted) or the deadline has passed. The new
release calls `commit_trial` when it reaches BootNotification Accepted;
otherwise `roll_back` restores the previous ``current`` (or removes it when
the previous version was not a release) and returns the argv to exec. Every
marker write is atomic (temporary file, fsync, ``os.replace``, fsync of the
directory).

All functions block; the daemon runs them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.parser
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Self

log = logging.getLogger("evsectl.firmware")

DIST_NAME = "evsectl"
RELEASES_DIR = "releases"
CURRENT_LINK = "current"
FIRMWARE_DIR = "firmware"
TRIAL_FILE = "trial.json"
LOCK_FILE = ".lock"
RELEASE_INFO = "release.json"
DEPENDENCIES_PTH = "_evsectl_dependencies.pth"
EXTRAS_FILE = "EXTRAS"  # in a complete tarball: the extras of evsectl to install (one per line)
PURE_TAG = "py3-none-any"

MAX_MEMBERS = 2000
MAX_UNPACKED_BYTES = 1 << 30
VENV_TIMEOUT_S = 300.0
PIP_TIMEOUT_S = 600.0
CHECK_TIMEOUT_S = 60.0
QUERY_TIMEOUT_S = 60.0

TRIAL_STATES = ("pending", "committed", "rolled_back")

_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+!]{0,63}$")
_REQ_NAME_RE = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
_REQ_EXTRAS_RE = re.compile(r"^\s*[A-Za-z0-9._-]+\s*\[([^\]]*)\]")
_ONLY_EXTRA_MARKER_RE = re.compile(r"""^\s*extra\s*==\s*["']([^"']+)["']\s*$""")
_EXTRA_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$")

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


# -- errors -----------------------------------------------------------------


class FirmwareError(Exception):
    """Base of the errors of this module."""


class InvalidArtifactError(FirmwareError):
    """The file is not a release artifact of evsectl; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InstallError(FirmwareError):
    """The release could not be installed; the running one is untouched."""

    def __init__(self, reason: str, output: str = "") -> None:
        super().__init__(reason if not output else f"{reason}: {output}")
        self.reason = reason
        self.output = output


class TrialError(FirmwareError):
    """The trial marker does not allow what was asked (none, committed, previous gone)."""


# -- models -----------------------------------------------------------------


@dataclasses.dataclass
class Artifact:
    """A checked artifact: ``wheels[0]`` is the evsectl wheel; ``complete`` for a tarball set.

    For a tarball the wheels live in ``workdir`` (extracted); `cleanup` removes
    it unless the caller chose the directory (``inspect_artifact(into=...)``).
    """

    version: str
    wheels: list[Path]
    complete: bool
    workdir: Path | None = None
    owns_workdir: bool = False
    extras: tuple[str, ...] = ()  # complete sets: evsectl's extras installed with it (EXTRAS)

    @property
    def wheel(self) -> Path:
        return self.wheels[0]

    def cleanup(self) -> None:
        if self.workdir is not None and self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


@dataclasses.dataclass(frozen=True)
class Release:
    """An installed release: ``<state>/releases/<version>`` and its venv's interpreter."""

    version: str
    path: Path
    python: Path

    @classmethod
    def at(cls, path: Path) -> Release:
        path = Path(path)
        return cls(version=_release_version(path), path=path, python=path / "venv" / "bin" / "python")


@dataclasses.dataclass(frozen=True)
class Trial:
    """The trial marker: a new version on probation until it reaches BootNotification Accepted."""

    new_version: str
    previous_command: list[str]
    deadline: datetime
    state: str
    attempts: int
    previous_target: str | None = None  # where `current` pointed (relative), None: no release

    def to_json(self) -> dict[str, Any]:
        return {
            "new_version": self.new_version,
            "previous_command": list(self.previous_command),
            "deadline": self.deadline.isoformat(),
            "state": self.state,
            "attempts": self.attempts,
            "previous_target": self.previous_target,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        deadline = datetime.fromisoformat(data["deadline"])
        if deadline.tzinfo is None:
            raise ValueError("deadline without a time zone")
        state = data["state"]
        if state not in TRIAL_STATES:
            raise ValueError(f"unknown state {state!r}")
        command = data["previous_command"]
        if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
            raise ValueError("previous_command is not a list of strings")
        target = data.get("previous_target")
        if target is not None and not isinstance(target, str):
            raise ValueError("previous_target is not a string")
        return cls(new_version=str(data["new_version"]), previous_command=command, deadline=deadline,
                   state=state, attempts=int(data["attempts"]), previous_target=target)


# -- artifacts --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _WheelMeta:
    name: str
    version: str
    requires: list[str]
    tags: list[str]
    provides_extra: list[str] = dataclasses.field(default_factory=list)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _read_wheel(path: Path) -> _WheelMeta:
    label = path.name
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            metadata = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(metadata) != 1:
                raise InvalidArtifactError(f"{label}: not a wheel (no single .dist-info/METADATA)")
            info_dir = metadata[0].split("/", 1)[0]
            meta = email.parser.BytesHeaderParser().parsebytes(zf.read(metadata[0]))
            wheel_file = f"{info_dir}/WHEEL"
            if wheel_file not in names:
                raise InvalidArtifactError(f"{label}: not a wheel (no {wheel_file})")
            wheel = email.parser.BytesHeaderParser().parsebytes(zf.read(wheel_file))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, OSError, EOFError, ValueError) as e:
        raise InvalidArtifactError(f"{label}: unreadable wheel ({e})") from e
    name = (meta.get("Name") or "").strip()
    version = (meta.get("Version") or "").strip()
    if not name:
        raise InvalidArtifactError(f"{label}: the wheel's METADATA has no Name")
    if not version:
        raise InvalidArtifactError(f"{label}: the wheel's METADATA has no Version")
    return _WheelMeta(name=name, version=version,
                      requires=[str(r) for r in meta.get_all("Requires-Dist") or []],
                      tags=[str(t).strip() for t in wheel.get_all("Tag") or []],
                      provides_extra=[_normalize(str(e).strip()) for e in meta.get_all("Provides-Extra") or []])


def _check_evsectl(meta: _WheelMeta, label: str) -> None:
    if _normalize(meta.name) != DIST_NAME:
        raise InvalidArtifactError(f"{label}: package {meta.name!r}, not {DIST_NAME!r}")
    if not _VERSION_RE.match(meta.version):
        raise InvalidArtifactError(f"{label}: unusable version {meta.version!r}")
    if PURE_TAG not in meta.tags:
        raise InvalidArtifactError(f"{label}: not a pure-Python {PURE_TAG} wheel ({', '.join(meta.tags)})")


def _is_tarball(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, tarfile.TarError):
        return False


def _safe_extract(path: Path, dest: Path, max_bytes: int) -> None:
    """Extract regular files and directories only, none outside ``dest``, within a size bound."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        with tarfile.open(path, "r:*") as tf:
            members = tf.getmembers()
            if len(members) > MAX_MEMBERS:
                raise InvalidArtifactError(f"{path.name}: more than {MAX_MEMBERS} members")
            total = 0
            for m in members:
                name = m.name
                pure = PurePosixPath(name)
                if not (m.isfile() or m.isdir()):
                    raise InvalidArtifactError(f"{path.name}: member {name!r} is not a regular file or directory")
                if pure.is_absolute() or ".." in pure.parts or "\\" in name or "\0" in name:
                    raise InvalidArtifactError(f"{path.name}: member {name!r} escapes the extraction directory")
                target = (root / name).resolve()
                if target != root and root not in target.parents:
                    raise InvalidArtifactError(f"{path.name}: member {name!r} escapes the extraction directory")
                total += max(m.size, 0)
                if total > max_bytes:
                    raise InvalidArtifactError(f"{path.name}: unpacks to more than {max_bytes} bytes")
            if hasattr(tarfile, "data_filter"):
                tf.extractall(root, members=members, filter="data")
            else:  # pragma: no cover - Python < 3.11.4; the checks above still hold
                tf.extractall(root, members=members)
    except InvalidArtifactError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        raise InvalidArtifactError(f"{path.name}: unreadable tarball ({e})") from e


def _missing_dependencies(metas: list[_WheelMeta]) -> list[str]:
    """Unconditional requirements (no marker) of any wheel in the set that no wheel provides."""
    present = {_normalize(m.name) for m in metas}
    missing: set[str] = set()
    for meta in metas:
        for requirement in meta.requires:
            if ";" in requirement:
                continue  # conditional (extra, python_version, platform…): pip decides at install
            match = _REQ_NAME_RE.match(requirement)
            if match and _normalize(match.group(1)) not in present:
                missing.add(_normalize(match.group(1)))
    return sorted(missing)


def _read_extras(workdir: Path, meta: _WheelMeta, label: str) -> tuple[str, ...]:
    """The extras the tarball's ``EXTRAS`` file asks for, each one evsectl provides."""
    path = workdir / EXTRAS_FILE
    if not path.is_file():
        return ()
    try:
        words = path.read_text(encoding="utf-8").replace(",", " ").split()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArtifactError(f"{label}: unreadable {EXTRAS_FILE} ({e})") from e
    extras: list[str] = []
    for word in words:
        if not _EXTRA_NAME_RE.match(word):
            raise InvalidArtifactError(f"{label}: {EXTRAS_FILE} names {word[:40]!r}, not an extra")
        name = _normalize(word)
        if name not in meta.provides_extra:
            raise InvalidArtifactError(f"{label}: {EXTRAS_FILE} names {name!r}, which {DIST_NAME} does not provide")
        if name not in extras:
            extras.append(name)
    return tuple(extras)


def _extra_requirements(meta: _WheelMeta, extras: Sequence[str]) -> list[str]:
    """The names ``meta``'s ``extras`` require (``extra == "x"`` markers only), its own
    extras that refer back to it (``evsectl[modbus]; extra == "pi"``) followed."""
    todo, seen, names = list(extras), set(), []
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in meta.requires:
            spec, _, marker = requirement.partition(";")
            wanted = _ONLY_EXTRA_MARKER_RE.match(marker)
            if wanted is None or _normalize(wanted.group(1)) != extra:
                continue  # unconditional, or another marker: pip decides
            match = _REQ_NAME_RE.match(spec)
            if match is None:
                continue
            if _normalize(match.group(1)) == _normalize(meta.name):
                inner = _REQ_EXTRAS_RE.match(spec)
                todo.extend(_normalize(e.strip()) for e in (inner.group(1).split(",") if inner else []) if e.strip())
            else:
                names.append(_normalize(match.group(1)))
    return names


def inspect_artifact(path: Path, *, into: Path | None = None,
                     max_unpacked_bytes: int = MAX_UNPACKED_BYTES) -> Artifact:
    """Check a release artifact (a wheel, or a tarball of wheels extracted into ``into`` or a temp dir)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidArtifactError(f"{path.name}: no such file")
    if zipfile.is_zipfile(path):
        meta = _read_wheel(path)
        _check_evsectl(meta, path.name)
        return Artifact(version=meta.version, wheels=[path], complete=False)
    if not _is_tarball(path):
        raise InvalidArtifactError(f"{path.name}: neither a wheel nor a tarball of wheels")
    owns = into is None
    workdir = Path(tempfile.mkdtemp(prefix="evsectl-artifact-")) if into is None else Path(into)
    try:
        _safe_extract(path, workdir, max_unpacked_bytes)
        wheels = sorted(p for p in workdir.rglob("*.whl") if p.is_file())
        metas = [_read_wheel(w) for w in wheels]
        ours = [(w, m) for w, m in zip(wheels, metas) if _normalize(m.name) == DIST_NAME]
        if not ours:
            raise InvalidArtifactError(f"{path.name}: no {DIST_NAME} wheel in the tarball")
        if len(ours) > 1:
            raise InvalidArtifactError(f"{path.name}: {len(ours)} {DIST_NAME} wheels in the tarball")
        wheel, meta = ours[0]
        _check_evsectl(meta, f"{path.name}: {wheel.name}")
        missing = _missing_dependencies(metas)
        if missing:
            raise InvalidArtifactError(f"{path.name}: not a complete set, no wheel for {', '.join(missing)}")
        extras = _read_extras(workdir, meta, path.name)
        present = {_normalize(m.name) for m in metas}
        missing = sorted({n for n in _extra_requirements(meta, extras) if n not in present})
        if missing:
            raise InvalidArtifactError(f"{path.name}: extras {','.join(extras)} need a wheel for "
                                       f"{', '.join(missing)}, not in the set")
        others = [w for w in wheels if w != wheel]
        return Artifact(version=meta.version, wheels=[wheel, *others], complete=True,
                        workdir=workdir, owns_workdir=owns, extras=extras)
    except BaseException:
        if owns:
            shutil.rmtree(workdir, ignore_errors=True)
        raise


# -- small file-system helpers ----------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _state(state_dir: Path) -> Path:
    return Path(state_dir).resolve()


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[None]:
    firmware = state / FIRMWARE_DIR
    firmware.mkdir(parents=True, exist_ok=True)
    with open(firmware / LOCK_FILE, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _release_version(path: Path) -> str:
    try:
        version = json.loads((path / RELEASE_INFO).read_text(encoding="utf-8"))["version"]
        if isinstance(version, str) and version:
            return version
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return path.name


# -- switching --------------------------------------------------------------


def _point_current(state: Path, target: Path) -> None:
    """Make ``<state>/current`` point at ``target`` (relative), atomically, and sync the directory."""
    link = state / CURRENT_LINK
    if link.exists() and not link.is_symlink():
        raise FirmwareError(f"{link} exists and is not a symlink")
    tmp = state / f".current.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    os.symlink(os.path.relpath(target, state), tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(state)


def _current_target(state: Path) -> Path | None:
    link = state / CURRENT_LINK
    if not link.is_symlink():
        return None
    return link.resolve()


def current_release(state_dir: Path) -> Release | None:
    """The release ``<state>/current`` points at, or None (no link, or a dangling one)."""
    target = _current_target(_state(state_dir))
    if target is None or not target.is_dir():
        return None
    return Release.at(target)


def switch_to(state_dir: Path, release: Release) -> Release | None:
    """Point ``current`` at ``release`` atomically; return the release that was in force, if any."""
    state = _state(state_dir)
    target = Path(release.path).resolve()
    if target.parent != state / RELEASES_DIR:
        raise FirmwareError(f"{target} is not a release under {state / RELEASES_DIR}")
    if not (target / "venv" / "bin" / "python").exists():
        raise FirmwareError(f"{target} has no venv/bin/python")
    previous = current_release(state)
    _point_current(state, target)
    log.info("release in force: %s (was %s)", release.version, previous.version if previous else "none")
    return previous


# -- installing -------------------------------------------------------------


def _child_env() -> dict[str, str]:
    """The environment for pip and the check: no PYTHONPATH/venv leaks, no host pip configuration."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV",
                                                      "PYTHONSTARTUP", "PYTHONSAFEPATH")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               PYTHONDONTWRITEBYTECODE="1")
    return env


def _tail(text: str | bytes | None, limit: int = 2000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text.strip()[-limit:]


def _run(runner: Runner, argv: Sequence[str], what: str, timeout: float, cwd: Path) -> str:
    log.debug("firmware: %s: %s", what, " ".join(argv))
    try:
        done = runner(list(argv), capture_output=True, text=True, timeout=timeout, cwd=str(cwd),
                      env=_child_env())
    except subprocess.TimeoutExpired as e:
        raise InstallError(f"{what}: no answer within {timeout:g} s", _tail(e.stderr)) from e
    except OSError as e:
        raise InstallError(f"{what}: {e}") from e
    if done.returncode != 0:
        raise InstallError(f"{what}: exit status {done.returncode}",
                           _tail(done.stderr) or _tail(done.stdout))
    return done.stdout or ""


def _dependency_paths(runner: Runner, base_python: str, cwd: Path) -> list[str]:
    """The site directories the running interpreter imports from, releases' own dirs excepted."""
    out = _run(runner, [base_python, "-c", "import json, sys; print(json.dumps(sys.path))"],
               "read the running environment's sys.path", QUERY_TIMEOUT_S, cwd)
    try:
        entries = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise InstallError("read the running environment's sys.path: unreadable answer", out) from e
    paths: list[str] = []
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            continue
        p = Path(entry)
        if not ({"site-packages", "dist-packages"} & set(p.parts)) or not p.is_dir():
            continue
        if (p / DEPENDENCIES_PTH).exists():
            continue  # a code-only release: its own .pth lines are in sys.path already
        if entry not in paths:
            paths.append(entry)
    return paths


def _relocate(venv_was: Path, venv_now: Path) -> None:
    """Rewrite the venv's own absolute path in its scripts (shebangs, activate) and pyvenv.cfg."""
    old, new = str(venv_was).encode(), str(venv_now).encode()
    candidates = [venv_was / "pyvenv.cfg"]
    bin_dir = venv_was / "bin"
    if bin_dir.is_dir():
        candidates += [p for p in bin_dir.iterdir() if p.is_file() and not p.is_symlink()]
    for p in candidates:
        if not p.is_file() or p.stat().st_size > 1 << 20:
            continue
        data = p.read_bytes()
        if b"\0" in data or old not in data:
            continue
        p.write_bytes(data.replace(old, new))


def _sweep(state: Path) -> None:
    """Remove leftovers of interrupted installs and switches, unless ``current`` points into them."""
    in_force = _current_target(state)
    releases = state / RELEASES_DIR
    for p in releases.glob(".*"):
        if not (p.name.startswith(".work-") or p.name.startswith(".old-")):
            continue
        if in_force is not None and (in_force == p or p in in_force.parents):
            continue
        shutil.rmtree(p, ignore_errors=True)
    for p in state.glob(".current.tmp-*"):
        if p.is_symlink():
            p.unlink(missing_ok=True)


def _put_in_place(state: Path, built: Path, final: Path) -> None:
    """Rename the built release to its version's name; swap when that name exists already."""
    releases = final.parent
    if not final.exists() and not final.is_symlink():
        os.rename(built, final)
        _fsync_dir(releases)
        return
    in_force = _current_target(state) == final
    trash = releases / f".old-{final.name}-{secrets.token_hex(4)}"
    if in_force:
        _point_current(state, built)  # `current` keeps resolving through the swap
    os.rename(final, trash)
    os.rename(built, final)
    _fsync_dir(releases)
    if in_force:
        _point_current(state, final)
    shutil.rmtree(trash, ignore_errors=True)


def install_release(artifact: Path, state_dir: Path, *, base_python: str = sys.executable,
                    runner: Runner = subprocess.run,
                    check_timeout: float = CHECK_TIMEOUT_S) -> Release:
    """Install ``artifact`` into ``<state>/releases/<version>/venv`` and check it; switch nothing.

    Raises InvalidArtifactError for a bad artifact and InstallError when the
    venv, pip or the import check (``python -m controller --version`` printing
    the artifact's version within ``check_timeout``) fails; either way the
    half-built directory is gone and the release in force is untouched.
    """
    state = _state(state_dir)
    releases = state / RELEASES_DIR
    releases.mkdir(parents=True, exist_ok=True)
    (state / FIRMWARE_DIR).mkdir(parents=True, exist_ok=True)
    with _locked(state):
        _sweep(state)
        work = Path(tempfile.mkdtemp(prefix=".work-", dir=releases))
        try:
            art = inspect_artifact(Path(artifact), into=work / "artifact")
            built = work / "release"
            venv = built / "venv"
            python = venv / "bin" / "python"
            final = releases / art.version
            log.info("installing evsectl %s (%s) into %s", art.version,
                     "complete set" if art.complete else "code only", final)
            _run(runner, [base_python, "-m", "venv", str(venv)], "create the venv", VENV_TIMEOUT_S, work)
            pip = [str(python), "-m", "pip", "install", "--no-index", "--no-compile"]
            if art.complete:
                wheel_dir = art.wheel.parent
                target = f"{art.wheel}[{','.join(art.extras)}]" if art.extras else str(art.wheel)
                _run(runner, [*pip, "--find-links", str(wheel_dir), target],
                     "pip install (complete set)", PIP_TIMEOUT_S, work)
                dependency_paths: list[str] = []
            else:
                # pip wants a well-formed wheel name; the download may be called anything
                wheel = work / f"{DIST_NAME}-{art.version}-{PURE_TAG}.whl"
                shutil.copyfile(art.wheel, wheel)
                _run(runner, [*pip, "--no-deps", str(wheel)], "pip install (code only)", PIP_TIMEOUT_S, work)
                dependency_paths = _dependency_paths(runner, base_python, work)
                site = _run(runner, [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                            "find the venv's site-packages", QUERY_TIMEOUT_S, work).strip().splitlines()[-1]
                (Path(site) / DEPENDENCIES_PTH).write_text("".join(f"{p}\n" for p in dependency_paths),
                                                          encoding="utf-8")
            out = _run(runner, [str(python), "-B", "-P", "-m", "controller", "--version"],
                       "import check (python -m controller --version)", check_timeout, work)
            words = out.split()
            if not words or words[-1] != art.version:
                raise InstallError(f"import check: the release reports {out.strip()!r}, not {art.version!r}")
            info = {"version": art.version, "artifact": Path(artifact).name, "complete": art.complete,
                    "extras": list(art.extras),
                    "dependency_paths": dependency_paths,
                    "installed_at": datetime.now(UTC).isoformat(timespec="seconds")}
            (built / RELEASE_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n",
                                              encoding="utf-8")
            _relocate(venv, final / "venv")
            os.sync()  # a release visible under its version name is on the disk, whole
            _put_in_place(state, built, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    release = Release.at(final)
    log.info("installed evsectl %s at %s", release.version, release.path)
    return release


# -- trial marker -----------------------------------------------------------


class _Current:
    def __repr__(self) -> str:
        return "<the release in force>"


CURRENT = _Current()


def trial_path(state_dir: Path) -> Path:
    return _state(state_dir) / FIRMWARE_DIR / TRIAL_FILE


def begin_trial(state_dir: Path, previous_command: list[str], new_version: str, deadline: datetime,
                *, previous: Release | None | _Current = CURRENT) -> Trial:
    """Write a pending trial of ``new_version``; call it before `switch_to`.

    ``previous`` is the release to restore on rollback: by default the one in
    force now (hence "before switch_to"); pass the value `switch_to` returned
    when calling it afterwards, or None when the previous version is not a
    release.
    """
    if deadline.tzinfo is None:
        raise ValueError("the deadline needs a time zone")
    if not previous_command or not all(isinstance(a, str) for a in previous_command):
        raise ValueError("previous_command must be a non-empty argv")
    state = _state(state_dir)
    if isinstance(previous, _Current):
        previous = current_release(state)
    target = os.path.relpath(Path(previous.path).resolve(), state) if previous is not None else None
    t = Trial(new_version=new_version, previous_command=list(previous_command), deadline=deadline,
              state="pending", attempts=0, previous_target=target)
    _write_json_atomic(trial_path(state), t.to_json())
    log.info("trial of %s until %s (previous: %s)", new_version, deadline.isoformat(), target or "not a release")
    return t


def trial(state_dir: Path) -> Trial | None:
    """The trial marker, or None when there is none (an unreadable one is logged and ignored)."""
    path = trial_path(state_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.error("trial marker %s unreadable (%s): ignored", path, e)
        return None
    try:
        return Trial.from_json(data)
    except (KeyError, ValueError, TypeError) as e:
        log.error("trial marker %s malformed (%s): ignored", path, e)
        return None


def _save(state_dir: Path, t: Trial) -> Trial:
    _write_json_atomic(trial_path(state_dir), t.to_json())
    return t


def note_start(state_dir: Path) -> Trial | None:
    """Count a start of the release on trial (pending only); a launcher calls it at every start."""
    t = trial(state_dir)
    if t is None or t.state != "pending":
        return t
    return _save(state_dir, dataclasses.replace(t, attempts=t.attempts + 1))


def needs_rollback(t: Trial | None, now: datetime | None = None) -> bool:
    """True for a pending trial started more than once, or past its deadline."""
    if t is None or t.state != "pending":
        return False
    now = now if now is not None else datetime.now(UTC)
    return t.attempts > 1 or now > t.deadline


def commit_trial(state_dir: Path) -> Trial | None:
    """Mark a pending trial committed (the new release reached BootNotification Accepted)."""
    t = trial(state_dir)
    if t is None or t.state != "pending":
        return t
    log.info("trial of %s committed", t.new_version)
    return _save(state_dir, dataclasses.replace(t, state="committed"))


def roll_back(state_dir: Path) -> list[str]:
    """Restore the previous ``current`` (or remove it), mark the trial rolled back, return the argv to exec.

    Idempotent for a trial already rolled back (a crash between the two steps);
    raises TrialError without a trial, for a committed one, or when the
    previous release has disappeared.
    """
    state = _state(state_dir)
    t = trial(state)
    if t is None:
        raise TrialError("no trial to roll back")
    if t.state == "committed":
        raise TrialError(f"the trial of {t.new_version} was committed")
    if t.previous_target is None:
        link = state / CURRENT_LINK
        if link.is_symlink():
            link.unlink()
            _fsync_dir(state)
    else:
        pure = PurePosixPath(t.previous_target)
        if pure.is_absolute() or ".." in pure.parts or pure.parts[:1] != (RELEASES_DIR,):
            raise TrialError(f"previous release {t.previous_target!r} is not under {RELEASES_DIR}/")
        target = state / t.previous_target
        if not (target / "venv" / "bin" / "python").exists():
            raise TrialError(f"previous release {target} is gone")
        _point_current(state, target)
    if t.state != "rolled_back":
        _save(state, dataclasses.replace(t, state="rolled_back"))
    log.warning("trial of %s rolled back to %s", t.new_version, t.previous_target or "the previous installation")
    return list(t.previous_command)


def clear_trial(state_dir: Path) -> None:
    """Remove the trial marker (after its outcome has been reported)."""
    path = trial_path(state_dir)
    if path.exists():
        path.unlink()
        _fsync_dir(path.parent)


# -- exec -------------------------------------------------------------------


def release_command(release: Release, args: Sequence[str]) -> list[str]:
    """The argv that runs ``controller`` of ``release`` (``-P``: the working directory is not searched)."""
    return [str(release.python), "-P", "-m", "controller", *args]


def running_command() -> list[str]:
    """The argv that started this process, with the interpreter's absolute path."""
    return [sys.executable, *sys.orig_argv[1:]]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()


def exec_command(argv: Sequence[str], *, execv: Callable[[str, list[str]], Any] = os.execv) -> None:
    """Replace this process by ``argv`` (after flushing stdio and the log handlers)."""
    argv = list(argv)
    _flush()
    execv(argv[0], argv)


def exec_release(release: Release, args: list[str], *,
                 execv: Callable[[str, list[str]], Any] = os.execv) -> None:
    """Replace this process by ``release``'s ``python -P -m controller *args``."""
    exec_command(release_command(release, args), execv=execv)


__all__ = [
    "CURRENT",
    "Artifact",
    "FirmwareError",
    "InstallError",
    "InvalidArtifactError",
    "Release",
    "Trial",
    "TrialError",
    "begin_trial",
    "clear_trial",
    "commit_trial",
    "current_release",
    "exec_command",
    "exec_release",
    "inspect_artifact",
    "install_release",
    "needs_rollback",
    "note_start",
    "release_command",
    "roll_back",
    "running_command",
    "switch_to",
    "trial",
    "trial_path",
]
