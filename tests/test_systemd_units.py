"""R-OPSYS 1: the units are valid and hardened (systemd-analyze, on a throw-away root)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNITS = ("evsectl.service", "evsectl-hmi.service")
ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (.ci/setup installs it)")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A root with the system's own unit files, our units and our launcher."""
    r = tmp_path_factory.mktemp("root")
    (r / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", r / "usr/lib/systemd/system", symlinks=True)
    (r / "usr/lib/evsectl").mkdir(parents=True)
    shutil.copy2(REPO / "systemd/evsectl-launch", r / "usr/lib/evsectl/evsectl-launch")
    (r / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy2(REPO / "systemd" / unit, r / "etc/systemd/system" / unit)
    return r


@pytest.mark.parametrize("unit", UNITS)
def test_r_opsys_1_unit_verifies_clean(root, unit):
    result = subprocess.run(
        [ANALYZE, "verify", f"--root={root}", f"/etc/systemd/system/{unit}"], capture_output=True, text=True,
    )
    # systemd-analyze verify exits 0 even on unknown keys: any output is a finding
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr.strip() == "", result


@pytest.mark.parametrize(("unit", "limit"), [("evsectl.service", 3.0), ("evsectl-hmi.service", 3.0)])
def test_r_opsys_1_security_exposure_within_limit(root, unit, limit):
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", f"--root={root}", f"/etc/systemd/system/{unit}"],
        capture_output=True, text=True,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout + result.stderr)
    assert m, result.stdout[-2000:] + result.stderr[-2000:]
    assert float(m.group(1)) <= limit
