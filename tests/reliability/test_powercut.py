"""R-TX 4 / R-MODEL 3: SIGKILL the real daemon across transaction life cycles (30-cycle smoke
of ``bench/powercut.py``; the 500-cycle run is ``python bench/powercut.py``)."""

from __future__ import annotations

import time

import powercut
import pytest


@pytest.mark.timeout(150)
async def test_r_tx_4_power_cut_smoke_30_cycles_pro_dc() -> None:
    t0 = time.monotonic()
    result = await powercut.run(cycles=30, seed=2026)
    assert result.cycles == 30 and result.kills == 30
    assert result.transactions > 0 and result.messages_checked > 0
    assert not result.failures, "\n".join(str(f) for f in result.failures)
    assert time.monotonic() - t0 < 90


@pytest.mark.timeout(120)
async def test_r_model_3_power_cut_smoke_starcharge_power_fail_path() -> None:
    result = await powercut.run(cycles=12, seed=7, model="Schneider StarCharge Fast 60")
    assert result.per_scenario.get("power_fail", 0) > 0
    assert not result.failures, "\n".join(str(f) for f in result.failures)
