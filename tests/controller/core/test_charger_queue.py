"""R-TX 4: OfflineTxMsgQueueEnable, with the scenario rig of test_charger."""

from __future__ import annotations

import pytest
from fakes import sampled_value
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


def test_regression_security_events_and_starts_respect_the_queue_bound(make_rig):  # noqa: F811
    """Only a queued MeterValues trimmed the queue: security events raised offline (a door
    opened again and again) and Start/StopTransaction grew it past its bound."""
    rig = make_rig(SecurityEventsEnabled=True)
    rig.charger.max_queued_messages = 5
    rig.feed(ev.Started())  # StartupOfTheDevice, queued: the CSMS was never reached
    for _ in range(8):
        rig.advance(30)
        rig.feed(ev.FaultRaised("0x10020C", 2))  # TamperDetectionActivated, queued
        rig.feed(ev.FaultCleared("0x10020C", 2))
    events = [r.payload["timestamp"] for r in rig.store.pending()]
    assert rig.store.count() == 5 and events == sorted(events)
    newest = events
    rig.plug(1)
    rig.badge("OFFLINE")  # AllowOfflineTxForUnknownId: starts offline, StartTransaction queued
    assert rig.session(1) is not None
    rows = rig.store.pending()
    assert len(rows) == 5
    # the oldest security event went for the StartTransaction, which is never dropped
    assert [r.action for r in rows] == ["SecurityEventNotification"] * 4 + ["StartTransaction"]
    assert [r.payload["timestamp"] for r in rows[:4]] == newest[1:]


def test_regression_meter_values_sent_beside_the_backlog_count_as_reported(make_rig):  # noqa: F811
    """OfflineTxMsgQueueEnable=false: a MeterValues sent at once beside the backlog did not
    count as reported, so a meter that lost its last energy (power cut) could give a
    meterStop below the energy the CSMS had already seen."""
    rig = make_rig(OfflineTxMsgQueueEnable=False, MeterValueSampleInterval=10)
    rig.boot()
    rig.plug(1)
    rig.feed(ev.TagPresented("TAG"))
    assert rig.session(1) is not None and rig.session(1).transaction_id is not None
    rig.auto_deliver = False  # a backlog the CSMS has not taken yet
    rig.store.enqueue("SecurityEventNotification", {"type": "X", "timestamp": "2026-01-01T00:00:00.000Z"})
    rig.energy[1] = 12_345
    mark = rig.mark()
    rig.advance(10)
    (direct,) = [m for m in rig.sent("MeterValues", mark) if not m.queued]
    sent_wh = int(sampled_value(direct.payload["meterValue"][0], "Energy.Active.Import.Register")["value"])
    assert sent_wh == 12_345
    rig.energy[1] = 12_000  # the register lost its last energy
    rig.feed(ev.TagPresented("TAG"))
    stop = next(r for r in rig.store.pending() if r.action == "StopTransaction")
    assert stop.payload["meterStop"] >= sent_wh


def test_regression_meter_values_sent_beside_the_backlog_survive_a_lost_link(make_rig):  # noqa: F811
    """OfflineTxMsgQueueEnable=false: a MeterValues sent at once beside the backlog was not
    on disk; when the link went before its answer (a flapping link right after an outage)
    it was lost for good. It now stays queued until answered, and is delivered later."""
    rig = make_rig(OfflineTxMsgQueueEnable=False, MeterValueSampleInterval=10)
    rig.boot()
    rig.plug(1)
    rig.feed(ev.TagPresented("TAG"))
    tx_id = rig.session(1).transaction_id
    rig.auto_deliver = False  # a backlog the CSMS has not taken yet
    rig.store.enqueue("SecurityEventNotification", {"type": "X", "timestamp": "2026-01-01T00:00:00.000Z"})
    rig.auto_answer.discard("MeterValues")
    mark = rig.mark()
    rig.advance(10)
    (direct,) = [m for m in rig.sent("MeterValues", mark) if not m.queued]
    assert direct.payload["transactionId"] == tx_id
    call = rig.pop_call("MeterValues")
    rig.feed(ev.CallFailed(call.ref, "MeterValues", "offline"))  # the link went first
    rig.feed(ev.LinkDown())
    rig.auto_answer.add("MeterValues")
    rig.auto_deliver = True
    rig.boot()
    delivered = [m for m in rig.sent("MeterValues", mark) if m.queued]
    assert [m.payload["meterValue"] for m in delivered] == [direct.payload["meterValue"]]
    assert delivered[0].payload["transactionId"] == tx_id
    assert rig.store.count() == 0


def test_r_tx_4_meter_values_answered_beside_the_backlog_are_not_sent_again(make_rig):  # noqa: F811
    rig = make_rig(OfflineTxMsgQueueEnable=False, MeterValueSampleInterval=10)
    rig.boot()
    rig.plug(1)
    rig.feed(ev.TagPresented("TAG"))
    rig.auto_deliver = False
    rig.store.enqueue("SecurityEventNotification", {"type": "X", "timestamp": "2026-01-01T00:00:00.000Z"})
    mark = rig.mark()
    rig.advance(10)  # sent beside the backlog and answered at once (the rig answers MeterValues)
    rig.auto_deliver = True
    rig.deliver()
    assert [m.queued for m in rig.sent("MeterValues", mark)] == [False]
    assert [m.action for m in rig.sent(since=mark) if m.queued] == ["SecurityEventNotification"]
