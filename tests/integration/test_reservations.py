"""R-RES (and R-TX 5) over the wire: ReserveNow / CancelReservation with the real daemon.

Each test names the OCA OCPP 1.6 compliance test case it mirrors (TC_046 to TC_053).
Expiry runs on the daemon's sim clock (``advance``); the charger's wall clock is the
CSMS's time from BootNotification, so expiry dates are written from the real time.
Badges go through the mock RFID reader, which upper-cases uids: idTags are upper case.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from daemon_harness import Daemon

from controller.csms import CentralSystem

BOX = "CP-TEST"


def in_seconds(s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=s)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def conn(status: dict[str, Any], cid: int) -> dict[str, Any]:
    return next(c for c in status["connectors"] if c["id"] == cid)


def calls_since(csms: CentralSystem, action: str, since: int) -> list[Any]:
    return [r for r in csms.calls(action) if r.seq > since]


def statuses(csms: CentralSystem, cid: int, since: int) -> list[str]:
    return [r.payload["status"] for r in calls_since(csms, "StatusNotification", since)
            if r.payload["connectorId"] == cid]


async def wait_status(csms: CentralSystem, cid: int, status: str, since: int) -> Any:
    return await csms.wait_for(
        "StatusNotification", since=since,
        predicate=lambda r: r.payload["connectorId"] == cid and r.payload["status"] == status,
    )


async def settled_mark(csms: CentralSystem) -> int:
    """A mark after the StatusNotifications of every connector sent at boot (0, 1, 2 in order)."""
    await csms.wait_for("StatusNotification", predicate=lambda r: r.payload["connectorId"] == 2)
    return csms.mark()


async def round_trip(csms: CentralSystem, since: int) -> None:
    await csms.call(BOX, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    await csms.wait_for("Heartbeat", since=since)


async def until_log(d: Daemon, text: str, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while text not in d.log_path.read_text(errors="replace"):
        if time.monotonic() > end:
            raise AssertionError(f"daemon never logged {text!r}:\n{d.log_tail(30)}")
        await asyncio.sleep(0.02)


async def reserve(csms: CentralSystem, cid: int, tag: str, rid: int, expiry_s: float = 3600,
                  parent: str | None = None) -> str:
    payload: dict[str, Any] = {"connectorId": cid, "expiryDate": in_seconds(expiry_s), "idTag": tag,
                               "reservationId": rid}
    if parent is not None:
        payload["parentIdTag"] = parent
    return (await csms.call(BOX, "ReserveNow", payload))["status"]


async def cancel(csms: CentralSystem, rid: int) -> str:
    return (await csms.call(BOX, "CancelReservation", {"reservationId": rid}))["status"]


async def plug(d: Daemon, cid: int) -> None:
    d.plug(cid)
    await d.until(lambda s: conn(s, cid)["status"] == "Preparing", what=f"connector {cid} Preparing")


async def assert_badge_refused(d: Daemon, csms: CentralSystem, tag: str, cid: int) -> None:
    """``tag`` is authorized (Authorize Accepted) but may not start on reserved ``cid``."""
    mark = csms.mark()
    d.badge(tag)
    assert (await csms.wait_for("Authorize", since=mark)).payload == {"idTag": tag}
    await until_log(d, f"{tag} may not start")
    await round_trip(csms, mark)
    assert calls_since(csms, "StartTransaction", mark) == []
    assert conn(d.status(), cid)["id_tag"] is None


def reservation_of(d: Daemon, cid: int) -> Any:
    return conn(d.status(), cid)["reservation"]


# ---------------------------------------------------------------- TC_046: reserve, then use


async def test_r_res_tc_046_reserved_connector_used_by_the_reserving_idtag(daemon, csms):
    mark = await settled_mark(csms)
    assert await reserve(csms, 1, "RESERVER", 11) == "Accepted"
    reserved = await wait_status(csms, 1, "Reserved", mark)
    assert reserved.payload["errorCode"] == "NoError"
    mark = reserved.seq - 1
    assert reservation_of(daemon, 1)["reservation_id"] == 11 and reservation_of(daemon, 1)["id_tag"] == "RESERVER"
    assert conn(daemon.status(), 2)["status"] == "Available"
    await plug(daemon, 1)
    daemon.badge("RESERVER")
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["connectorId"] == 1 and start.payload["idTag"] == "RESERVER"
    assert start.payload["reservationId"] == 11
    await wait_status(csms, 1, "Charging", mark)
    assert statuses(csms, 1, mark) == ["Reserved", "Preparing", "Charging"]
    # the reservation is used up
    assert reservation_of(daemon, 1) is None
    assert await cancel(csms, 11) == "Rejected"
    assert statuses(csms, 2, mark) == []


# ---------------------------------------------------------------- TC_047: expiry


async def test_r_res_tc_047_reservation_expires(daemon, csms):
    mark = csms.mark()
    assert await reserve(csms, 1, "RESERVER", 12, expiry_s=60) == "Accepted"
    await wait_status(csms, 1, "Reserved", mark)
    daemon.advance(30)
    assert daemon.connector(1)["status"] == "Reserved"
    mark = csms.mark()
    daemon.advance(40)  # past expiryDate
    await wait_status(csms, 1, "Available", mark)
    assert reservation_of(daemon, 1) is None
    assert await cancel(csms, 12) == "Rejected"
    # anyone may use the connector now, and the start carries no reservationId
    await plug(daemon, 1)
    daemon.badge("SOMEONE1")
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["idTag"] == "SOMEONE1" and "reservationId" not in start.payload


# ---------------------------------------------------------------- TC_048: refusals


async def test_r_res_tc_048_reserve_now_refusals(daemon, csms):
    mark = await settled_mark(csms)
    # Rejected: no such connector
    for cid in (3, 99):
        assert await reserve(csms, cid, "RESERVER", 20 + cid) == "Rejected"
    # Faulted: an error DTC on the connector
    daemon.fault("0x100206", connector=1)  # Ground error
    await wait_status(csms, 1, "Faulted", mark)
    assert await reserve(csms, 1, "RESERVER", 21) == "Faulted"
    daemon.fault("0x100206", connector=1, clear=True)
    await daemon.until(lambda s: conn(s, 1)["status"] == "Available", what="fault cleared")
    # Unavailable: ChangeAvailability Inoperative
    answer = await csms.call(BOX, "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert answer == {"status": "Accepted"}
    await wait_status(csms, 1, "Unavailable", mark)
    assert await reserve(csms, 1, "RESERVER", 22) == "Unavailable"
    await csms.call(BOX, "ChangeAvailability", {"connectorId": 1, "type": "Operative"})
    await daemon.until(lambda s: conn(s, 1)["status"] == "Available", what="operative")
    # Unavailable: the whole station Inoperative
    await csms.call(BOX, "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
    assert [await reserve(csms, cid, "RESERVER", 26 + cid) for cid in (0, 1)] == ["Unavailable", "Unavailable"]
    await csms.call(BOX, "ChangeAvailability", {"connectorId": 0, "type": "Operative"})
    await daemon.until(lambda s: all(c["status"] == "Available" for c in s["connectors"]), what="operative")
    # Occupied: plugged (Preparing), then charging
    await plug(daemon, 2)
    assert await reserve(csms, 2, "RESERVER", 23) == "Occupied"
    daemon.badge("CHARGING")
    await csms.wait_for("StartTransaction", since=mark)
    await daemon.until(lambda s: conn(s, 2)["transaction_id"] is not None, what="charging")
    assert await reserve(csms, 2, "RESERVER", 24) == "Occupied"
    # nothing of it was reserved
    assert "Reserved" not in statuses(csms, 1, mark) + statuses(csms, 2, mark)
    assert all(c["reservation"] is None for c in daemon.status()["connectors"])
    # and connector 1, now fine, is reservable, once: another reservation finds it Occupied
    assert await reserve(csms, 1, "RESERVER", 25) == "Accepted"
    await wait_status(csms, 1, "Reserved", mark)
    assert await reserve(csms, 1, "SOMEONE1", 29) == "Occupied"
    assert reservation_of(daemon, 1)["reservation_id"] == 25


async def test_r_res_tc_048_reserve_now_faulted_station_and_expiry_in_the_past(daemon, csms):
    assert await reserve(csms, 1, "RESERVER", 31, expiry_s=-60) == "Rejected"
    mark = csms.mark()
    daemon.fault("0x100202")  # emergency stop: a station-wide error
    await wait_status(csms, 0, "Faulted", mark)
    assert await reserve(csms, 1, "RESERVER", 32) == "Faulted"
    assert await reserve(csms, 0, "RESERVER", 33) == "Faulted"


# ---------------------------------------------------------------- TC_049: connector 0


async def test_r_res_tc_049_reservation_on_connector_zero_used_by_the_reserving_idtag(daemon, csms):
    mark = await settled_mark(csms)
    assert await reserve(csms, 0, "RESERVER", 41) == "Accepted"
    st = daemon.status()
    assert [r["reservation_id"] for r in st["station_reservations"]] == [41]
    # two connectors free for one station reservation: neither is held yet
    assert [c["status"] for c in st["connectors"]] == ["Available", "Available"]
    await plug(daemon, 2)  # the reserving idTag may use any connector
    daemon.badge("RESERVER")
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["connectorId"] == 2 and start.payload["reservationId"] == 41
    assert daemon.status()["station_reservations"] == []
    # while the holder was plugged in on 2 but not started, 1 was the last free connector;
    # once the reservation is used, 1 is free for anyone
    await daemon.until(lambda s: conn(s, 1)["status"] == "Available", what="connector 1 Available")
    held = [r for r in calls_since(csms, "StatusNotification", mark)
            if r.payload["connectorId"] == 1 and r.payload["status"] == "Reserved"]
    if held:
        await wait_status(csms, 1, "Available", held[-1].seq)


async def test_r_res_tc_049_connector_zero_others_only_while_another_connector_stays_free(daemon, csms):
    mark = csms.mark()
    assert await reserve(csms, 0, "RESERVER", 42) == "Accepted"
    # another idTag may charge on connector 1: connector 2 stays free for the reservation
    await plug(daemon, 1)
    daemon.badge("OTHER001")
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["connectorId"] == 1 and "reservationId" not in start.payload
    # connector 2 is now the last free one: it shows Reserved
    await wait_status(csms, 2, "Reserved", mark)
    assert await reserve(csms, 0, "SECOND01", 43) == "Occupied"  # no connector left for a second one
    # remote start by another idTag on it is refused
    answer = await csms.call(BOX, "RemoteStartTransaction", {"idTag": "OTHER002", "connectorId": 2})
    assert answer == {"status": "Rejected"}
    # a badge of another idTag on it does not start
    await plug(daemon, 2)
    await assert_badge_refused(daemon, csms, "OTHER002", 2)
    # the reserving idTag does
    mark2 = csms.mark()
    daemon.badge("RESERVER")
    start = await csms.wait_for("StartTransaction", since=mark2)
    assert start.payload["connectorId"] == 2 and start.payload["idTag"] == "RESERVER"
    assert start.payload["reservationId"] == 42


# ---------------------------------------------------------------- TC_050: remote start on a reserved connector


async def test_r_res_tc_050_remote_start_on_a_reserved_connector(daemon, csms):
    mark = csms.mark()
    assert await reserve(csms, 1, "RESERVER", 51) == "Accepted"
    await wait_status(csms, 1, "Reserved", mark)
    await plug(daemon, 1)
    answer = await csms.call(BOX, "RemoteStartTransaction", {"idTag": "OTHER001", "connectorId": 1})
    assert answer == {"status": "Rejected"}
    await round_trip(csms, mark)
    assert calls_since(csms, "Authorize", mark) == [] and calls_since(csms, "StartTransaction", mark) == []
    answer = await csms.call(BOX, "RemoteStartTransaction", {"idTag": "RESERVER", "connectorId": 1})
    assert answer == {"status": "Accepted"}
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["connectorId"] == 1 and start.payload["idTag"] == "RESERVER"
    assert start.payload["reservationId"] == 51


async def test_r_res_tc_050_remote_start_without_connector_avoids_the_reserved_one(daemon, csms):
    """R-TX 5: with connector 1 reserved for another, a remote start goes to connector 2."""
    mark = csms.mark()
    assert await reserve(csms, 1, "RESERVER", 52) == "Accepted"
    await plug(daemon, 1)
    await plug(daemon, 2)
    answer = await csms.call(BOX, "RemoteStartTransaction", {"idTag": "OTHER001"})
    assert answer == {"status": "Accepted"}
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["connectorId"] == 2 and "reservationId" not in start.payload
    assert reservation_of(daemon, 1)["reservation_id"] == 52


# ---------------------------------------------------------------- TC_051 / TC_052: cancel


async def test_r_res_tc_051_cancel_reservation(daemon, csms):
    mark = csms.mark()
    assert await reserve(csms, 1, "RESERVER", 61) == "Accepted"
    mark = (await wait_status(csms, 1, "Reserved", mark)).seq - 1
    assert await cancel(csms, 61) == "Accepted"
    await wait_status(csms, 1, "Available", mark)
    assert statuses(csms, 1, mark) == ["Reserved", "Available"]
    assert reservation_of(daemon, 1) is None
    # the connector is free for anyone again
    await plug(daemon, 1)
    daemon.badge("OTHER001")
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["idTag"] == "OTHER001" and "reservationId" not in start.payload


async def test_r_res_tc_051_cancel_a_connector_zero_reservation(daemon, csms):
    mark = await settled_mark(csms)
    assert await reserve(csms, 0, "RESERVER", 62) == "Accepted"
    assert await cancel(csms, 62) == "Accepted"
    assert daemon.status()["station_reservations"] == []
    assert await cancel(csms, 62) == "Rejected"
    assert statuses(csms, 1, mark) == [] and statuses(csms, 2, mark) == []


async def test_r_res_tc_052_cancel_unknown_reservation_rejected(daemon, csms):
    assert await cancel(csms, 999) == "Rejected"
    assert await reserve(csms, 1, "RESERVER", 71) == "Accepted"
    assert await cancel(csms, 72) == "Rejected"
    assert reservation_of(daemon, 1)["reservation_id"] == 71  # the other one untouched


# ---------------------------------------------------------------- TC_053: parentIdTag


async def test_r_res_tc_053_reserved_connector_used_by_a_member_of_the_parent_group(daemon, csms):
    mark = csms.mark()
    assert await reserve(csms, 1, "RESERVER", 81, parent="GROUP1") == "Accepted"
    await wait_status(csms, 1, "Reserved", mark)
    await plug(daemon, 1)
    csms.respond("Authorize", {"idTagInfo": {"status": "Accepted", "parentIdTag": "GROUP1"}}, once=True)
    daemon.badge("MEMBER01")
    auth = await csms.wait_for("Authorize", since=mark)
    assert auth.payload == {"idTag": "MEMBER01"}
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["connectorId"] == 1 and start.payload["idTag"] == "MEMBER01"
    assert start.payload["reservationId"] == 81


async def test_r_res_tc_053_remote_start_by_a_member_of_the_parent_group(daemon, csms):
    mark = csms.mark()
    assert await reserve(csms, 1, "RESERVER", 83, parent="GROUP1") == "Accepted"
    await plug(daemon, 1)
    csms.respond("Authorize", {"idTagInfo": {"status": "Accepted", "parentIdTag": "GROUP1"}})
    answer = await csms.call(BOX, "RemoteStartTransaction", {"idTag": "MEMBER01", "connectorId": 1})
    assert answer == {"status": "Accepted"}
    assert (await csms.wait_for("Authorize", since=mark)).payload == {"idTag": "MEMBER01"}
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["connectorId"] == 1 and start.payload["idTag"] == "MEMBER01"
    assert start.payload["reservationId"] == 83


@pytest.mark.parametrize("info", [
    {"status": "Accepted"},
    {"status": "Accepted", "parentIdTag": "GROUP2"},
])
async def test_r_res_tc_053_r_tx_5_badge_of_another_idtag_on_a_reserved_connector_does_not_start(
        daemon, csms, info):
    mark = csms.mark()
    assert await reserve(csms, 1, "RESERVER", 82, parent="GROUP1") == "Accepted"
    await plug(daemon, 1)
    csms.respond("Authorize", {"idTagInfo": info}, once=True)
    await assert_badge_refused(daemon, csms, "STRANGER", 1)
    assert reservation_of(daemon, 1)["reservation_id"] == 82  # still held
    daemon.badge("RESERVER")  # the holder is the first to start
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["idTag"] == "RESERVER" and start.payload["reservationId"] == 82


# ---------------------------------------------------------------- persistence


async def test_r_res_reservations_survive_a_restart(daemon, csms):
    assert await reserve(csms, 1, "RESERVER", 91) == "Accepted"
    assert await reserve(csms, 0, "ANYONE01", 92) == "Accepted"
    # connector 2 is the station reservation's last free connector
    await daemon.until(lambda s: [c["status"] for c in s["connectors"]] == ["Reserved", "Reserved"],
                       what="both Reserved")
    await daemon.stop()
    mark = csms.mark()
    await daemon.start()
    await csms.wait_for("BootNotification", since=mark, timeout=15)
    await daemon.until(lambda s: s["link"] == "connected", what="boot")
    await wait_status(csms, 1, "Reserved", mark)
    await wait_status(csms, 2, "Reserved", mark)
    st = daemon.status()
    assert conn(st, 1)["reservation"]["reservation_id"] == 91
    assert [r["reservation_id"] for r in st["station_reservations"]] == [92]
    # still honoured: another idTag may not use connector 1, the holder may
    await plug(daemon, 1)
    await assert_badge_refused(daemon, csms, "STRANGER", 1)
    mark = csms.mark()
    daemon.badge("RESERVER")
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["connectorId"] == 1 and start.payload["reservationId"] == 91
    # and the station-wide one on connector 2
    await plug(daemon, 2)
    daemon.badge("ANYONE01")
    start = await csms.wait_for("StartTransaction", since=start.seq)
    assert start.payload["connectorId"] == 2 and start.payload["reservationId"] == 92


async def test_r_res_expiry_survives_a_restart(daemon, csms):
    assert await reserve(csms, 1, "RESERVER", 93, expiry_s=60) == "Accepted"
    await daemon.stop()
    mark = csms.mark()
    await daemon.start()
    await daemon.until(lambda s: s["link"] == "connected", what="boot")
    await wait_status(csms, 1, "Reserved", mark)
    mark = csms.mark()
    daemon.advance(90)
    await wait_status(csms, 1, "Available", mark)
    assert reservation_of(daemon, 1) is None


async def test_r_res_reserve_now_with_an_existing_id_replaces_the_reservation(daemon, csms):
    """OCPP 1.6 §5.13: a ReserveNow with a known reservationId replaces that reservation."""
    mark = csms.mark()
    assert await reserve(csms, 1, "RESERVER", 95) == "Accepted"
    assert await reserve(csms, 2, "RESERVER", 95) == "Accepted"
    await wait_status(csms, 2, "Reserved", mark)
    await wait_status(csms, 1, "Available", mark)
    assert reservation_of(daemon, 1) is None and reservation_of(daemon, 2)["reservation_id"] == 95
