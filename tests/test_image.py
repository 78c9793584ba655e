"""The SD image's fast parts (issue 9, R-OPSYS): no root, no network, no chroot.

The full build (``image/build``, ~25 min under qemu-user) and the QEMU boot test
(``image/boot-test``) are documented commands, not CI steps (docs/rig.md). Here:
the build script's help and argument checks, the genimage configuration, and the
first-boot logic (``image/firstboot.py``) run against a temporary root with fake
``useradd``/``groupadd``/``ssh-keygen`` and the real settings check.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "image"
BUILD = IMAGE / "build"
FIRSTBOOT = IMAGE / "firstboot.py"


def _load(name: str, path: Path):
    loader = SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


fb = _load("evsectl_firstboot", FIRSTBOOT)

GOOD = """[station]
model = "EVlink Pro DC 180"
state_dir = "/var/lib/evsectl"

[ocpp]
supervision_url = "ws://10.0.2.2:9000"
box_identifier = "RIG-9"

[drivers]
meter = "mock"
"""


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


# -- image/build: help and argument checks (before root is needed) ----------------------


def _build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BUILD), *args], capture_output=True, text=True, timeout=60, check=False,
                          env=_env(), cwd=REPO)


def test_build_script_is_valid_bash_and_executable():
    assert os.access(BUILD, os.X_OK)
    subprocess.run(["bash", "-n", str(BUILD)], check=True)


def test_build_help():
    done = _build("--help")
    assert done.returncode == 0
    for word in ("--out", "--suite", "--config", "evsectl-rig.img", "root"):
        assert word in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--frobnicate"], "unknown argument"),
    (["--out"], "--out needs a value"),
    (["--suite", "Bookworm!"], "--suite"),
    (["--root-size", "3X"], "--root-size"),
    (["--boot-size", "1G"], "--boot-size"),
    (["--python-version", "three"], "--python-version"),
    (["--config", "/nonexistent/evsectl.toml"], "no such file"),
])
def test_build_rejects_bad_arguments(args, message):
    done = _build(*args)
    assert done.returncode == 2
    assert message in done.stderr


def test_build_checks_the_settings_file_before_anything_slow(tmp_path):
    bad = tmp_path / "evsectl.toml"
    bad.write_text(GOOD.replace('meter = "mock"', 'meter = "mock"\nspeed = 3'), encoding="utf-8")
    done = _build("--config", str(bad), "--python", sys.executable, "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "drivers.speed" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="runs as root here: the root check cannot be seen")
def test_build_needs_root(tmp_path):
    done = _build("--python", sys.executable, "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "must run as root" in done.stderr


def test_default_rig_settings_pass_the_check():
    done = subprocess.run([sys.executable, str(FIRSTBOOT), "--check", str(IMAGE / "evsectl.rig.toml"),
                           "--python", sys.executable], capture_output=True, text=True, env=_env(), timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_genimage_config_has_boot_and_root_by_label():
    cfg = (IMAGE / "genimage.cfg").read_text(encoding="utf-8")
    assert 'mountpoint = "/boot/firmware"' in cfg and 'label = "EVBOOT"' in cfg
    assert 'label = "evroot"' in cfg and "use-mke2fs = true" in cfg
    assert "@ROOT_SIZE@" in cfg and "@BOOT_SIZE@" in cfg
    assert 'partition-table-type = "mbr"' in cfg


def test_units_order_first_boot_before_the_charger():
    unit = (IMAGE / "evsectl-firstboot.service").read_text(encoding="utf-8")
    assert "Before=evsectl.service evsectl-hmi.service ssh.service" in unit
    assert "ExecStart=/usr/lib/evsectl/evsectl-firstboot\n" in unit
    keys = (IMAGE / "evsectl-ssh-keys.service").read_text(encoding="utf-8")
    assert "Before=ssh.service" in keys and "--ssh-keys" in keys


# -- first boot: serial number -----------------------------------------------------------


def test_with_serial_inserts_into_station():
    out = fb.with_serial(GOOD, "EVR-1234")
    assert out.splitlines()[1].startswith('serial_number = "EVR-1234"')
    assert fb.with_serial(out, "EVR-OTHER") == out  # set once, never replaced


def test_with_serial_keeps_a_set_serial_and_bad_toml():
    text = GOOD.replace("[station]\n", '[station]\nserial_number = "SN-7"\n')
    assert fb.with_serial(text, "EVR-1") == text
    broken = "[station\nmodel = 1\n"
    assert fb.with_serial(broken, "EVR-1") == broken  # the check reports the real error


def test_with_serial_adds_a_station_table():
    out = fb.with_serial('[ocpp]\nbox_identifier = "X"', "EVR-2")
    assert out.endswith('[station]\nserial_number = "EVR-2"   # set at first boot (evsectl-firstboot)\n')


def test_serial_from_the_pi_device_tree(tmp_path):
    dt = tmp_path / "sys/firmware/devicetree/base"
    dt.mkdir(parents=True)
    (dt / "serial-number").write_bytes(b"10000000abcdef12\0")
    assert fb.make_serial(tmp_path) == "EVR-ABCDEF12"
    (tmp_path / "etc/evsectl").mkdir(parents=True)
    assert fb.serial_number(tmp_path) == "EVR-ABCDEF12"
    (dt / "serial-number").write_bytes(b"ffff\0")
    assert fb.serial_number(tmp_path) == "EVR-ABCDEF12"  # stored once


def test_random_serial_without_a_device_tree(tmp_path):
    serial = fb.make_serial(tmp_path)
    assert serial.startswith("EVR-") and len(serial) == 12 and len(serial) <= 25


# -- first boot: the whole run against a temporary root ---------------------------------


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A root tree, fake account/key tools on PATH that log their arguments."""
    r = tmp_path / "root"
    for d in ("etc/evsectl", "etc/ssh", "boot/firmware", "var/lib/evsectl"):
        (r / d).mkdir(parents=True)
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    (r / "etc/group").write_text("root:x:0:\nevsectl:x:999:\n", encoding="utf-8")
    (r / "etc/evsectl/evsectl.toml").write_text(GOOD, encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("useradd", "groupadd", "ssh-keygen"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n', encoding="utf-8")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return r


def _calls(root: Path) -> list[str]:
    log = root.parent / "calls.log"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def _run(root: Path, *extra: str) -> int:
    return fb.main(["--root", str(root), "--python", sys.executable, *extra])


def test_first_boot_creates_missing_users_in_the_root(root):
    assert _run(root) == 0
    calls = _calls(root)
    assert f"groupadd --prefix {root} --system gpio" in calls
    useradds = [c for c in calls if c.startswith("useradd")]
    assert len(useradds) == 2
    assert all(f"--prefix {root} --system" in c for c in useradds)
    assert useradds[0].endswith("--groups dialout,gpio evsectl")
    assert useradds[1].endswith("--groups video,input,render,evsectl evsectl-hmi")


def test_first_boot_leaves_existing_users_alone(root):
    (root / "etc/passwd").write_text("evsectl:x:999:999::/var/lib/evsectl:/usr/sbin/nologin\n"
                                     "evsectl-hmi:x:998:998::/nonexistent:/usr/sbin/nologin\n", encoding="utf-8")
    (root / "etc/group").write_text("evsectl:x:999:\ngpio:x:997:\n", encoding="utf-8")
    assert _run(root) == 0
    assert _calls(root) == []


def test_first_boot_writes_a_serial_into_installed_settings(root):
    _run(root)
    serial = (root / "etc/evsectl/serial-number").read_text(encoding="utf-8").strip()
    assert serial.startswith("EVR-")
    assert f'serial_number = "{serial}"' in (root / "etc/evsectl/evsectl.toml").read_text(encoding="utf-8")
    before = (root / "etc/evsectl/evsectl.toml").read_text(encoding="utf-8")
    _run(root)
    assert (root / "etc/evsectl/evsectl.toml").read_text(encoding="utf-8") == before


def test_ssh_host_keys_only_when_missing(root):
    assert _run(root, "--ssh-keys") == 0
    assert _calls(root) == [f"ssh-keygen -A -f {root}"]
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("k", encoding="utf-8")
    assert _run(root, "--ssh-keys") == 0
    assert len(_calls(root)) == 1


def test_good_boot_partition_settings_are_installed(root, capsys):
    (root / "etc/evsectl/serial-number").write_text("EVR-42\n", encoding="utf-8")
    new = "\ufeff" + GOOD.replace("RIG-9", "RIG-NEW").replace("\n", "\r\n")  # a laptop's editor
    (root / "boot/firmware/evsectl.toml").write_text(new, encoding="utf-8", newline="")
    (root / "var/lib/evsectl/config-error.json").write_text("{}", encoding="utf-8")
    assert _run(root) == 0
    installed = (root / "etc/evsectl/evsectl.toml").read_text(encoding="utf-8")
    assert 'box_identifier = "RIG-NEW"' in installed and "\r" not in installed
    assert 'serial_number = "EVR-42"' in installed
    assert (root / "etc/evsectl/evsectl.toml").stat().st_mode & 0o777 == 0o640
    assert 'box_identifier = "RIG-9"' in (root / "etc/evsectl/evsectl.toml.prev").read_text(encoding="utf-8")
    assert not (root / "var/lib/evsectl/config-error.json").exists()
    assert "installed /boot/firmware/evsectl.toml" in capsys.readouterr().err
    assert fb.import_boot_config(root, "EVR-42", sys.executable) == "unchanged"


@pytest.mark.parametrize("bad, key, line", [
    (GOOD.replace('meter = "mock"', 'meter = "mock"\nspeed = 3'), "drivers.speed", 11),
    (GOOD.replace('box_identifier = "RIG-9"', 'box_identifier = "RIG/9"'), "ocpp.box_identifier", 7),
    (GOOD.replace('[drivers]', '[drivers'), None, 9),  # not TOML at all
])
def test_bad_boot_partition_settings_keep_the_previous_file(root, capsys, bad, key, line):
    (root / "etc/evsectl/serial-number").write_text("EVR-42\n", encoding="utf-8")
    _run(root)
    good = (root / "etc/evsectl/evsectl.toml").read_text(encoding="utf-8")
    capsys.readouterr()
    (root / "boot/firmware/evsectl.toml").write_text(bad, encoding="utf-8")
    assert _run(root) == 0  # a bad file never fails the boot
    assert (root / "etc/evsectl/evsectl.toml").read_text(encoding="utf-8") == good
    err = capsys.readouterr().err
    assert "<3>evsectl-firstboot: /boot/firmware/evsectl.toml rejected, keeping the previous" in err
    record = json.loads((root / "var/lib/evsectl/config-error.json").read_text(encoding="utf-8"))
    assert record["file"] == "/boot/firmware/evsectl.toml"
    assert record["key"] == key
    if key:
        assert f"key {key}" in err
        # the line of the technician's file (the serial line inserted in the copy is not counted)
        assert record["line"] == line and f"line {line}" in err
        assert f"/boot/firmware/evsectl.toml:{line}: {key}" in record["message"]
    else:
        assert record["line"] is not None and "not valid TOML" in record["message"]
    assert str(root) not in record["message"]  # names the boot file, not the temporary copy
    # once fixed, the error goes away
    (root / "boot/firmware/evsectl.toml").write_text(GOOD, encoding="utf-8")
    _run(root)
    assert not (root / "var/lib/evsectl/config-error.json").exists()


def test_no_release_to_check_with_means_rejected(root, capsys):
    (root / "boot/firmware/evsectl.toml").write_text(GOOD.replace("RIG-9", "RIG-X"), encoding="utf-8")
    assert fb.import_boot_config(root, "EVR-1", None) == "rejected"
    assert "no release installed" in capsys.readouterr().err
    assert "RIG-X" not in (root / "etc/evsectl/evsectl.toml").read_text(encoding="utf-8")


def test_release_python_is_the_current_release(tmp_path):
    assert fb.release_python(tmp_path) is None
    py = tmp_path / "var/lib/evsectl/current/venv/bin/python"
    py.parent.mkdir(parents=True)
    py.write_text("#!/bin/sh\n", encoding="utf-8")
    py.chmod(0o755)
    assert fb.release_python(tmp_path) == str(py)


def test_authorized_keys_from_the_boot_partition(root):
    (root / "boot/firmware/ssh_authorized_keys").write_text("# rig\nssh-ed25519 AAAA tech@laptop\n",
                                                            encoding="utf-8")
    _run(root)
    _run(root)
    keys = root / "root/.ssh/authorized_keys"
    assert keys.read_text(encoding="utf-8") == "ssh-ed25519 AAAA tech@laptop\n"
    assert keys.stat().st_mode & 0o777 == 0o600


def test_check_mode(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('"EVlink Pro DC 180"', '"Nope 9000"'), encoding="utf-8")
    done = subprocess.run([sys.executable, str(FIRSTBOOT), "--check", str(bad), "--python", sys.executable],
                          capture_output=True, text=True, env=_env(), timeout=60, check=False)
    assert done.returncode == 1
    assert "key station.model" in done.stderr and "line 2" in done.stderr


# -- image/boot-test ----------------------------------------------------------------------


def test_boot_test_help_and_mbr_parsing(tmp_path):
    done = subprocess.run([sys.executable, str(IMAGE / "boot-test"), "--help"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0 and "--timeout" in done.stdout
    bt = _load("evsectl_boot_test", IMAGE / "boot-test")
    mbr = bytearray(512)
    mbr[446:462] = bytes([0x80, 0, 0, 0, 0x0C, 0, 0, 0]) + struct.pack("<II", 8192, 524288)
    mbr[462:478] = bytes([0, 0, 0, 0, 0x83, 0, 0, 0]) + struct.pack("<II", 532480, 6291456)
    mbr[510:512] = b"\x55\xaa"
    img = tmp_path / "disk.img"
    img.write_bytes(bytes(mbr))
    assert bt.partitions(img) == [(0x0C, 8192 * 512, 524288 * 512), (0x83, 532480 * 512, 6291456 * 512)]
    assert 'supervision_url = "ws://10.0.2.2:9123"' in bt.settings(9123)
    missing = subprocess.run([sys.executable, str(IMAGE / "boot-test"), "--out", str(tmp_path)],
                             capture_output=True, text=True, timeout=30, check=False)
    assert missing.returncode == 2 and "run image/build" in missing.stderr
