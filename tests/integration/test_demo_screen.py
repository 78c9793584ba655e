"""`evsectl demo` shows the whole screen working: tariff picture, CostUpdated, the HMI process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from daemon_harness import REPO

pytestmark = pytest.mark.timeout(90)


def test_demo_sends_a_tariff_and_running_costs_and_starts_the_screen_headless():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = subprocess.run([sys.executable, "-m", "controller", "demo", "--seconds", "7"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=80)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "screen headless (no display)" in out.stdout
    assert '"downloadStatus": "Downloaded"' in out.stdout
    assert "CSMS  CostUpdated" in out.stdout
