"""Charging sessions end to end: the real daemon, mock hardware, our CSMS on 127.0.0.1."""

from __future__ import annotations

import pytest

from controller.core.timefmt import parse_rfc3339

BOX = "CP-TEST"


async def test_r_tx_1_plug_then_badge_session(daemon, csms):
    daemon.plug(1)
    await daemon.until(lambda s: s["connectors"][0]["status"] == "Preparing", what="Preparing")
    mark = csms.mark()
    daemon.badge("AABBCCDD")
    auth = await csms.wait_for("Authorize", since=mark)
    assert auth.payload == {"idTag": "AABBCCDD"}
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["connectorId"] == 1
    assert start.payload["idTag"] == "AABBCCDD"
    assert isinstance(start.payload["meterStart"], int)
    parse_rfc3339(start.payload["timestamp"])
    await daemon.until(lambda s: s["connectors"][0]["transaction_id"] == 1, what="transaction id")
    daemon.advance(3)  # let the mock ramp up
    c = await daemon.until(
        lambda s: s["connectors"][0]["power_w"] > 0 and s["connectors"][0]["energy_wh"] > 0 and s["connectors"][0],
        what="energy flowing",
    )
    assert c["status"] == "Charging"
    mark = csms.mark()
    daemon.badge("AABBCCDD")
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop.payload["transactionId"] == 1
    assert stop.payload["reason"] == "Local"
    assert stop.payload["idTag"] == "AABBCCDD"
    assert stop.payload["meterStop"] >= start.payload["meterStart"] + c["energy_wh"]
    await csms.wait_for(
        "StatusNotification", since=mark, predicate=lambda r: r.payload["status"] == "Finishing"
    )
    daemon.unplug(1)
    await csms.wait_for(
        "StatusNotification", since=mark,
        predicate=lambda r: r.payload["connectorId"] == 1 and r.payload["status"] == "Available",
    )


