"""R-TX 4 offline queueing and R-MODEL 3 power loss, with the real daemon."""

from __future__ import annotations

from controller.csms import CentralSystem

BOX = "CP-TEST"


async def test_r_tx_4_offline_session_is_queued_and_delivered_in_order(daemon, csms):
    port = csms.port
    await csms.stop()
    await daemon.until(lambda s: s["link"] != "connected", what="link down")
    daemon.plug(1)
    daemon.badge("OFFLINE1")  # AllowOfflineTxForUnknownId = true: starts offline
    await daemon.until(lambda s: s["connectors"][0]["status"] == "Charging", what="offline start")
    daemon.advance(900)  # disconnectedMeterValueSampleInterval
    await daemon.until(lambda s: s["queued_messages"] >= 2, what="a queued MeterValues")
    daemon.advance(900)
    await daemon.until(lambda s: s["queued_messages"] >= 3, what="a second MeterValues")
    daemon.badge("OFFLINE1")
    await daemon.until(lambda s: s["queued_messages"] >= 4 and s["connectors"][0]["transaction_id"] is None,
                       what="offline stop")
    async with CentralSystem("127.0.0.1", port) as again:
        await again.wait_for("BootNotification", timeout=15)
        stop = await again.wait_for("StopTransaction", timeout=15)
        tx_messages = [r for r in again.calls() if r.action in ("StartTransaction", "MeterValues", "StopTransaction")]
        assert [r.action for r in tx_messages] == ["StartTransaction", "MeterValues", "MeterValues", "StopTransaction"]
        start = tx_messages[0]
        tx_id = 1  # the new CSMS's first transaction id
        assert all(r.payload.get("transactionId") == tx_id for r in tx_messages[1:])
        energies = [int(next(v["value"] for v in r.payload["meterValue"][0]["sampledValue"]
                             if v["measurand"] == "Energy.Active.Import.Register")) for r in tx_messages[1:3]]
        assert start.payload["meterStart"] <= energies[0] <= energies[1] <= stop.payload["meterStop"]
        # timestamps are those of the events, not of the delivery
        assert start.payload["timestamp"] < tx_messages[1].payload["meterValue"][0]["timestamp"]
        await daemon.until(lambda s: s["queued_messages"] == 0, what="queue empty")


async def test_r_model_3_kill_9_during_a_transaction_then_restart_sends_power_loss(daemon, csms):
    daemon.plug(1)
    daemon.badge("TAG")
    start = await csms.wait_for("StartTransaction")
    await daemon.until(lambda s: s["connectors"][0]["transaction_id"] == 1, what="tx id")
    daemon.advance(10)
    seen = await daemon.until(lambda s: s["connectors"][0]["meter_wh"] > start.payload["meterStart"]
                              and s["connectors"][0]["meter_wh"], what="energy")
    await daemon.kill9()
    mark = csms.mark()
    await daemon.start()
    stop = await csms.wait_for("StopTransaction", since=mark, timeout=15)
    assert stop.payload["transactionId"] == 1
    assert stop.payload["reason"] == "PowerLoss"
    assert stop.payload["meterStop"] >= start.payload["meterStart"]
    assert stop.payload["meterStop"] >= seen - 200  # the mock saves its register once a second
    await daemon.until(lambda s: s["queued_messages"] == 0, what="delivered")
    # delivered exactly once, also after another restart
    await daemon.stop()
    await daemon.start()
    await csms.wait_for("BootNotification", since=stop.seq)
    await daemon.until(lambda s: s["link"] == "connected", what="boot")
    assert len(csms.calls("StopTransaction")) == 1


async def test_r_model_3_starcharge_stops_before_shutdown_on_power_fail(csms, make_daemon):
    d = make_daemon(csms.url, model="Schneider StarCharge Fast 180")
    await d.start()
    await d.until(lambda s: s["link"] == "connected", what="boot")
    d.plug(2)
    d.badge("TAG")
    await csms.wait_for("StartTransaction")
    await d.until(lambda s: s["connectors"][1]["transaction_id"] == 1, what="tx id")
    d.rig(cmd="power-fail")
    stop = await csms.wait_for("StopTransaction")
    assert stop.payload["reason"] == "PowerLoss" and stop.payload["transactionId"] == 1
    assert await d.wait_exit() == 0  # the box is gone
    mark = csms.mark()
    await d.start()  # mains back: nothing left to stop, nothing sent twice
    await csms.wait_for("BootNotification", since=mark)
    await d.until(lambda s: s["link"] == "connected", what="boot")
    await csms.call(BOX, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    await csms.wait_for("Heartbeat", since=mark)
    assert len(csms.calls("StopTransaction")) == 1


async def test_r_model_3_starcharge_power_fail_while_offline_stop_sent_at_next_boot(csms, make_daemon):
    d = make_daemon(csms.url, model="Schneider StarCharge Fast 60")
    await d.start()
    await d.until(lambda s: s["link"] == "connected", what="boot")
    d.plug(1)
    d.badge("TAG")
    await csms.wait_for("StartTransaction")
    await d.until(lambda s: s["connectors"][0]["transaction_id"] == 1, what="tx id")
    port = csms.port
    await csms.stop()
    await d.until(lambda s: s["link"] != "connected", what="offline")
    d.rig(cmd="power-fail")
    assert await d.wait_exit() == 0
    async with CentralSystem("127.0.0.1", port) as again:
        await d.start()
        stop = await again.wait_for("StopTransaction", timeout=15)
        assert stop.payload["reason"] == "PowerLoss" and stop.payload["transactionId"] == 1


async def test_r_model_3_pro_dc_power_fail_closes_the_transaction_at_next_boot(daemon, csms):
    daemon.plug(1)
    daemon.badge("TAG")
    await csms.wait_for("StartTransaction")
    await daemon.until(lambda s: s["connectors"][0]["transaction_id"] == 1, what="tx id")
    mark = csms.mark()
    daemon.rig(cmd="power-fail")
    assert await daemon.wait_exit() == 0
    assert [r for r in csms.calls("StopTransaction") if r.seq > mark] == []  # no hold-up on Pro DC
    await daemon.start()
    stop = await csms.wait_for("StopTransaction", since=mark, timeout=15)
    assert stop.payload["reason"] == "PowerLoss"


async def test_regression_queued_message_whose_answer_never_came_is_sent_again(csms, make_daemon):
    """R-TX 4: a queued StopTransaction the CSMS never answered (the call timed out on a link
    that stayed up) waited for a next queued message that never came: nothing retried it."""
    d = make_daemon(csms.url)
    d.config.write_text(d.config.read_text().replace("response_timeout_s = 5", "response_timeout_s = 1"))
    await d.start()
    await d.until(lambda s: s["link"] == "connected", what="boot")
    d.plug(1)
    d.badge("TAG")
    await csms.wait_for("StartTransaction")
    await d.until(lambda s: s["connectors"][0]["transaction_id"] == 1, what="tx id")
    csms.respond("StopTransaction", no_reply=True, once=True)
    mark = csms.mark()
    d.badge("TAG")
    first = await csms.wait_for("StopTransaction", since=mark)
    await d.until(lambda s: "queued StopTransaction #" in d.log_path.read_text(), timeout_s=10,
                  what="the call timed out")
    d.advance(10)  # TransactionMessageRetryInterval (the link is up: no reconnect will kick it)
    again = await csms.wait_for("StopTransaction", since=first.seq, timeout=10)
    assert again.payload == first.payload
    await d.until(lambda s: s["queued_messages"] == 0, what="delivered")
    assert len([r for r in csms.calls("StopTransaction") if r.seq > mark]) == 2  # the same message, twice
