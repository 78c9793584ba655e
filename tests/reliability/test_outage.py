"""R-TX 4 / R-SEC 4: the CSMS away for hours during transactions, then back (a 3-hour smoke of
``bench/outage.py``, every OfflineTxMsgQueueEnable x CallMsgInOrder combination, and its
disk-bound scenario; the 24-hour run is ``python bench/outage.py``)."""

from __future__ import annotations

import time

import outage
import pytest


def failures(result: outage.Result) -> str:
    return "\n".join(str(f) for f in result.failures)


@pytest.mark.timeout(120)
async def test_r_tx_4_outage_3h_smoke_every_queue_and_order_combination() -> None:
    t0 = time.monotonic()
    result = await outage.run(hours=3, seed=2026, disk=False)
    assert not result.failures, failures(result)
    assert [s.name for s in result.scenarios] == [
        "Queue=true InOrder=true", "Queue=true InOrder=false", "Queue=false InOrder=true", "Queue=false InOrder=false",
    ]
    for s in result.scenarios:
        assert s.transactions == 3  # one per connector before the outage, one started during it
        assert s.offline_meter_values >= 3 * 3600 // outage.OFFLINE_S  # at 900 s while the CSMS was away
        assert s.meter_values > s.offline_meter_values  # and at 60 s while it was there
        assert s.frames > 0  # the in-flight (CallMsgInOrder) check saw the whole log
        assert s.resent >= 1  # the MeterValues the CSMS left unanswered during the replay came again
    assert time.monotonic() - t0 < 60


@pytest.mark.timeout(120)
async def test_r_tx_4_r_sec_4_queue_bound_drops_oldest_security_events_first_never_start_stop() -> None:
    result = await outage.run(hours=1, seed=7, combos=(), disk=True)
    assert not result.failures, failures(result)
    (disk,) = result.scenarios
    assert disk.dropped > outage.DISK_BOUND // 2  # both outages went well past the bound
    assert disk.transactions >= 3 and disk.frames > 0
