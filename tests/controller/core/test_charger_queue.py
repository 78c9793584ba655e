"""R-TX 4: OfflineTxMsgQueueEnable, with the scenario rig of test_charger."""

from __future__ import annotations

import pytest
from test_charger import make_rig  # noqa: F401 - the fixture

from controller.core import events as ev


@pytest.mark.parametrize(("queue_enable", "live_beside_backlog"), [(True, False), (False, True)])
def test_r_tx_4_offline_tx_msg_queue_enable(make_rig, queue_enable, live_beside_backlog):  # noqa: F811
    rig = make_rig(OfflineTxMsgQueueEnable=queue_enable, MeterValueSampleInterval=10)
    rig.boot()
    rig.plug(1)
    rig.feed(ev.TagPresented("TAG"))
    assert rig.session(1) is not None and rig.session(1).transaction_id is not None
    rig.auto_deliver = False  # a backlog the CSMS has not taken yet
    rig.store.enqueue("SecurityEventNotification", {"type": "X", "timestamp": "2026-01-01T00:00:00.000Z"})
    mark = rig.mark()
    rig.advance(10)
    direct = [m for m in rig.sent("MeterValues", mark) if not m.queued]
    queued_mv = [r for r in rig.store.pending() if r.action == "MeterValues"]
    assert bool(direct) == live_beside_backlog
    assert bool(queued_mv) == (not live_beside_backlog)
