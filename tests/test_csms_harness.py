"""Both test central systems, driven by a tiny fake charge point (ocpp.v16 client side)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import pytest
from ocpp.exceptions import GenericError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, RemoteStartStopStatus, ResetStatus
from peer_harness import PeerCallError, PeerCsms
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from controller.csms import (
    CallErrorReceived,
    CentralSystem,
    Frame,
    InvalidCallResultError,
    NotConnectedError,
    run_forever,
)

pytest_plugins = ["csms_harness"]  # fixtures: csms, peer_csms

IDENTITY = "CP-001"
BOOT = call.BootNotification(
    charge_point_vendor="Schneider Electric",
    charge_point_model="EVlink Pro DC 180",
    charge_point_serial_number="SN-0001",
    firmware_version="0.1.0",
)


class FakeChargePoint(ChargePoint):
    """Client side of ocpp.v16 that answers RemoteStartTransaction and Reset, nothing else."""

    def __init__(self, identity: str, ws: ClientConnection) -> None:
        super().__init__(identity, ws, response_timeout=5)
        self.ws = ws

    @on(Action.remote_start_transaction)
    def on_remote_start_transaction(self, id_tag: str, **kwargs: Any) -> Any:
        status = RemoteStartStopStatus.rejected if id_tag == "BLOCKED" else "Accepted"
        return call_result.RemoteStartTransaction(status=status)

    @on(Action.reset)
    def on_reset(self, **kwargs: Any) -> Any:
        return call_result.Reset(status=ResetStatus.accepted)


@asynccontextmanager
async def fake_cp(base_url: str, identity: str = IDENTITY) -> AsyncIterator[FakeChargePoint]:
    async with connect(f"{base_url}/{identity}", subprotocols=["ocpp1.6"]) as ws:
        cp = FakeChargePoint(identity, ws)
        serving = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            serving.cancel()
            await asyncio.wait({serving})
            if not serving.cancelled():
                serving.exception()  # ConnectionClosed when the CSMS hung up first


@asynccontextmanager
async def raw_client(base_url: str, identity: str) -> AsyncIterator[ClientConnection]:
    async with connect(f"{base_url}/{identity}", subprotocols=["ocpp1.6"]) as ws:
        yield ws


def uid_of(frame: Frame) -> Any:
    parsed = frame.json()
    return parsed[1] if isinstance(parsed, list) and len(parsed) > 1 else None


# ---------------------------------------------------------------- our CentralSystem


async def test_boot_is_accepted_with_utc_time_and_interval(csms: CentralSystem) -> None:
    async with fake_cp(csms.url) as cp:
        result = await cp.call(BOOT, suppress=False)

    assert (result.status, result.interval) == ("Accepted", 300)
    assert result.current_time.endswith("Z")
    datetime.fromisoformat(result.current_time)
    record = await csms.wait_for("BootNotification", identity=IDENTITY)
    assert record.payload["chargePointModel"] == "EVlink Pro DC 180"
    csms.assert_clean(IDENTITY)


async def test_boot_override_pending_once_then_default(csms: CentralSystem) -> None:
    csms.respond("BootNotification", {"status": "Pending", "interval": 2}, once=True)
    async with fake_cp(csms.url) as cp:
        first = await cp.call(BOOT, suppress=False)
        second = await cp.call(BOOT, suppress=False)

    assert (first.status, first.interval) == ("Pending", 2)
    assert first.current_time.endswith("Z")
    assert (second.status, second.interval) == ("Accepted", 300)


async def test_error_override_answers_callerror(csms: CentralSystem) -> None:
    csms.respond("Authorize", error="GenericError", description="scripted")
    async with fake_cp(csms.url) as cp:
        with pytest.raises(GenericError):
            await cp.call(call.Authorize(id_tag="SIMTAG"), suppress=False)
        csms.clear_responses()
        result = await cp.call(call.Authorize(id_tag="SIMTAG"), suppress=False)

    assert result.id_tag_info["status"] == "Accepted"
    first = csms.calls("Authorize")[0]
    reply = csms.reply_to(first)
    assert reply is not None
    assert reply.json()[:4] == [4, first.unique_id, "GenericError", "scripted"]
    csms.assert_clean(IDENTITY)  # a scripted error is not the charger's fault


async def test_no_reply_override_sends_nothing(csms: CentralSystem) -> None:
    csms.respond("Heartbeat", no_reply=True, once=True)
    async with raw_client(csms.url, "CP-RAW") as ws:
        await ws.send('[2,"hb-1","Heartbeat",{}]')
        await ws.send('[2,"hb-2","Heartbeat",{}]')
        reply = json.loads(await ws.recv())  # answers go out in order: hb-1 would come first

    assert reply[:2] == [3, "hb-2"]


async def test_rejected_tags_and_transaction_ids(csms: CentralSystem) -> None:
    csms.rejected_tags.add("BADTAG")
    start = dict(connector_id=1, meter_start=0, timestamp="2024-01-01T00:00:00Z")
    async with fake_cp(csms.url) as cp:
        authorized = await cp.call(call.Authorize(id_tag="BADTAG"), suppress=False)
        tx1 = await cp.call(call.StartTransaction(id_tag="SIMTAG", **start), suppress=False)
        tx2 = await cp.call(call.StartTransaction(id_tag="BADTAG", **start), suppress=False)

    assert authorized.id_tag_info["status"] == "Invalid"
    assert (tx1.transaction_id, tx1.id_tag_info["status"]) == (1, "Accepted")
    assert (tx2.transaction_id, tx2.id_tag_info["status"]) == (2, "Invalid")


async def test_recording_and_wait_for(csms: CentralSystem) -> None:
    def status(value: str) -> call.StatusNotification:
        return call.StatusNotification(connector_id=1, error_code="NoError", status=value)

    async with fake_cp(csms.url) as cp:
        since = csms.mark()
        charging = asyncio.create_task(
            csms.wait_for(
                "StatusNotification",
                predicate=lambda record: record.payload["status"] == "Charging",
                since=since,
            )
        )
        await cp.call(status("Available"), suppress=False)
        await cp.call(status("Charging"), suppress=False)
        record = await charging

    assert record.seq > since and record.identity == IDENTITY
    statuses = [r.payload["status"] for r in csms.calls("StatusNotification", IDENTITY)]
    assert statuses == ["Available", "Charging"]
    frames = csms.frames(IDENTITY, since=since)
    assert [f.direction for f in frames] == ["in", "out", "in", "out"]
    assert [f.seq for f in frames] == sorted({f.seq for f in frames})
    assert frames[2].json()[1:3] == [record.unique_id, "StatusNotification"]
    with pytest.raises(AssertionError, match="StatusNotification"):
        await csms.wait_for("StatusNotification", since=record.seq, timeout=0.05)


async def test_call_from_csms_to_charge_point(csms: CentralSystem) -> None:
    async with fake_cp(csms.url):
        await csms.wait_connected(IDENTITY)
        started = await csms.call(
            IDENTITY, "RemoteStartTransaction", {"connectorId": 1, "idTag": "SIMTAG"}
        )
        assert started == {"status": "Accepted"}
        with pytest.raises(CallErrorReceived) as refused:
            await csms.call(IDENTITY, "UnlockConnector", {"connectorId": 1})
        assert refused.value.code == "NotImplemented"
        with pytest.raises(ValueError, match="Reset"):
            await csms.call(IDENTITY, "Reset", {"type": "Sideways"})
        with pytest.raises(ValueError, match="NoSuchAction"):
            await csms.call(IDENTITY, "NoSuchAction", {})


async def test_call_reports_what_the_charger_really_answered(csms: CentralSystem) -> None:
    async with raw_client(csms.url, "CP-RAW") as ws:
        await csms.wait_connected("CP-RAW")

        bad_result = asyncio.create_task(csms.call("CP-RAW", "Reset", {"type": "Soft"}))
        request = json.loads(await ws.recv())
        await ws.send(json.dumps([3, request[1], {"status": "Maybe"}]))
        with pytest.raises(InvalidCallResultError) as invalid:
            await bad_result
        assert invalid.value.payload == {"status": "Maybe"}

        odd_error = asyncio.create_task(csms.call("CP-RAW", "Reset", {"type": "Soft"}))
        request = json.loads(await ws.recv())
        await ws.send(json.dumps([4, request[1], "VendorSpecific", "odd", {"x": 1}]))
        with pytest.raises(CallErrorReceived) as error:
            await odd_error
        assert (error.value.code, error.value.details) == ("VendorSpecific", {"x": 1})


async def test_call_timeout_then_late_answer_is_ignored(csms: CentralSystem) -> None:
    async with raw_client(csms.url, "CP-RAW") as ws:
        await csms.wait_connected("CP-RAW")
        with pytest.raises(TimeoutError):
            await csms.call("CP-RAW", "Reset", {"type": "Soft"}, timeout=0.05)
        late = json.loads(await ws.recv())
        await ws.send(json.dumps([3, late[1], {"status": "Rejected"}]))

        second = asyncio.create_task(csms.call("CP-RAW", "Reset", {"type": "Hard"}))
        request = json.loads(await ws.recv())
        assert request[3] == {"type": "Hard"}
        await ws.send(json.dumps([3, request[1], {"status": "Accepted"}]))
        assert await second == {"status": "Accepted"}


async def test_call_fails_fast_when_the_charger_goes_away(csms: CentralSystem) -> None:
    async with raw_client(csms.url, "CP-RAW") as ws:
        await csms.wait_connected("CP-RAW")
        pending = asyncio.create_task(csms.call("CP-RAW", "Reset", {"type": "Soft"}))
        await ws.recv()
    with pytest.raises(NotConnectedError):
        await pending


async def test_raw_frame_round_trip(csms: CentralSystem) -> None:
    async with fake_cp(csms.url):
        await csms.wait_connected(IDENTITY)
        since = await csms.send_raw(IDENTITY, '[2,"raw-1","Reset",{"type":"Soft"}]')
        reply = await csms.wait_frame(IDENTITY, lambda f: uid_of(f) == "raw-1", since)
        assert reply.json() == [3, "raw-1", {"status": "Accepted"}]

        since = await csms.send_raw(IDENTITY, '[2,"raw-2","Reset",{"type":"Sideways"}]')
        reply = await csms.wait_frame(IDENTITY, lambda f: uid_of(f) == "raw-2", since)
        assert reply.json()[0] == 4


async def test_bad_frame_from_charger_is_recorded(csms: CentralSystem) -> None:
    async with raw_client(csms.url, "CP-RAW") as ws:
        await ws.send("this is not OCPP-J")
        await csms.wait_frame("CP-RAW", lambda f: f.text == "this is not OCPP-J")

    assert [e.kind for e in csms.events("CP-RAW", "bad_frame")] == ["bad_frame"]
    with pytest.raises(AssertionError, match="bad_frame"):
        csms.assert_clean("CP-RAW")


@pytest.mark.parametrize("offered", [None, ["ocpp2.0.1"]])
async def test_subprotocol_required(csms: CentralSystem, offered: list[str] | None) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(csms.url_for("CP-NOPROTO"), subprotocols=offered):  # type: ignore
            pass

    assert refused.value.response.status_code == 400
    assert csms.events("CP-NOPROTO", "rejected")
    assert not csms.connected("CP-NOPROTO")


async def test_basic_auth_password() -> None:
    async with CentralSystem(basic_auth_password="s3cret") as protected:
        with pytest.raises(InvalidStatus) as refused:
            async with fake_cp(protected.url):
                pass
        assert refused.value.response.status_code == 401

        authed_url = f"ws://{IDENTITY}:s3cret@127.0.0.1:{protected.port}/ocpp"
        async with fake_cp(authed_url) as cp:
            assert (await cp.call(BOOT, suppress=False)).status == "Accepted"


async def test_reconnect_replaces_the_session(csms: CentralSystem) -> None:
    async with fake_cp(csms.url) as first:
        await csms.wait_connected(IDENTITY)
        async with fake_cp(csms.url):
            await first.ws.wait_closed()
            assert first.ws.close_code == 1000
            assert csms.connected(IDENTITY)
            reset = await csms.call(IDENTITY, "Reset", {"type": "Soft"})
            assert reset == {"status": "Accepted"}
        await csms.wait_disconnected(IDENTITY)

    kinds = [e.kind for e in csms.events(IDENTITY)]
    assert kinds == ["connect", "connect", "disconnect", "disconnect"]


async def test_disconnect(csms: CentralSystem) -> None:
    async with fake_cp(csms.url) as cp:
        await csms.wait_connected(IDENTITY)
        await csms.disconnect(IDENTITY)
        assert not csms.connected(IDENTITY)
        await cp.ws.wait_closed()


async def test_human_log_lines() -> None:
    lines: list[str] = []
    async with CentralSystem(log=lines.append) as logged, fake_cp(logged.url) as cp:
        await cp.call(BOOT, suppress=False)
        await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="SIMTAG", meter_start=0, timestamp="2024-01-01T00:00:00Z"
            ),
            suppress=False,
        )
        await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=1,
                meter_value=[
                    {
                        "timestamp": "2024-01-01T00:01:00Z",
                        "sampled_value": [
                            {"value": "12300", "measurand": "Power.Active.Import", "unit": "W"},
                            {"value": "1234", "unit": "Wh"},
                            {"value": "45", "measurand": "SoC", "unit": "Percent"},
                        ],
                    }
                ],
            ),
            suppress=False,
        )
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"),
            suppress=False,
        )
        await cp.call(
            call.StopTransaction(
                transaction_id=1,
                meter_stop=1234,
                timestamp="2024-01-01T00:02:00Z",
                reason="EVDisconnected",
            ),
            suppress=False,
        )

    texts = [line[9:] for line in lines]  # drop "HH:MM:SS "
    assert all(line[2] == ":" and line[5] == ":" for line in lines)
    assert texts[0].startswith(f"{IDENTITY} connected from 127.0.0.1:")
    assert texts[1:6] == [
        f"{IDENTITY} → BootNotification EVlink Pro DC 180 SN-0001 fw 0.1.0"
        " → Accepted interval 300 s",
        f"{IDENTITY} → StartTransaction c1 idTag SIMTAG → tx 1",
        f"{IDENTITY} → MeterValues c1 12.3 kW 1.234 kWh SoC 45 % tx 1",
        f"{IDENTITY} → StatusNotification c1 Charging NoError",
        f"{IDENTITY} → StopTransaction tx 1 meterStop 1234 Wh reason EVDisconnected",
    ]


# ---------------------------------------------------------------- the node peer CSMS


@pytest.mark.peer
async def test_peer_boot_accepted_and_clean(peer_csms: PeerCsms) -> None:
    async with fake_cp(peer_csms.url) as cp:
        result = await cp.call(BOOT, suppress=False)
        event = await peer_csms.wait_event(type="callIn", method="BootNotification")

    assert result.status == "Accepted"
    assert event["identity"] == IDENTITY
    assert event["params"]["chargePointModel"] == "EVlink Pro DC 180"
    await peer_csms.assert_clean(IDENTITY)


@pytest.mark.peer
async def test_peer_overrides(peer_csms: PeerCsms) -> None:
    await peer_csms.respond("BootNotification", {"status": "Pending", "interval": 2}, once=True)
    await peer_csms.respond("Authorize", error="GenericError", description="scripted")
    await peer_csms.respond("Heartbeat", {"response": {"currentTime": "2030-01-01T00:00:00Z"}})
    async with fake_cp(peer_csms.url) as cp:
        pending = await cp.call(BOOT, suppress=False)
        accepted = await cp.call(BOOT, suppress=False)
        with pytest.raises(GenericError):
            await cp.call(call.Authorize(id_tag="SIMTAG"), suppress=False)
        heartbeat = await cp.call(call.Heartbeat(), suppress=False)

    assert (pending.status, pending.interval) == ("Pending", 2)
    assert accepted.status == "Accepted"
    assert heartbeat.current_time == "2030-01-01T00:00:00Z"


@pytest.mark.peer
async def test_peer_calls_the_charge_point(peer_csms: PeerCsms) -> None:
    async with fake_cp(peer_csms.url):
        await peer_csms.wait_event(type="connect", identity=IDENTITY)
        started = await peer_csms.call(
            IDENTITY, "RemoteStartTransaction", {"connectorId": 1, "idTag": "SIMTAG"}
        )
        with pytest.raises(PeerCallError) as refused:
            await peer_csms.call(IDENTITY, "UnlockConnector", {"connectorId": 1})

    assert started == {"status": "Accepted"}
    assert refused.value.code == "NotImplemented"


@pytest.mark.peer
async def test_peer_raw_frame_round_trip(peer_csms: PeerCsms) -> None:
    async with fake_cp(peer_csms.url):
        await peer_csms.wait_event(type="connect", identity=IDENTITY)
        since = await peer_csms.mark()
        await peer_csms.raw(IDENTITY, '[2,"raw-1","Reset",{"type":"Soft"}]')
        event = await peer_csms.wait_event(
            type="message", direction="in", identity=IDENTITY, since=since
        )

    assert json.loads(event["message"]) == [3, "raw-1", {"status": "Accepted"}]


@pytest.mark.peer
async def test_peer_subprotocol_required(peer_csms: PeerCsms) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(peer_csms.url_for("CP-NOPROTO")):
            pass

    assert refused.value.response.status_code == 400
    await peer_csms.wait_event(type="authRejected", identity="CP-NOPROTO")


async def test_refused_charge_point_call_makes_assert_clean_fail(csms: CentralSystem) -> None:
    async with raw_client(csms.url, "CP-RAW") as ws:
        await ws.send('[2,"sn-1","StatusNotification",{"connectorId":1}]')  # no status/errorCode
        reply = json.loads(await ws.recv())

    assert reply[:3] == [4, "sn-1", "ProtocolError"]
    with pytest.raises(AssertionError, match="call_error_sent"):
        csms.assert_clean("CP-RAW")


async def test_run_forever_serves_until_cancelled() -> None:
    lines: list[str] = []
    listening = asyncio.Event()

    def log(line: str) -> None:
        lines.append(line)
        listening.set()

    serving = asyncio.create_task(run_forever("127.0.0.1", 0, log))
    await asyncio.wait_for(listening.wait(), 5)
    base_url = lines[0].split(" on ", 1)[1].split("/<identity>", 1)[0]
    async with fake_cp(base_url) as cp:
        assert (await cp.call(BOOT, suppress=False)).status == "Accepted"
    serving.cancel()
    await asyncio.wait({serving})
    assert any("→ BootNotification" in line for line in lines)


@pytest.mark.peer
async def test_peer_assert_clean_catches_schema_violation(peer_csms: PeerCsms) -> None:
    bad_time = '[2,"sn-1","StatusNotification",{"connectorId":1,"errorCode":"NoError",'
    bad_time += '"status":"Available","timestamp":"yesterday"}]'
    async with raw_client(peer_csms.url, "CP-RAW") as ws:
        await ws.send(bad_time)
        reply = json.loads(await ws.recv())
        await peer_csms.wait_event(type="strictValidationFailure", identity="CP-RAW")

    assert reply[:2] == [4, "sn-1"]
    with pytest.raises(AssertionError, match="strictValidationFailure"):
        await peer_csms.assert_clean("CP-RAW")
