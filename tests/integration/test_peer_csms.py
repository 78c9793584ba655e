"""The real daemon against the independent peer CSMS (node, ocpp-rpc, strict schemas).

The peer validates every frame both ways against the OCPP 1.6 (+ security extension)
JSON schemas, including ``date-time`` formats, which the Python ``ocpp`` library does not
check. Every test ends with ``peer_csms.assert_clean(BOX)``: no strictValidationFailure
and no badMessage for our charger.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from daemon_harness import Daemon
from peer_harness import PeerCallError, PeerCsms

from controller.core.timefmt import parse_rfc3339

pytestmark = pytest.mark.peer

BOX = "CP-TEST"
VENDOR = "Schneider Electric"
MODEL = "EVlink Pro DC 180"
SERIAL = "SN-TEST-1"
MEASURANDS = {
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Power.Offered",
    "SoC",
    "Current.Import",
    "Current.Offered",
    "Voltage",
}


async def boot(peer: PeerCsms, d: Daemon) -> dict[str, Any]:
    """Start ``d`` and wait until the peer accepted its boot; return the BootNotification event."""
    mark = await peer.mark()
    await d.start()
    event = await peer.wait_event(
        type="callIn", method="BootNotification", identity=BOX, since=mark, timeout_s=15
    )
    await d.until(lambda s: s["link"] == "connected", what="boot accepted by the peer")
    return event


@pytest.fixture
async def peer_daemon(
    peer_csms: PeerCsms, make_daemon: Callable[..., Daemon]
) -> AsyncIterator[Daemon]:
    """The daemon connected to the peer CSMS with boot accepted and every connector reported."""
    d = make_daemon(peer_csms.url)
    mark = await peer_csms.mark()
    await boot(peer_csms, d)
    for cid in (0, 1, 2):
        await status_event(peer_csms, cid, since=mark)
    yield d


async def calls_in(
    peer: PeerCsms, method: str | None = None, since: int = 0
) -> list[dict[str, Any]]:
    return await peer.events(type="callIn", identity=BOX, method=method, since=since)


async def wait_call(
    peer: PeerCsms,
    method: str,
    since: int = 0,
    predicate: Callable[[dict[str, Any]], bool] | None = None,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """The first CALL ``method`` from the charger after ``since`` matching ``predicate``."""
    end = asyncio.get_running_loop().time() + timeout_s
    last = since
    while True:
        left = end - asyncio.get_running_loop().time()
        if left <= 0:
            seen = [(e["method"], e["params"]) for e in await calls_in(peer, since=since)]
            raise AssertionError(
                f"no {method} matching the predicate after #{since}; calls seen: {seen}"
            )
        try:
            event = await peer.wait_event(
                type="callIn", identity=BOX, method=method, since=last, timeout_s=max(0.05, left)
            )
        except AssertionError:
            continue
        last = event["seq"]
        if predicate is None or predicate(event["params"]):
            return event


async def status_event(
    peer: PeerCsms, cid: int, status: str | None = None, since: int = 0
) -> dict[str, Any]:
    return await wait_call(
        peer,
        "StatusNotification",
        since,
        lambda p: p["connectorId"] == cid and (status is None or p["status"] == status),
    )


async def barrier(peer: PeerCsms) -> int:
    """A full round trip (TriggerMessage Heartbeat, then the Heartbeat): whatever the
    charger had to send before it has been sent. Returns the Heartbeat's seq."""
    mark = await peer.mark()
    assert await peer.call(BOX, "TriggerMessage", {"requestedMessage": "Heartbeat"}) == {
        "status": "Accepted"
    }
    return (await wait_call(peer, "Heartbeat", mark))["seq"]


def check_timestamp(text: str) -> None:
    """Our wire format: RFC 3339 UTC with milliseconds and Z."""
    parse_rfc3339(text)
    assert len(text) == 24 and text.endswith("Z") and text[10] == "T", text


# ---------------------------------------------------------------- R-BOOT


