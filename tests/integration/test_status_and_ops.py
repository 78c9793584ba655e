"""R-STATUS and R-OPS over the wire: vendor DTCs, availability, reset, trigger, data transfer."""

from __future__ import annotations

import json

import pytest

from controller.core.dtc import DTC_TABLE

BOX = "CP-TEST"


async def test_r_status_2_every_vendor_dtc_reaches_status_notification(daemon, csms):
    for dtc in DTC_TABLE.values():
        mark = csms.mark()
        daemon.fault(dtc.code, connector=1)
        raised = await csms.wait_for(
            "StatusNotification", since=mark,
            predicate=lambda r, d=dtc: r.payload["connectorId"] == 1 and r.payload.get("vendorErrorCode") == d.code,
        )
        assert raised.payload["errorCode"] == dtc.error_code
        assert raised.payload["info"] == dtc.description[:50]
        assert raised.payload["status"] == ("Faulted" if dtc.severity == "error" else "Available"), dtc
        mark = csms.mark()
        daemon.fault(dtc.code, connector=1, clear=True)
        cleared = await csms.wait_for(
            "StatusNotification", since=mark, predicate=lambda r: r.payload["connectorId"] == 1)
        assert cleared.payload["errorCode"] == "NoError" and cleared.payload["status"] == "Available"
        assert "vendorErrorCode" not in cleared.payload


async def test_r_status_2_an_error_stops_the_charge_an_alarm_does_not(daemon, csms):
    daemon.plug(1)
    daemon.badge("TAG")
    await csms.wait_for("StartTransaction")
    await daemon.until(lambda s: s["connectors"][0]["transaction_id"] == 1, what="tx id")
    daemon.fault("0x100007", connector=1)  # Insulation warning: an alarm
    await daemon.until(lambda s: s["connectors"][0]["error"] is not None, what="alarm shown")
    assert daemon.connector(1)["transaction_id"] == 1
    mark = csms.mark()
    daemon.fault("0x100202")  # Terminal emergency stop is pressed: station-wide error
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop.payload["reason"] == "EmergencyStop"
    await csms.wait_for("StatusNotification", since=mark,
                        predicate=lambda r: r.payload["connectorId"] == 0 and r.payload["status"] == "Faulted")


async def test_r_status_3_door_open_is_a_security_event(daemon, csms):
    daemon.fault("0x10020C")
    event = await csms.wait_for(
        "SecurityEventNotification", predicate=lambda r: r.payload["type"] == "TamperDetectionActivated"
    )
    assert event.payload["techInfo"].startswith("0x10020C")


async def test_r_ops_5_change_availability_scheduled_during_a_transaction_and_persisted(daemon, csms):
    daemon.plug(1)
    daemon.badge("TAG")
    await csms.wait_for("StartTransaction")
    await daemon.until(lambda s: s["connectors"][0]["transaction_id"] == 1, what="tx id")
    assert (await csms.call(BOX, "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})) == {
        "status": "Scheduled"}
    assert (await csms.call(BOX, "ChangeAvailability", {"connectorId": 2, "type": "Inoperative"})) == {
        "status": "Accepted"}
    assert (await csms.call(BOX, "ChangeAvailability", {"connectorId": 7, "type": "Inoperative"})) == {
        "status": "Rejected"}
    mark = csms.mark()
    daemon.badge("TAG")
    await csms.wait_for("StopTransaction", since=mark)
    daemon.unplug(1)
    await csms.wait_for("StatusNotification", since=mark,
                        predicate=lambda r: r.payload["connectorId"] == 1 and r.payload["status"] == "Unavailable")
    await daemon.stop()
    mark = csms.mark()
    await daemon.start()
    await csms.wait_for("BootNotification", since=mark)
    statuses = {}
    for cid in (1, 2):
        r = await csms.wait_for("StatusNotification", since=mark, predicate=lambda r, c=cid: r.payload["connectorId"] == c)
        statuses[cid] = r.payload["status"]
    assert statuses == {1: "Unavailable", 2: "Unavailable"}
    assert (await csms.call(BOX, "RemoteStartTransaction", {"idTag": "R", "connectorId": 1})) == {"status": "Rejected"}


@pytest.mark.parametrize(("kind", "reason"), [("Soft", "SoftReset"), ("Hard", "HardReset")])
async def test_r_ops_4_reset_stops_transactions_then_restarts_in_place(daemon, csms, kind, reason):
    daemon.plug(1)
    daemon.badge("TAG")
    await csms.wait_for("StartTransaction")
    await daemon.until(lambda s: s["connectors"][0]["transaction_id"] == 1, what="tx id")
    pid = daemon.proc.pid
    mark = csms.mark()
    assert (await csms.call(BOX, "Reset", {"type": kind})) == {"status": "Accepted"}
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop.payload["reason"] == reason
    boot = await csms.wait_for("BootNotification", since=mark, timeout=20)
    assert boot.seq > stop.seq
    assert daemon.proc.returncode is None and daemon.proc.pid == pid  # re-executed in place
    await daemon.wait_ready()
    await daemon.until(lambda s: s["link"] == "connected", what="boot after reset")
    assert len(csms.calls("StopTransaction")) == 1


async def test_r_ops_2_unlock_connector_not_supported(daemon, csms):
    assert (await csms.call(BOX, "UnlockConnector", {"connectorId": 1})) == {"status": "NotSupported"}


@pytest.mark.parametrize(
    ("message", "action"),
    [("BootNotification", "BootNotification"), ("Heartbeat", "Heartbeat"),
     ("StatusNotification", "StatusNotification"), ("MeterValues", "MeterValues"),
     ("DiagnosticsStatusNotification", "DiagnosticsStatusNotification"),
     ("FirmwareStatusNotification", "FirmwareStatusNotification")],
)
async def test_r_trig_trigger_message_sends_the_requested_message(daemon, csms, message, action):
    mark = csms.mark()
    assert (await csms.call(BOX, "TriggerMessage", {"requestedMessage": message, "connectorId": 1})) == {
        "status": "Accepted"}
    if action in ("StatusNotification", "MeterValues"):  # boot-time notifications may still be arriving
        sent = await csms.wait_for(action, since=mark, predicate=lambda r: r.payload["connectorId"] == 1)
        assert sent.payload["connectorId"] == 1
    else:
        await csms.wait_for(action, since=mark)


async def test_r_trig_trigger_message_bad_connector_rejected(daemon, csms):
    answer = await csms.call(BOX, "TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 5})
    assert answer == {"status": "Rejected"}


async def test_r_dt_4_data_transfer_unknown_vendor_and_message(daemon, csms):
    assert (await csms.call(BOX, "DataTransfer", {"vendorId": "com.example"})) == {"status": "UnknownVendorId"}
    assert (await csms.call(BOX, "DataTransfer", {"vendorId": "com.se.cost", "messageId": "Nope"})) == {
        "status": "UnknownMessageId"}


async def test_r_dt_1_cost_updated_reaches_the_charger_state(daemon, csms):
    data = {"currency": "EUR", "method": "CostUpdated", "connectID": 1, "totalCost": 12.5, "TransactionId": 7}
    answer = await csms.call(BOX, "DataTransfer",
                             {"vendorId": "com.se.cost", "messageId": "CostUpdated", "data": json.dumps(data)})
    assert answer["status"] == "Accepted"
    cost = daemon.connector(1)["cost"]
    assert cost["total_cost"] == 12.5 and cost["currency"] == "EUR" and cost["transaction_id"] == 7