async def test_r_auth_4_badge_with_nothing_plugged_is_ignored(daemon, csms):
    mark = csms.mark()
    daemon.badge("AABBCCDD")
    # the badge reached the daemon (the rig answered) but no Authorize may follow:
    # prove the link is idle by a round trip that comes after it
    await csms.call(BOX, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    await csms.wait_for("Heartbeat", since=mark)
    assert csms.calls("Authorize") == []
    assert daemon.connector(1)["status"] == "Available"


async def test_r_auth_4_both_plugged_badge_goes_to_the_connector_on_screen(daemon, csms):
    daemon.plug(1)
    daemon.plug(2)
    daemon.touch(2)
    mark = csms.mark()
    daemon.badge("TAG2")
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["connectorId"] == 2


async def test_r_tx_5_ev_disconnect_stops_the_transaction(daemon, csms):
    daemon.plug(1)
    daemon.badge("TAG1")
    await csms.wait_for("StartTransaction")
    await daemon.until(lambda s: s["connectors"][0]["transaction_id"] is not None, what="tx id")
    mark = csms.mark()
    daemon.unplug(1)
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop.payload["reason"] == "EVDisconnected"


async def test_r_auth_5_remote_stop(daemon, csms):
    daemon.plug(1)
    daemon.badge("TAG1")
    start = await csms.wait_for("StartTransaction")
    await daemon.until(lambda s: s["connectors"][0]["transaction_id"] == 1, what="tx id")
    assert (await csms.call(BOX, "RemoteStopTransaction", {"transactionId": 99})) == {"status": "Rejected"}
    mark = csms.mark()
    assert (await csms.call(BOX, "RemoteStopTransaction", {"transactionId": 1})) == {"status": "Accepted"}
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop.payload["reason"] == "Remote"
    assert stop.payload["meterStop"] >= start.payload["meterStart"]


@pytest.mark.parametrize("with_connector", [True, False])
async def test_r_auth_5_remote_start_plugged_starts(daemon, csms, with_connector):
    daemon.plug(1)
    payload = {"idTag": "REMOTE1", **({"connectorId": 1} if with_connector else {})}
    mark = csms.mark()
    assert (await csms.call(BOX, "RemoteStartTransaction", payload)) == {"status": "Accepted"}
    auth = await csms.wait_for("Authorize", since=mark)  # AuthorizeRemoteTxRequests = true
    start = await csms.wait_for("StartTransaction", since=mark)
    assert auth.seq < start.seq
    assert start.payload["connectorId"] == 1 and start.payload["idTag"] == "REMOTE1"


async def test_r_auth_5_remote_start_without_connector_both_plugged_uses_connector_1(daemon, csms):
    daemon.plug(2)
    daemon.plug(1)
    mark = csms.mark()
    assert (await csms.call(BOX, "RemoteStartTransaction", {"idTag": "R"})) == {"status": "Accepted"}
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["connectorId"] == 1


async def test_r_auth_5_remote_start_without_connector_one_plugged_uses_it(daemon, csms):
    daemon.plug(2)
    mark = csms.mark()
    assert (await csms.call(BOX, "RemoteStartTransaction", {"idTag": "R"})) == {"status": "Accepted"}
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["connectorId"] == 2


@pytest.mark.parametrize("with_connector", [True, False])
async def test_r_auth_5_remote_start_waits_connection_timeout_for_the_plug(daemon, csms, with_connector):
    payload = {"idTag": "R", **({"connectorId": 2} if with_connector else {})}
    mark = csms.mark()
    assert (await csms.call(BOX, "RemoteStartTransaction", payload)) == {"status": "Accepted"}
    await csms.wait_for("Authorize", since=mark)  # AuthorizeRemoteTxRequests = true
    daemon.advance(110)  # within ConnectionTimeOut (120 s): still waiting
    mark = csms.mark()
    daemon.plug(2)
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["connectorId"] == 2


@pytest.mark.parametrize("with_connector", [True, False])
async def test_r_auth_5_remote_start_dropped_after_connection_timeout(daemon, csms, with_connector):
    payload = {"idTag": "R", **({"connectorId": 1} if with_connector else {})}
    assert (await csms.call(BOX, "RemoteStartTransaction", payload)) == {"status": "Accepted"}
    daemon.advance(121)
    await daemon.until(lambda s: all(c["status"] == "Available" for c in s["connectors"]), what="dropped")
    mark = csms.mark()
    daemon.plug(1)
    await csms.wait_for(
        "StatusNotification", since=mark, predicate=lambda r: r.payload["status"] == "Preparing"
    )
    await csms.call(BOX, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    await csms.wait_for("Heartbeat", since=mark)
    assert [r for r in csms.calls("StartTransaction") if r.seq > mark] == []


async def test_r_auth_5_remote_start_bad_connector_rejected(daemon, csms):
    for cid in (0, 3, 99):
        answer = await csms.call(BOX, "RemoteStartTransaction", {"idTag": "R", "connectorId": cid})
        assert answer == {"status": "Rejected"}


async def test_r_auth_5_remote_start_no_ev_rejected_when_disabled(daemon, csms):
    assert (await csms.call(BOX, "ChangeConfiguration",
                            {"key": "EnableRemoteStartNoConnectedEV", "value": "false"})) == {"status": "Accepted"}
    for payload in ({"idTag": "R", "connectorId": 1}, {"idTag": "R"}):
        assert (await csms.call(BOX, "RemoteStartTransaction", payload)) == {"status": "Rejected"}


async def test_r_auth_3_free_mode_starts_on_plug_with_default_idtag(csms, make_daemon):
    d = make_daemon(csms.url, keys={"FreeCharging": True})
    await d.start()
    await d.until(lambda s: s["link"] == "connected", what="boot")
    mark = csms.mark()
    d.plug(1)
    auth = await csms.wait_for("Authorize", since=mark)
    start = await csms.wait_for("StartTransaction", since=mark)
    assert auth.payload["idTag"] == "SIMTAG" and start.payload["idTag"] == "SIMTAG"