async def test_r_boot_1_2_peer_boot_accepted_clean(peer_csms, make_daemon):
    d = make_daemon(peer_csms.url)
    event = await boot(peer_csms, d)
    params = event["params"]
    assert params["chargePointVendor"] == VENDOR
    assert params["chargePointModel"] == MODEL
    assert params["chargePointSerialNumber"] == SERIAL
    assert isinstance(params["firmwareVersion"], str) and params["firmwareVersion"]
    connect = await peer_csms.events(type="connect", identity=BOX)
    assert connect and connect[-1]["protocol"] == "ocpp1.6"
    # after Accepted, every connector (0 = the station) is reported, timestamps valid
    for cid in (0, 1, 2):
        status = await status_event(peer_csms, cid, since=event["seq"])
        assert status["params"]["status"] == "Available"
        assert status["params"]["errorCode"] == "NoError"
        check_timestamp(status["params"]["timestamp"])
    await peer_csms.assert_clean(BOX)


async def test_r_boot_2_peer_pending_then_accepted(peer_csms, make_daemon):
    await peer_csms.respond("BootNotification", {"status": "Pending", "interval": 30}, once=True)
    d = make_daemon(peer_csms.url)
    mark = await peer_csms.mark()
    await d.start()
    first = await wait_call(peer_csms, "BootNotification", mark, timeout_s=15)
    await d.until(lambda s: s["link"] == "pending", what="Pending")
    # while Pending the charger answers the CSMS but sends nothing of its own
    answer = await peer_csms.call(BOX, "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert answer["configurationKey"][0]["key"] == "HeartbeatInterval"
    d.plug(1)
    d.advance(29)
    await peer_csms.call(BOX, "GetConfiguration", {"key": ["MeterValueSampleInterval"]})
    assert [e["method"] for e in await calls_in(peer_csms, since=first["seq"])] == []
    d.advance(2)  # past the interval: BootNotification again, Accepted this time
    second = await wait_call(peer_csms, "BootNotification", first["seq"])
    assert second["params"] == first["params"]
    await d.until(lambda s: s["link"] == "connected", what="accepted")
    plugged = await status_event(peer_csms, 1, "Preparing", since=second["seq"])
    check_timestamp(plugged["params"]["timestamp"])
    await peer_csms.assert_clean(BOX)


async def test_r_boot_3_peer_heartbeat_triggered_and_on_interval(peer_daemon, peer_csms):
    mark = await peer_csms.mark()
    assert await peer_csms.call(BOX, "TriggerMessage", {"requestedMessage": "Heartbeat"}) == {
        "status": "Accepted"
    }
    triggered = await wait_call(peer_csms, "Heartbeat", mark)
    assert triggered["params"] == {}
    # the peer answers interval 300 (HEARTBEAT_INTERVAL default): the charger took it over
    conf = await peer_csms.call(BOX, "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert conf["configurationKey"][0]["value"] == "300"
    peer_daemon.advance(301)
    periodic = await wait_call(peer_csms, "Heartbeat", triggered["seq"])
    peer_daemon.advance(301)
    second = await wait_call(peer_csms, "Heartbeat", periodic["seq"])
    # then the key: a changed HeartbeatInterval takes effect at once
    assert await peer_csms.call(
        BOX, "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "120"}
    ) == {"status": "Accepted"}
    peer_daemon.advance(121)
    third = await wait_call(peer_csms, "Heartbeat", second["seq"])
    peer_daemon.advance(121)
    await wait_call(peer_csms, "Heartbeat", third["seq"])
    await peer_csms.assert_clean(BOX)


# ---------------------------------------------------------------- R-TX


async def test_r_tx_1_2_peer_badge_session_with_meter_values(peer_daemon, peer_csms):
    d = peer_daemon
    mark = await peer_csms.mark()
    d.plug(1)
    preparing = await status_event(peer_csms, 1, "Preparing", since=mark)
    check_timestamp(preparing["params"]["timestamp"])
    d.badge("AABBCCDD")
    auth = await wait_call(peer_csms, "Authorize", mark)
    assert auth["params"] == {"idTag": "AABBCCDD"}
    start = await wait_call(peer_csms, "StartTransaction", mark)
    sp = start["params"]
    assert (
        sp["connectorId"] == 1 and sp["idTag"] == "AABBCCDD" and isinstance(sp["meterStart"], int)
    )
    check_timestamp(sp["timestamp"])
    c = await d.until(
        lambda s: s["connectors"][0]["transaction_id"] is not None and s["connectors"][0],
        what="transaction id",
    )
    tx_id = c["transaction_id"]
    await status_event(peer_csms, 1, "Charging", since=mark)
    d.advance(3)
    await d.until(lambda s: s["connectors"][0]["power_w"] > 0, what="power flowing")
    before = await peer_csms.mark()
    d.advance(61)  # past MeterValueSampleInterval (60 s)
    mv = await wait_call(peer_csms, "MeterValues", before)
    mp = mv["params"]
    assert mp["connectorId"] == 1 and mp["transactionId"] == tx_id
    assert len(mp["meterValue"]) >= 1
    for value in mp["meterValue"]:
        check_timestamp(value["timestamp"])
        names = {s.get("measurand", "Energy.Active.Import.Register") for s in value["sampledValue"]}
        assert "Energy.Active.Import.Register" in names and names <= MEASURANDS
        for sample in value["sampledValue"]:
            assert sample.get("context") == "Sample.Periodic"
            assert sample.get("format", "Raw") == "Raw"
            float(sample["value"])
        energy = next(
            s
            for s in value["sampledValue"]
            if s.get("measurand", "Energy.Active.Import.Register")
            == "Energy.Active.Import.Register"
        )
        assert energy.get("unit", "Wh") == "Wh"
        assert float(energy["value"]) >= sp["meterStart"]
    before = await peer_csms.mark()
    d.badge("AABBCCDD")
    stop = await wait_call(peer_csms, "StopTransaction", before)
    st = stop["params"]
    assert st["transactionId"] == tx_id and st["reason"] == "Local" and st["idTag"] == "AABBCCDD"
    assert st["meterStop"] >= sp["meterStart"]
    check_timestamp(st["timestamp"])
    for value in st.get("transactionData", []):
        check_timestamp(value["timestamp"])
    await status_event(peer_csms, 1, "Finishing", since=before)
    d.unplug(1)
    await status_event(peer_csms, 1, "Available", since=before)
    await barrier(peer_csms)
    await peer_csms.assert_clean(BOX)


async def test_r_tx_3_peer_stop_txn_sampled_data_in_transaction_data(peer_csms, make_daemon):
    d = make_daemon(
        peer_csms.url,
        keys={"StopTxnSampledData": "Energy.Active.Import.Register,Power.Active.Import"},
    )
    await boot(peer_csms, d)
    mark = await peer_csms.mark()
    d.plug(2)
    d.badge("TAG2")
    await wait_call(peer_csms, "StartTransaction", mark)
    await d.until(lambda s: s["connectors"][1]["transaction_id"] is not None, what="tx id")
    d.advance(3)
    d.advance(61)
    await wait_call(peer_csms, "MeterValues", mark)
    d.badge("TAG2")
    stop = await wait_call(peer_csms, "StopTransaction", mark)
    data = stop["params"]["transactionData"]
    contexts = [s.get("context") for value in data for s in value["sampledValue"]]
    assert "Transaction.Begin" in contexts and "Transaction.End" in contexts
    for value in data:
        check_timestamp(value["timestamp"])
    await barrier(peer_csms)
    await peer_csms.assert_clean(BOX)


# ---------------------------------------------------------------- R-AUTH 5 remote start/stop


async def test_r_auth_5_peer_remote_start_and_stop(peer_daemon, peer_csms):
    d = peer_daemon
    d.plug(1)
    mark = await peer_csms.mark()
    answer = await peer_csms.call(
        BOX, "RemoteStartTransaction", {"idTag": "REMOTE1", "connectorId": 1}
    )
    assert answer == {"status": "Accepted"}
    auth = await wait_call(peer_csms, "Authorize", mark)
    start = await wait_call(peer_csms, "StartTransaction", mark)
    assert auth["seq"] < start["seq"]
    assert start["params"]["idTag"] == "REMOTE1" and start["params"]["connectorId"] == 1
    tx_id = await d.until(lambda s: s["connectors"][0]["transaction_id"], what="tx id")
    assert await peer_csms.call(BOX, "RemoteStopTransaction", {"transactionId": tx_id + 1000}) == {
        "status": "Rejected"
    }
    before = await peer_csms.mark()
    assert await peer_csms.call(BOX, "RemoteStopTransaction", {"transactionId": tx_id}) == {
        "status": "Accepted"
    }
    stop = await wait_call(peer_csms, "StopTransaction", before)
    assert stop["params"]["transactionId"] == tx_id and stop["params"]["reason"] == "Remote"
    assert "idTag" not in stop["params"]
    await barrier(peer_csms)
    await peer_csms.assert_clean(BOX)


async def test_r_auth_5_peer_remote_start_rejections(peer_daemon, peer_csms):
    for cid in (0, 3):
        answer = await peer_csms.call(
            BOX, "RemoteStartTransaction", {"idTag": "R", "connectorId": cid}
        )
        assert answer == {"status": "Rejected"}
    await peer_csms.assert_clean(BOX)


# ---------------------------------------------------------------- R-CONF


async def test_r_conf_2_peer_get_configuration_all_keys(peer_daemon, peer_csms):
    answer = await peer_csms.call(BOX, "GetConfiguration", {})
    keys = {item["key"]: item for item in answer["configurationKey"]}
    assert len(answer["configurationKey"]) == len(keys), "a key reported twice"
    assert "unknownKey" not in answer
    assert len(keys) <= 200  # GetConfigurationMaxKeys
    for name in (
        "HeartbeatInterval",
        "MeterValueSampleInterval",
        "NumberOfConnectors",
        "SupervisionUrl",
        "BoxIdentifier",
        "TransactionMessageAttempts",
        "FreeCharging",
    ):
        assert name in keys, name
    assert "AuthorizationKey" not in keys  # write-only
    assert keys["NumberOfConnectors"] == {
        "key": "NumberOfConnectors",
        "readonly": True,
        "value": "2",
    }
    assert keys["HeartbeatInterval"]["readonly"] is False
    assert keys["BoxIdentifier"]["value"] == BOX
    some = await peer_csms.call(
        BOX, "GetConfiguration", {"key": ["heartbeatinterval", "NoSuchKey"]}
    )
    assert [item["key"] for item in some["configurationKey"]] == ["HeartbeatInterval"]
    assert some["unknownKey"] == ["NoSuchKey"]
    await peer_csms.assert_clean(BOX)


@pytest.mark.parametrize(
    ("key", "value", "status"),
    [
        ("MeterValueSampleInterval", "30", "Accepted"),
        ("heartbeatinterval", "120", "Accepted"),
        ("DefaultIdTag", "X" * 21, "Rejected"),
        ("MeterValueSampleInterval", "-1", "Rejected"),
        ("NumberOfConnectors", "3", "Rejected"),
        ("NoSuchKey", "1", "NotSupported"),
        ("BoxIdentifier", "CP-OTHER", "RebootRequired"),
    ],
)
async def test_r_conf_3_peer_change_configuration(peer_daemon, peer_csms, key, value, status):
    before = await peer_csms.call(BOX, "GetConfiguration", {"key": [key]})
    answer = await peer_csms.call(BOX, "ChangeConfiguration", {"key": key, "value": value})
    assert answer == {"status": status}
    after = await peer_csms.call(BOX, "GetConfiguration", {"key": [key]})
    if status in ("Accepted", "RebootRequired"):
        assert after["configurationKey"][0]["value"] == value
    else:
        assert after == before
    await peer_csms.assert_clean(BOX)


# ---------------------------------------------------------------- R-TRIG


TRIGGERED = [
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
]


@pytest.mark.parametrize("requested", TRIGGERED)
async def test_r_trig_peer_trigger_message_every_requested_message(
    peer_daemon, peer_csms, requested
):
    mark = await peer_csms.mark()
    answer = await peer_csms.call(BOX, "TriggerMessage", {"requestedMessage": requested})
    assert answer == {"status": "Accepted"}
    event = await wait_call(peer_csms, requested, mark)
    params = event["params"]
    if requested == "StatusNotification":
        check_timestamp(params["timestamp"])
    if requested == "MeterValues":
        for value in params["meterValue"]:
            check_timestamp(value["timestamp"])
            assert {s.get("context") for s in value["sampledValue"]} == {"Trigger"}
    if requested in ("DiagnosticsStatusNotification", "FirmwareStatusNotification"):
        assert params == {"status": "Idle"}
    # the answers for every connector leave one after another: a Heartbeat triggered now
    # comes after the last of them (one CALL in flight at a time, in order)
    hb_mark = await peer_csms.mark()
    await peer_csms.call(BOX, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    await wait_call(peer_csms, "Heartbeat", hb_mark)
    # with a connector id
    mark = await peer_csms.mark()
    answer = await peer_csms.call(
        BOX, "TriggerMessage", {"requestedMessage": requested, "connectorId": 2}
    )
    assert answer == {"status": "Accepted"}
    event = await wait_call(peer_csms, requested, mark)
    if requested in ("StatusNotification", "MeterValues"):
        assert event["params"]["connectorId"] == 2
    await barrier(peer_csms)
    assert await peer_csms.call(
        BOX, "TriggerMessage", {"requestedMessage": requested, "connectorId": 7}
    ) == {"status": "Rejected"}
    # a triggered BootNotification does not re-register: still connected, no second boot cycle
    assert peer_daemon.status()["link"] == "connected"
    await peer_csms.assert_clean(BOX)


async def test_r_trig_peer_triggered_meter_values_during_a_transaction(peer_daemon, peer_csms):
    d = peer_daemon
    d.plug(1)
    d.badge("TAG1")
    tx_id = await d.until(lambda s: s["connectors"][0]["transaction_id"], what="tx id")
    mark = await peer_csms.mark()
    assert await peer_csms.call(
        BOX, "TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1}
    ) == {"status": "Accepted"}
    mv = await wait_call(peer_csms, "MeterValues", mark)
    assert mv["params"]["connectorId"] == 1 and mv["params"]["transactionId"] == tx_id
    await peer_csms.assert_clean(BOX)


# ---------------------------------------------------------------- R-OPS 5 ChangeAvailability


async def test_r_ops_5_peer_change_availability(peer_daemon, peer_csms):
    d = peer_daemon
    mark = await peer_csms.mark()
    assert await peer_csms.call(
        BOX, "ChangeAvailability", {"connectorId": 2, "type": "Inoperative"}
    ) == {"status": "Accepted"}
    unavailable = await status_event(peer_csms, 2, "Unavailable", since=mark)
    check_timestamp(unavailable["params"]["timestamp"])
    assert d.connector(2)["status"] == "Unavailable"
    assert await peer_csms.call(
        BOX, "ChangeAvailability", {"connectorId": 2, "type": "Operative"}
    ) == {"status": "Accepted"}
    await status_event(peer_csms, 2, "Available", since=unavailable["seq"])
    assert await peer_csms.call(
        BOX, "ChangeAvailability", {"connectorId": 9, "type": "Inoperative"}
    ) == {"status": "Rejected"}
    # the whole station
    mark = await peer_csms.mark()
    assert await peer_csms.call(
        BOX, "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}
    ) == {"status": "Accepted"}
    for cid in (0, 1, 2):
        await status_event(peer_csms, cid, "Unavailable", since=mark)
    mark = await peer_csms.mark()
    assert await peer_csms.call(
        BOX, "ChangeAvailability", {"connectorId": 0, "type": "Operative"}
    ) == {"status": "Accepted"}
    for cid in (0, 1, 2):
        await status_event(peer_csms, cid, "Available", since=mark)
    await peer_csms.assert_clean(BOX)


async def test_r_ops_5_peer_change_availability_scheduled_during_transaction(
    peer_daemon, peer_csms
):
    d = peer_daemon
    d.plug(1)
    d.badge("TAG1")
    tx_id = await d.until(lambda s: s["connectors"][0]["transaction_id"], what="tx id")
    assert await peer_csms.call(
        BOX, "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}
    ) == {"status": "Scheduled"}
    mark = await peer_csms.mark()
    assert await peer_csms.call(BOX, "RemoteStopTransaction", {"transactionId": tx_id}) == {
        "status": "Accepted"
    }
    await wait_call(peer_csms, "StopTransaction", mark)
    d.unplug(1)
    await status_event(peer_csms, 1, "Unavailable", since=mark)
    await peer_csms.assert_clean(BOX)


# ---------------------------------------------------------- other CSMS requests, strictly checked


@pytest.mark.parametrize(
    ("action", "payload", "expected"),
    [
        ("ClearCache", {}, {"status": "Accepted"}),
        ("UnlockConnector", {"connectorId": 1}, {"status": "NotSupported"}),
        ("DataTransfer", {"vendorId": "no.such.vendor"}, {"status": "UnknownVendorId"}),
        (
            "DataTransfer",
            {"vendorId": "com.se.cost", "messageId": "Nope"},
            {"status": "UnknownMessageId"},
        ),
        (
            "DataTransfer",
            {
                "vendorId": "com.se.cost",
                "messageId": "CostUpdated",
                "data": json.dumps(
                    {"connectID": 1, "totalCost": 1.5, "currency": "EUR", "transactionId": 1}
                ),
            },
            {"status": "Accepted"},
        ),
    ],
)
async def test_r_ops_2_peer_simple_requests_answer_valid_results(
    peer_daemon, peer_csms, action, payload, expected
):
    assert await peer_csms.call(BOX, action, payload) == expected
    await peer_csms.assert_clean(BOX)
