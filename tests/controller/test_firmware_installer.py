"""R-FW 3: release artifacts of this software, installed side by side, switched atomically, rolled back.

Real artifacts are built once for the module from temporary copies of this
checkout with `tools/build_release.py` (offline: ``--no-build-isolation``,
``--no-index``); real venvs are created only where the behaviour needs one.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.firmware import installer
from controller.firmware.installer import (
    InstallError,
    InvalidArtifactError,
    Release,
    TrialError,
    begin_trial,
    clear_trial,
    commit_trial,
    current_release,
    exec_release,
    inspect_artifact,
    install_release,
    needs_rollback,
    note_start,
    roll_back,
    switch_to,
    trial,
)

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "build_release.py"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _load_tool():
    spec = importlib.util.spec_from_file_location("build_release", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_release = _load_tool()


def _build(*args: str) -> Path:
    done = subprocess.run(check=False, args=[sys.executable, str(TOOL), "--no-index", *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_file()
    return path


def _make_wheel(directory: Path, name: str, version: str, *, requires: tuple[str, ...] = (),
                files: dict[str, str] | None = None, tag: str = "py3-none-any") -> Path:
    """A minimal, well-formed wheel (METADATA, WHEEL, RECORD with hashes)."""
    dist = re.sub(r"[-.]+", "_", name)
    info = f"{dist}-{version}.dist-info"
    contents = dict(files or {})
    contents[f"{info}/METADATA"] = "".join(
        ["Metadata-Version: 2.1\n", f"Name: {name}\n", f"Version: {version}\n",
         *(f"Requires-Dist: {r}\n" for r in requires)])
    contents[f"{info}/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n"
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = "\n".join(record) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in contents.items():
            zf.writestr(path, text)
    return wheel


def _tarball(path: Path, members: dict[str, bytes | Path], *, symlink: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            raw = data.read_bytes() if isinstance(data, Path) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))
        if symlink:
            info = tarfile.TarInfo("link")
            info.type = tarfile.SYMTYPE
            info.linkname = symlink
            tf.addfile(info)
    return path


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """0.2.0 (code only), 0.3.0 (a syntax error), 0.4.0 (complete tarball with a local dependency)."""
    root = tmp_path_factory.mktemp("artifacts")
    src = build_release.copy_source(REPO, root / "src")
    assert "--version" in (src / "controller" / "cli.py").read_text(), "evsectl --version is needed"
    good = _build("--source", str(src), "--out", str(root / "good"), "--version", "0.2.0")

    broken_src = build_release.copy_source(src, root / "src-broken")
    with open(broken_src / "controller" / "config.py", "a", encoding="utf-8") as f:
        f.write("\ndef broken(:\n")
    broken = _build("--source", str(broken_src), "--out", str(root / "broken"), "--version", "0.3.0")

    links = root / "links"
    _make_wheel(links, "evsectl-fixture-dep", "1.0", files={"evsectl_fixture_dep.py": "ANSWER = 42\n"})
    complete_src = build_release.copy_source(src, root / "src-complete")
    pyproject = complete_src / "pyproject.toml"
    text, n = re.subn(r"^dependencies = \[[^\]]*\]", 'dependencies = ["evsectl-fixture-dep==1.0"]',
                      pyproject.read_text(), count=1, flags=re.MULTILINE)
    assert n == 1
    pyproject.write_text(text)
    complete = _build("--source", str(complete_src), "--out", str(root / "complete"), "--version", "0.4.0",
                      "--with-deps", "--find-links", str(links))

    # a rig release: the `pi` extra (which, as in pyproject.toml, names evsectl's own
    # `modbus` extra) shipped and installed with the release
    _make_wheel(links, "evsectl-fixture-extra", "2.0", files={"evsectl_fixture_extra.py": "RIG = True\n"})
    rig_src = build_release.copy_source(complete_src, root / "src-rig")
    pyproject = rig_src / "pyproject.toml"
    text, n = re.subn(r"^\[project\.optional-dependencies\]\n(?:(?!^\[).*\n)*",
                      '[project.optional-dependencies]\nmodbus = ["evsectl-fixture-extra==2.0"]\n'
                      'pi = ["evsectl[modbus]"]\n\n', pyproject.read_text(), count=1, flags=re.MULTILINE)
    assert n == 1
    pyproject.write_text(text)
    rig = _build("--source", str(rig_src), "--out", str(root / "rig"), "--version", "0.5.0",
                 "--with-deps", "--extras", "pi", "--find-links", str(links))
    return {"good": good, "broken": broken, "complete": complete, "rig": rig, "links": links, "root": root}


@pytest.fixture(scope="module")
def state(tmp_path_factory, artifacts):
    """One state directory with real releases 0.2.0 (code only) and 0.4.0 (complete), none in force."""
    path = tmp_path_factory.mktemp("state") / "state"
    v2 = install_release(artifacts["good"], path)
    v4 = install_release(artifacts["complete"], path)
    return path, v2, v4


def _version_of(release: Release) -> str:
    done = subprocess.run(check=False, args=[str(release.python), "-m", "controller", "--version"], capture_output=True,
                          text=True, timeout=60, cwd=release.path)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _fake_release(state: Path, version: str) -> Release:
    path = state / "releases" / version
    (path / "venv" / "bin").mkdir(parents=True)
    (path / "venv" / "bin" / "python").touch()
    (path / "release.json").write_text(json.dumps({"version": version}))
    return Release.at(path)


# -- artifacts ---------------------------------------------------------------


def test_r_fw_3_build_tool_names_the_artifacts(artifacts):
    assert artifacts["good"].name == "evsectl-0.2.0-py3-none-any.whl"
    assert artifacts["complete"].name == "evsectl-0.4.0.tar.gz"


def test_r_fw_3_inspect_a_wheel(artifacts):
    art = inspect_artifact(artifacts["good"])
    assert (art.version, art.wheels, art.complete) == ("0.2.0", [artifacts["good"]], False)


def test_r_fw_3_inspect_a_wheel_whatever_its_file_name(artifacts, tmp_path):
    download = tmp_path / "firmware.bin"
    download.write_bytes(artifacts["good"].read_bytes())
    assert inspect_artifact(download).version == "0.2.0"


def test_r_fw_3_inspect_a_complete_tarball(artifacts):
    with inspect_artifact(artifacts["complete"]) as art:
        assert (art.version, art.complete) == ("0.4.0", True)
        assert [w.name for w in art.wheels] == ["evsectl-0.4.0-py3-none-any.whl",
                                                "evsectl_fixture_dep-1.0-py3-none-any.whl"]
        workdir = art.workdir
        assert all(w.is_file() and workdir in w.parents for w in art.wheels)
    assert not workdir.exists()


def test_r_fw_3_a_rig_release_carries_its_extras_and_installs_them(artifacts, tmp_path):
    """tools/build_release.py --with-deps --extras pi: the Modbus/PC/SC/GPIO backends of a
    rig survive an update (without them the new release would start with no real driver)."""
    with inspect_artifact(artifacts["rig"]) as art:
        assert (art.version, art.complete, art.extras) == ("0.5.0", True, ("pi",))
        assert "evsectl_fixture_extra-2.0-py3-none-any.whl" in [w.name for w in art.wheels]
    release = install_release(artifacts["rig"], tmp_path / "state")
    code = "import evsectl_fixture_extra as x, evsectl_fixture_dep as d; print(x.RIG, d.ANSWER)"
    done = subprocess.run(check=False, args=[str(release.python), "-P", "-c", code],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "42"]
    assert json.loads((release.path / "release.json").read_text())["extras"] == ["pi"]


@pytest.mark.parametrize(("extras", "drop", "reason"), [
    (b"banner\n", None, "names 'banner', which evsectl does not provide"),
    (b"pi; rm -rf /\n", None, "not an extra"),
    (b"pi\n", "evsectl_fixture_extra-2.0-py3-none-any.whl", "need a wheel for evsectl-fixture-extra"),
])
def test_r_fw_3_a_release_whose_extras_cannot_be_installed_is_refused(artifacts, tmp_path, extras, drop, reason):
    with inspect_artifact(artifacts["rig"]) as art:
        members: dict[str, bytes | Path] = {w.name: w.read_bytes() for w in art.wheels if w.name != drop}
    members["EXTRAS"] = extras
    bad = _tarball(tmp_path / "evsectl-0.5.0.tar.gz", members)
    with pytest.raises(InvalidArtifactError) as e:
        inspect_artifact(bad, into=tmp_path / "into")
    assert reason in e.value.reason


def test_r_fw_3_extras_need_a_complete_set(artifacts, tmp_path):
    done = subprocess.run(check=False, args=[sys.executable, str(TOOL), "--no-index", "--extras", "pi",
                                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "--extras needs --with-deps" in done.stderr


def _bad_artifact(kind: str, tmp: Path, good: Path) -> Path:
    if kind == "not a zip":
        p = tmp / "evsectl-0.2.0-py3-none-any.whl"
        p.write_bytes(b"this is not a zip file\n")
        return p
    if kind == "wrong package name":
        return _make_wheel(tmp, "notevsectl", "0.2.0")
    if kind == "no METADATA":
        p = tmp / "evsectl-0.2.0-py3-none-any.whl"
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("controller/__init__.py", "")
        return p
    if kind == "no version":
        p = tmp / "evsectl-0.2.0-py3-none-any.whl"
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("evsectl-0.2.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: evsectl\n")
            zf.writestr("evsectl-0.2.0.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: py3-none-any\n")
        return p
    if kind == "platform wheel":
        return _make_wheel(tmp, "evsectl", "0.2.0", tag="cp311-cp311-linux_x86_64")
    if kind == "../ member":
        return _tarball(tmp / "a.tar.gz", {good.name: good, "../escaped.txt": b"gotcha"})
    if kind == "absolute member":
        return _tarball(tmp / "a.tar.gz", {good.name: good, "/tmp/escaped-absolute.txt": b"gotcha"})
    if kind == "symlink member":
        return _tarball(tmp / "a.tar.gz", {good.name: good}, symlink="/etc/passwd")
    if kind == "no evsectl wheel":
        dep = _make_wheel(tmp / "w", "evsectl-fixture-dep", "1.0")
        return _tarball(tmp / "a.tar.gz", {dep.name: dep})
    if kind == "incomplete tarball":
        return _tarball(tmp / "a.tar.gz", {good.name: good})  # requires ocpp, websockets
    if kind == "corrupt gzip":
        p = tmp / "a.tar.gz"
        p.write_bytes(_tarball(tmp / "b.tar.gz", {good.name: good}).read_bytes()[:200])
        return p
    raise AssertionError(kind)


@pytest.mark.parametrize(("kind", "reason"), [
    ("not a zip", "neither a wheel nor a tarball"),
    ("wrong package name", "package 'notevsectl', not 'evsectl'"),
    ("no METADATA", "no single .dist-info/METADATA"),
    ("no version", "no Version"),
    ("platform wheel", "not a pure-Python"),
    ("../ member", "'../escaped.txt' escapes"),
    ("absolute member", "escapes the extraction directory"),
    ("symlink member", "not a regular file"),
    ("no evsectl wheel", "no evsectl wheel"),
    ("incomplete tarball", "not a complete set, no wheel for"),
    ("corrupt gzip", "unreadable tarball"),
])
def test_r_fw_3_invalid_artifacts_are_refused(kind, reason, artifacts, tmp_path):
    bad = _bad_artifact(kind, tmp_path, artifacts["good"])
    into = tmp_path / "into"
    with pytest.raises(InvalidArtifactError) as e:
        inspect_artifact(bad, into=into)
    assert reason in e.value.reason
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/escaped-absolute.txt").exists()


def test_r_fw_3_a_missing_file_is_an_invalid_artifact(tmp_path):
    with pytest.raises(InvalidArtifactError):
        inspect_artifact(tmp_path / "nothing.whl")


# -- install, switch, roll back ----------------------------------------------


def test_r_fw_3_install_a_code_only_release(state):
    path, v2, _ = state
    assert v2 == Release(version="0.2.0", path=path.resolve() / "releases" / "0.2.0",
                         python=path.resolve() / "releases" / "0.2.0" / "venv" / "bin" / "python")
    assert _version_of(v2) == "0.2.0"
    info = json.loads((v2.path / "release.json").read_text())
    assert info["complete"] is False and info["dependency_paths"]
    # the running environment's dependencies are reused: the release imports ocpp from there
    done = subprocess.run(check=False, args=[str(v2.python), "-P", "-c", "import ocpp, controller; print(controller.__file__)"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert str(v2.path) in done.stdout
    # nothing half-built left behind, and the venv's scripts name its final place
    assert sorted(p.name for p in (path / "releases").iterdir()) == ["0.2.0", "0.4.0"]
    assert (v2.path / "venv" / "bin" / "pip").read_text().startswith(f"#!{v2.path}/venv/bin/python")


def test_r_fw_3_install_a_complete_release_standing_alone(state):
    _, _, v4 = state
    assert _version_of(v4) == "0.4.0"
    code = "import evsectl_fixture_dep as d, importlib.util as u; print(d.ANSWER, u.find_spec('ocpp') is None)"
    done = subprocess.run(check=False, args=[str(v4.python), "-P", "-c", code],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["42", "True"]  # its dependency from the set, nothing from outside


def test_r_fw_3_install_switch_and_roll_back(state):
    path, v2, v4 = state
    clear_trial(path)
    (path / "current").unlink(missing_ok=True)
    assert current_release(path) is None

    assert switch_to(path, v2) is None
    assert current_release(path) == v2
    assert os.readlink(path / "current") == "releases/0.2.0"  # relative: survives an image build

    begin_trial(path, installer.release_command(v2, ["run"]), "0.4.0", T0 + timedelta(minutes=10))
    assert switch_to(path, v4) == v2
    assert current_release(path) == v4
    assert _version_of(current_release(path)) == "0.4.0"

    assert note_start(path).attempts == 1
    assert note_start(path).attempts == 2  # the new version started again without committing
    assert needs_rollback(trial(path), T0)
    command = roll_back(path)
    assert command == [str(v2.python), "-P", "-m", "controller", "run"]
    assert current_release(path) == v2
    assert trial(path).state == "rolled_back"
    assert roll_back(path) == command  # idempotent after a crash between the steps
    assert not needs_rollback(trial(path), T0 + timedelta(days=1))


def test_r_fw_3_the_symlink_always_resolves_while_switching(state):
    path, v2, v4 = state
    switch_to(path, v2)
    link = path / "current"
    seen_broken = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            if not (link / "venv" / "bin" / "python").exists():
                seen_broken.append(os.readlink(link) if link.is_symlink() else None)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(200):
            switch_to(path, v4)
            switch_to(path, v2)
    finally:
        stop.set()
        watcher.join()
    assert seen_broken == []
    assert current_release(path) == v2
    assert not list(path.glob(".current.tmp-*"))


def test_r_fw_3_failed_import_check_leaves_the_running_release(state, artifacts):
    path, v2, _ = state
    switch_to(path, v2)
    before = sorted(p.name for p in (path / "releases").iterdir())
    with pytest.raises(InstallError) as e:
        install_release(artifacts["broken"], path)
    assert "import check" in e.value.reason
    assert "SyntaxError" in e.value.output
    assert current_release(path) == v2
    assert sorted(p.name for p in (path / "releases").iterdir()) == before  # no 0.3.0, no .work-*


def test_r_fw_3_reinstalling_the_release_in_force_swaps_it(state, artifacts):
    path, v2, _ = state
    switch_to(path, v2)
    first_install = json.loads((v2.path / "release.json").read_text())["installed_at"]
    again = install_release(artifacts["good"], path)
    assert again == v2
    assert current_release(path) == v2
    assert _version_of(again) == "0.2.0"
    assert (again.path / "release.json").exists() and first_install
    assert sorted(p.name for p in (path / "releases").iterdir()) == ["0.2.0", "0.4.0"]
    assert (again.path / "venv" / "bin" / "pip").read_text().startswith(f"#!{v2.path}/venv/bin/python")


def test_r_fw_3_an_invalid_artifact_installs_nothing(state, tmp_path):
    path, v2, _ = state
    switch_to(path, v2)
    bad = _make_wheel(tmp_path, "notevsectl", "9.9.9")
    with pytest.raises(InvalidArtifactError):
        install_release(bad, path)
    assert current_release(path) == v2
    assert sorted(p.name for p in (path / "releases").iterdir()) == ["0.2.0", "0.4.0"]


def test_r_fw_3_a_hung_import_check_is_an_install_error(artifacts, tmp_path):
    """The flow with an injected runner: the check times out, the half-built release goes."""
    calls = []

    def runner(argv, **kwargs):
        calls.append(argv)
        if argv[1:3] == ["-m", "venv"]:
            (Path(argv[3]) / "bin").mkdir(parents=True)
            (Path(argv[3]) / "bin" / "python").touch()
            return subprocess.CompletedProcess(argv, 0, "", "")
        if "--version" in argv:
            raise subprocess.TimeoutExpired(argv, kwargs["timeout"])
        if argv[1] == "-c" and "sysconfig" in argv[2]:
            site = Path(argv[0]).parents[1] / "lib" / "site-packages"
            site.mkdir(parents=True)
            return subprocess.CompletedProcess(argv, 0, f"{site}\n", "")
        if argv[1] == "-c":
            return subprocess.CompletedProcess(argv, 0, json.dumps(sys.path) + "\n", "")
        return subprocess.CompletedProcess(argv, 0, "", "")

    state = tmp_path / "state"
    with pytest.raises(InstallError, match="no answer within 5 s"):
        install_release(artifacts["good"], state, runner=runner, check_timeout=5)
    assert list((state / "releases").iterdir()) == []
    pip_call = next(c for c in calls if "pip" in c)
    assert {"--no-index", "--no-deps"} <= set(pip_call)


# -- trial marker ------------------------------------------------------------


def test_r_fw_3_trial_life_cycle_committed(tmp_path):
    state = tmp_path / "state"
    v1, v2 = _fake_release(state, "0.1.0"), _fake_release(state, "0.2.0")
    switch_to(state, v1)
    assert trial(state) is None and note_start(state) is None
    t = begin_trial(state, ["/old/python", "-m", "controller", "run"], "0.2.0", T0)
    assert (t.state, t.attempts, t.previous_target) == ("pending", 0, "releases/0.1.0")
    assert trial(state) == t
    switch_to(state, v2)
    assert note_start(state).attempts == 1
    assert not needs_rollback(trial(state), T0 - timedelta(seconds=1))
    assert commit_trial(state).state == "committed"
    assert note_start(state).attempts == 1  # counted only while pending
    assert not needs_rollback(trial(state), T0 + timedelta(days=1))
    with pytest.raises(TrialError):
        roll_back(state)
    assert current_release(state) == v2
    clear_trial(state)
    assert trial(state) is None
    marker = state / "firmware" / "trial.json"
    assert not marker.exists() and not list(marker.parent.glob(".trial.json.tmp-*"))


def test_r_fw_3_needs_rollback_by_attempts_and_by_deadline(tmp_path):
    state = tmp_path / "state"
    begin_trial(state, ["python", "-m", "controller", "run"], "0.2.0", T0, previous=None)
    assert not needs_rollback(trial(state), T0)  # written, not started yet
    note_start(state)
    assert not needs_rollback(trial(state), T0)  # first start, deadline not passed
    assert needs_rollback(trial(state), T0 + timedelta(seconds=1))  # by deadline
    note_start(state)
    assert needs_rollback(trial(state), T0 - timedelta(hours=1))  # by attempts
    assert not needs_rollback(None, T0)


def test_r_fw_3_roll_back_from_a_non_release_install_removes_current(tmp_path):
    state = tmp_path / "state"
    v2 = _fake_release(state, "0.2.0")
    first = [sys.executable, "-m", "controller", "run", "--config", "/etc/evsectl/evsectl.toml"]
    begin_trial(state, first, "0.2.0", T0)  # nothing in force: the previous is not a release
    assert trial(state).previous_target is None
    switch_to(state, v2)
    assert roll_back(state) == first
    assert not (state / "current").exists() and current_release(state) is None


def test_r_fw_3_begin_trial_after_switch_names_the_previous(tmp_path):
    state = tmp_path / "state"
    v1, v2 = _fake_release(state, "0.1.0"), _fake_release(state, "0.2.0")
    switch_to(state, v1)
    previous = switch_to(state, v2)
    begin_trial(state, ["x"], "0.2.0", T0, previous=previous)
    roll_back(state)
    assert current_release(state) == v1


def test_r_fw_3_roll_back_refuses_a_vanished_previous_release(tmp_path):
    state = tmp_path / "state"
    v1, v2 = _fake_release(state, "0.1.0"), _fake_release(state, "0.2.0")
    switch_to(state, v1)
    begin_trial(state, ["x"], "0.2.0", T0)
    switch_to(state, v2)
    (v1.python).unlink()
    with pytest.raises(TrialError, match="gone"):
        roll_back(state)
    assert current_release(state) == v2


def test_r_fw_3_trial_needs_an_aware_deadline(tmp_path):
    with pytest.raises(ValueError):
        begin_trial(tmp_path, ["x"], "0.2.0", datetime(2030, 1, 1))


def test_r_fw_3_unreadable_marker_is_no_trial(tmp_path):
    marker = tmp_path / "firmware" / "trial.json"
    marker.parent.mkdir(parents=True)
    marker.write_text("{not json")
    assert trial(tmp_path) is None
    marker.write_text(json.dumps({"new_version": "1", "state": "weird"}))
    assert trial(tmp_path) is None


def test_r_fw_3_switch_refuses_what_is_not_a_release(tmp_path):
    state = tmp_path / "state"
    elsewhere = tmp_path / "elsewhere" / "0.2.0"
    (elsewhere / "venv" / "bin").mkdir(parents=True)
    (elsewhere / "venv" / "bin" / "python").touch()
    with pytest.raises(installer.FirmwareError):
        switch_to(state, Release.at(elsewhere))
    empty = state / "releases" / "0.3.0"
    empty.mkdir(parents=True)
    with pytest.raises(installer.FirmwareError):
        switch_to(state, Release.at(empty))
    assert current_release(state) is None


def test_r_fw_3_a_dangling_current_is_no_release(tmp_path):
    tmp_path.joinpath("current").symlink_to("releases/0.9.0")
    assert current_release(tmp_path) is None


# -- exec ----------------------------------------------------------------------


def test_r_fw_3_exec_release_runs_the_release_interpreter(tmp_path, capsys):
    release = _fake_release(tmp_path, "0.2.0")
    calls = []
    print("pending output", end="")
    exec_release(release, ["run", "--config", "x.toml"], execv=lambda path, argv: calls.append((path, argv)))
    python = str(release.python)
    assert calls == [(python, [python, "-P", "-m", "controller", "run", "--config", "x.toml"])]
    assert capsys.readouterr().out == "pending output"


def test_r_fw_3_running_command_restarts_this_interpreter():
    command = installer.running_command()
    assert command[0] == sys.executable and command[1:] == sys.orig_argv[1:]
