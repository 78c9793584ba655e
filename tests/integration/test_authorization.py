"""R-AUTH over the wire: the real daemon, mock hardware, our CSMS on 127.0.0.1.

Each test names the requirement it proves and, where one exists, the OCA OCPP 1.6
compliance test case it mirrors (TC_007, TC_008, TC_023, TC_037, TC_042, TC_043,
TC_061, TC_068, TC_069). Covered: auth modes and ``auth_options`` (R-AUTH 1/2),
AutoCharge (R-AUTH 1), offline strategies and LocalPreAuthorize (R-AUTH 6), the
authorization cache and the local list (R-AUTH 7), StopTransactionOnInvalidId
(R-AUTH 8) and the stop rules (same idTag, same parentIdTag group).

Plug & Charge needs an ISO 15118 contract id from the EV side; neither the rig
(``ev`` takes soc and mac only) nor the mock power stage's options (``plugged``
only) can set one on a running daemon, so the PnC case is driven here at the
charger-core level (``Charger`` with the real SQLite store) instead.

Badges go through the mock RFID reader, which upper-cases card uids: idTags here
are upper case. Time-driven behaviour uses the daemon's sim clock (``advance``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from daemon_harness import Daemon

from controller.csms import CentralSystem

BOX = "CP-TEST"


# ---------------------------------------------------------------- helpers


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def in_seconds(s: float) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=s))


def conn(status: dict[str, Any], cid: int) -> dict[str, Any]:
    return next(c for c in status["connectors"] if c["id"] == cid)


async def boot(make_daemon: Any, csms: CentralSystem, **settings: Any) -> Daemon:
    d = make_daemon(csms.url, **settings)
    await d.start()
    await csms.wait_for("BootNotification", identity=BOX, timeout=15)
    await d.until(lambda s: s["link"] == "connected", what="boot accepted")
    return d


async def go_offline(d: Daemon, csms: CentralSystem) -> int:
    """Stop our CSMS; return its port so that another can come back on it."""
    port = csms.port
    await csms.stop()
    await d.until(lambda s: s["link"] != "connected", what="link down")
    return port


async def first_of(csms: CentralSystem, actions: tuple[str, ...], since: int, timeout: float = 10.0) -> Any:
    """The first CALL of one of ``actions`` with seq > since."""
    end = time.monotonic() + timeout
    while True:
        found = [r for r in csms.calls() if r.seq > since and r.action in actions]
        if found:
            return found[0]
        if time.monotonic() > end:
            raise AssertionError(f"none of {actions} after #{since}")
        await asyncio.sleep(0.02)


async def round_trip(csms: CentralSystem, since: int) -> None:
    """A CSMS request answered after everything the charger had to say before it."""
    await csms.call(BOX, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    await csms.wait_for("Heartbeat", since=since)


def calls_since(csms: CentralSystem, action: str, since: int) -> list[Any]:
    return [r for r in csms.calls(action) if r.seq > since]


async def until_log(d: Daemon, text: str, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while text not in d.log_path.read_text(errors="replace"):
        if time.monotonic() > end:
            raise AssertionError(f"daemon never logged {text!r}:\n{d.log_tail(30)}")
        await asyncio.sleep(0.02)


async def start_session(d: Daemon, csms: CentralSystem, tag: str, cid: int = 1) -> Any:
    """Plug ``cid`` and badge ``tag``; the StartTransaction once the transaction id is known."""
    mark = csms.mark()
    d.plug(cid)
    await d.until(lambda s: conn(s, cid)["status"] == "Preparing", what="Preparing")
    d.badge(tag)
    start = await csms.wait_for("StartTransaction", since=mark)
    await d.until(lambda s: conn(s, cid)["transaction_id"] is not None, what="transaction id")
    return start


async def end_session(d: Daemon, csms: CentralSystem, tag: str, cid: int = 1) -> Any:
    """Badge ``tag`` to stop, unplug; the StopTransaction once delivered."""
    mark = csms.mark()
    d.badge(tag)
    stop = await csms.wait_for("StopTransaction", since=mark)
    d.unplug(cid)
    await d.until(lambda s: conn(s, cid)["status"] == "Available" and s["queued_messages"] == 0,
                  what="Available, queue empty")
    return stop


async def probe(d: Daemon, csms: CentralSystem, tag: str) -> str:
    """With LocalPreAuthorize true and Authorize answered Invalid (scripted by the caller):
    "local" when ``tag`` starts at once with no Authorize, "asked" when the charger asks
    the CSMS (and, refused, does not start). Leaves connector 1 Available."""
    mark = csms.mark()
    d.plug(1)
    await d.until(lambda s: conn(s, 1)["status"] == "Preparing", what="Preparing")
    d.badge(tag)
    first = await first_of(csms, ("Authorize", "StartTransaction"), since=mark)
    if first.action == "StartTransaction":
        assert first.payload["idTag"] == tag
        await d.until(lambda s: conn(s, 1)["transaction_id"] is not None, what="transaction id")
        await end_session(d, csms, tag)
        return "local"
    assert first.payload == {"idTag": tag}
    await round_trip(csms, first.seq)
    d.unplug(1)
    await d.until(lambda s: conn(s, 1)["status"] == "Available", what="Available")
    assert calls_since(csms, "StartTransaction", mark) == []
    return "asked"


async def raw_call(csms: CentralSystem, action: str, payload: Any) -> list[Any]:
    """Send a CALL as a raw frame (no schema check on our side); the charger's answer frame."""
    uid = str(uuid.uuid4())
    since = await csms.send_raw(BOX, json.dumps([2, uid, action, payload]))
    frame = await csms.wait_frame(
        BOX, lambda f: isinstance(f.json(), list) and f.json()[0] in (3, 4) and f.json()[1] == uid,
        since=since,
    )
    return frame.json()


def accepted(tag: str, **info: Any) -> dict[str, Any]:
    return {"idTag": tag, "idTagInfo": {"status": "Accepted", **info}}


# ---------------------------------------------------------------- R-AUTH 1/2: auth modes


async def test_r_auth_1_auth_options_follow_change_configuration(daemon, csms):
    assert daemon.status()["auth_options"] == ["rfid", "qr", "app"]

    async def change(key: str, value: str) -> str:
        return (await csms.call(BOX, "ChangeConfiguration", {"key": key, "value": value}))["status"]

    assert await change("PosEnabled", "true") == "Accepted"
    assert daemon.status()["auth_options"] == ["rfid", "qr", "app", "pos"]
    assert await change("RFIDEnabled", "false") == "Accepted"
    assert await change("APPEEnabled", "false") == "Accepted"  # the guide's other spelling of AppEnabled
    assert daemon.status()["auth_options"] == ["qr", "pos"]
    assert await change("AutoCharge", "true") == "Accepted"
    assert daemon.status()["auth_options"] == ["qr", "pos", "autocharge"]
    assert await change("FreeCharging", "true") == "Accepted"
    assert daemon.status()["auth_options"] == ["free"]
    # exclusive: no other mode while FreeCharging is true (guide, Note1)
    assert await change("RFIDEnabled", "true") == "Rejected"
    assert daemon.status()["auth_options"] == ["free"]
    assert await change("FreeCharging", "false") == "Accepted"
    assert daemon.status()["auth_options"] == ["qr", "pos", "autocharge"]
    assert await change("QRCodeEnabled", "false") == "Accepted"  # the other spelling of QRcodeEnabled
    assert await change("ISO15118PnCEnabled", "true") == "Accepted"
    assert daemon.status()["auth_options"] == ["pos", "autocharge", "pnc"]
    assert await change("POSEnabled", "false") == "Accepted"
    assert await change("AppEnabled", "true") == "Accepted"
    assert daemon.status()["auth_options"] == ["app", "autocharge", "pnc"]


async def test_r_auth_2_legacy_authentication_ocpp_mode_maps_to_free_and_back(daemon, csms):
    answer = await csms.call(BOX, "ChangeConfiguration", {"key": "AuthenticationOCPPMode", "value": "false"})
    assert answer == {"status": "Accepted"}
    assert daemon.status()["auth_options"] == ["free"]
    answer = await csms.call(BOX, "ChangeConfiguration", {"key": "AuthenticationOCPPMode", "value": "true"})
    assert answer == {"status": "Accepted"}
    options = daemon.status()["auth_options"]
    assert "free" not in options and {"rfid", "qr"} <= set(options)


async def test_r_auth_1_rfid_disabled_badge_is_ignored(daemon, csms):
    await csms.call(BOX, "ChangeConfiguration", {"key": "RFIDEnabled", "value": "false"})
    daemon.plug(1)
    await daemon.until(lambda s: conn(s, 1)["status"] == "Preparing", what="Preparing")
    mark = csms.mark()
    daemon.badge("AABB0001")
    await until_log(daemon, "badge AABB0001 ignored")
    await round_trip(csms, mark)
    assert calls_since(csms, "Authorize", mark) == [] and calls_since(csms, "StartTransaction", mark) == []


@pytest.mark.parametrize("mac", ["AA:BB:CC:dd:ee:0f", "aa-bb-cc-dd-ee-0f"])
async def test_r_auth_1_autocharge_idtag_is_prefix_and_ev_mac(csms, make_daemon, mac):
    d = await boot(make_daemon, csms, keys={"AutoCharge": True, "MacAddressPrefix": "VID:"})
    assert d.status()["auth_options"] == ["rfid", "qr", "app", "autocharge"]
    d.rig(cmd="ev", connector=1, mac=mac)
    mark = csms.mark()
    d.plug(1)
    auth = await csms.wait_for("Authorize", since=mark)
    assert auth.payload == {"idTag": "VID:AABBCCDDEE0F"}
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["idTag"] == "VID:AABBCCDDEE0F" and start.payload["connectorId"] == 1
    assert "reservationId" not in start.payload
    await d.until(lambda s: conn(s, 1)["id_tag"] == "VID:AABBCCDDEE0F", what="session")


async def test_r_auth_1_autocharge_ev_without_mac_waits_for_a_badge(csms, make_daemon):
    d = await boot(make_daemon, csms, keys={"AutoCharge": True, "MacAddressPrefix": "VID:"})
    d.rig(cmd="ev", connector=1, mac="")
    mark = csms.mark()
    d.plug(1)
    await until_log(d, "the EV gave no autocharge identity")
    assert calls_since(csms, "Authorize", mark) == []
    d.badge("CARD01")  # RFIDEnabled stays on beside AutoCharge
    auth = await csms.wait_for("Authorize", since=mark)
    assert auth.payload == {"idTag": "CARD01"}
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["idTag"] == "CARD01"


async def test_r_auth_1_pnc_and_autocharge_ev_without_contract_uses_its_mac(csms, make_daemon):
    d = await boot(make_daemon, csms, keys={"AutoCharge": True, "ISO15118PnCEnabled": True,
                                             "MacAddressPrefix": "VID:"})
    assert d.status()["auth_options"] == ["rfid", "qr", "app", "autocharge", "pnc"]
    d.rig(cmd="ev", connector=1, mac="AA:BB:CC:DD:EE:01")  # the mock EV has no contract id
    mark = csms.mark()
    d.plug(1)
    auth = await csms.wait_for("Authorize", since=mark, timeout=3)
    assert auth.payload == {"idTag": "VID:AABBCCDDEE01"}


def test_r_auth_1_pnc_wins_over_autocharge_at_core_level(tmp_path):
    """PnC: not reachable over the rig (no contract id), so at the charger-core level."""
    from controller.core import commands as cmd
    from controller.core import events as ev
    from controller.core.charger import Charger, Identity
    from controller.core.keys import KeyStore
    from controller.core.models import find_model
    from controller.store.sqlite import Store
    from drivers.interfaces import MeterReading, PowerStatus

    class Clock:
        def __init__(self) -> None:
            self.mono, self.now = 1000.0, datetime(2026, 4, 16, 8, 0, tzinfo=UTC)

        def monotonic(self) -> float:
            return self.mono

        def wall(self) -> datetime:
            return self.now

        def set_wall(self, now: datetime) -> None:
            self.now = now

    def run(contract_id: str | None, mac: str | None, **seeds: object) -> list[Any]:
        store = Store.open(tmp_path / f"s{len(list(tmp_path.iterdir()))}.sqlite")
        model = find_model("EVlink Pro DC 180")
        keys = KeyStore(model.key_values(), seeds=seeds, persisted=store.keys())
        ch = Charger(model=model, keys=keys, store=store, clock=Clock(), identity=Identity("SN", "1"))
        ch.handle(ev.Started())
        ch.handle(ev.LinkUp())
        ch.handle(ev.CallAnswered("boot", "BootNotification",
                                  {"status": "Accepted", "interval": 300, "currentTime": "2026-04-16T08:00:00Z"}))
        out = ch.handle(ev.Plugged(1))
        assert cmd.Sample(1, "plug") in out
        meter = MeterReading(energy_wh=1000, power_w=0.0, voltage_v=0.0, current_a=0.0)
        power = PowerStatus(plugged=True, output_power_w=0.0, voltage_v=0.0, current_a=0.0, offered_w=0.0,
                            soc_pct=30, ev_mac=mac, contract_id=contract_id)
        out = ch.handle(ev.Sampled(1, "plug", meter, power))
        return [c.payload for c in out if isinstance(c, cmd.SendCall) and c.action == "Authorize"]

    both = {"AutoCharge": True, "ISO15118PnCEnabled": True, "MacAddressPrefix": "VID:",
            "CentralContractValidationAllowed": True}
    assert run("DEABCC1234567X", "02:00:00:00:00:01", **both) == [{"idTag": "DEABCC1234567X"}]
    assert run("DEABCC1234567X", "02:00:00:00:00:01", AutoCharge=True, MacAddressPrefix="VID:") == [
        {"idTag": "VID:020000000001"}
    ]
    # a contract id that is not a valid idTag (> 20 characters) is not sent
    assert run("X" * 21, "02:00:00:00:00:01", **both) == []


# ---------------------------------------------------------------- online authorization


async def test_r_auth_7_tc_007_start_with_cached_id_sends_no_authorize(csms, make_daemon):
    d = await boot(make_daemon, csms, keys={"AuthorizationCacheEnabled": True, "LocalPreAuthorize": True})
    mark = csms.mark()
    start = await start_session(d, csms, "CACHED01")
    auth = calls_since(csms, "Authorize", mark)
    assert [a.payload for a in auth] == [{"idTag": "CACHED01"}]  # unknown yet: asked
    assert auth[0].seq < start.seq
    await end_session(d, csms, "CACHED01")
    mark = csms.mark()
    start = await start_session(d, csms, "CACHED01")
    assert start.payload["idTag"] == "CACHED01" and start.payload["connectorId"] == 1
    assert calls_since(csms, "Authorize", mark) == []  # TC_007: started from the cache
    # an id not in the cache is still asked for
    mark = csms.mark()
    d.plug(2)
    d.badge("OTHER01")
    assert (await csms.wait_for("Authorize", since=mark)).payload == {"idTag": "OTHER01"}
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["connectorId"] == 2 and start.payload["idTag"] == "OTHER01"


async def test_r_auth_7_tc_007_no_preauthorize_without_local_pre_authorize(csms, make_daemon):
    d = await boot(make_daemon, csms, keys={"AuthorizationCacheEnabled": True, "LocalPreAuthorize": False})
    await start_session(d, csms, "CACHED01")
    await end_session(d, csms, "CACHED01")
    mark = csms.mark()
    await start_session(d, csms, "CACHED01")
    assert [a.payload for a in calls_since(csms, "Authorize", mark)] == [{"idTag": "CACHED01"}]


async def test_r_auth_7_tc_008_start_with_id_in_local_list_sends_no_authorize(csms, make_daemon):
    d = await boot(make_daemon, csms, keys={"LocalAuthListEnabled": True, "LocalPreAuthorize": True})
    answer = await csms.call(BOX, "SendLocalList", {
        "listVersion": 1, "updateType": "Full",
        "localAuthorizationList": [accepted("LISTED01"), {"idTag": "BLOCKED1", "idTagInfo": {"status": "Blocked"}}],
    })
    assert answer == {"status": "Accepted"}
    mark = csms.mark()
    start = await start_session(d, csms, "LISTED01")
    assert start.payload["idTag"] == "LISTED01" and start.payload["connectorId"] == 1
    assert "reservationId" not in start.payload
    assert calls_since(csms, "Authorize", mark) == []
    await end_session(d, csms, "LISTED01")
    # a Blocked entry never starts by itself: the CSMS decides (here: Invalid, no start)
    csms.respond("Authorize", {"idTagInfo": {"status": "Invalid"}})
    assert await probe(d, csms, "BLOCKED1") == "asked"
    assert await probe(d, csms, "UNLISTED") == "asked"


@pytest.mark.parametrize("status", ["Invalid", "Blocked", "Expired"])
async def test_r_auth_4_tc_023_authorize_not_accepted_does_not_start(daemon, csms, status):
    daemon.plug(1)
    await daemon.until(lambda s: conn(s, 1)["status"] == "Preparing", what="Preparing")
    csms.respond("Authorize", {"idTagInfo": {"status": status}}, once=True)
    mark = csms.mark()
    daemon.badge("REFUSED1")
    auth = await csms.wait_for("Authorize", since=mark)
    assert auth.payload == {"idTag": "REFUSED1"}
    await round_trip(csms, auth.seq)
    assert daemon.connector(1)["status"] == "Preparing" and daemon.connector(1)["id_tag"] is None
    # the connector is still free: the next badge (accepted) is the first to start
    daemon.badge("GOOD0001")
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["idTag"] == "GOOD0001"
    assert [r.payload["idTag"] for r in calls_since(csms, "StartTransaction", mark)] == ["GOOD0001"]


async def test_r_auth_tc_068_stop_by_the_same_idtag_without_authorize(daemon, csms):
    await start_session(daemon, csms, "OWNER001")
    mark = csms.mark()
    daemon.badge("OWNER001")
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop.payload["transactionId"] == 1
    assert stop.payload["reason"] == "Local" and stop.payload["idTag"] == "OWNER001"
    assert calls_since(csms, "Authorize", mark) == []
    await csms.wait_for("StatusNotification", since=mark,
                        predicate=lambda r: r.payload["connectorId"] == 1 and r.payload["status"] == "Finishing")


async def test_r_auth_tc_068_idtags_compare_case_insensitively(daemon, csms):
    """IdToken is a CiString20: a remote start for "abc123" is stopped by the badge ABC123."""
    mark = csms.mark()
    assert (await csms.call(BOX, "RemoteStartTransaction", {"idTag": "abc123", "connectorId": 1})) == {
        "status": "Accepted"}
    daemon.plug(1)
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["idTag"] == "abc123"
    await daemon.until(lambda s: conn(s, 1)["transaction_id"] is not None, what="transaction id")
    mark = csms.mark()
    daemon.badge("ABC123")
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop.payload["reason"] == "Local" and stop.payload["idTag"] == "ABC123"
    assert calls_since(csms, "Authorize", mark) == []


async def test_r_auth_7_local_list_ids_compare_case_insensitively(csms, make_daemon):
    d = await boot(make_daemon, csms, keys=LIST_KEYS)
    csms.respond("Authorize", {"idTagInfo": {"status": "Invalid"}})
    assert await send_list(csms, 1, "Full", [accepted("listed01")]) == "Accepted"
    assert await probe(d, csms, "LISTED01") == "local"


async def test_r_auth_tc_069_stop_by_another_idtag_with_the_same_parent(daemon, csms):
    csms.respond("Authorize", {"idTagInfo": {"status": "Accepted", "parentIdTag": "GROUP1"}}, once=True)
    await start_session(daemon, csms, "MEMBERA1")
    csms.respond("Authorize", {"idTagInfo": {"status": "Accepted", "parentIdTag": "GROUP1"}}, once=True)
    mark = csms.mark()
    daemon.badge("MEMBERB1")
    auth = await csms.wait_for("Authorize", since=mark)
    assert auth.payload == {"idTag": "MEMBERB1"}
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert auth.seq < stop.seq
    assert stop.payload["transactionId"] == 1
    assert stop.payload["reason"] == "Local" and stop.payload["idTag"] == "MEMBERB1"


@pytest.mark.parametrize("other", [
    {"status": "Accepted", "parentIdTag": "GROUP2"},  # another group
    {"status": "Accepted"},  # no group at all
    {"status": "Invalid", "parentIdTag": "GROUP1"},  # same group but not authorized
])
async def test_r_auth_stop_by_an_idtag_of_another_group_is_refused(daemon, csms, other):
    csms.respond("Authorize", {"idTagInfo": {"status": "Accepted", "parentIdTag": "GROUP1"}}, once=True)
    await start_session(daemon, csms, "MEMBERA1")
    csms.respond("Authorize", {"idTagInfo": other}, once=True)
    mark = csms.mark()
    daemon.badge("STRANGER")
    auth = await csms.wait_for("Authorize", since=mark)
    assert auth.payload == {"idTag": "STRANGER"}
    await round_trip(csms, auth.seq)
    daemon.advance(2)
    await round_trip(csms, csms.mark())
    assert calls_since(csms, "StopTransaction", mark) == []
    c = daemon.connector(1)
    assert c["transaction_id"] == 1 and c["id_tag"] == "MEMBERA1" and c["status"] == "Charging"
    # the owner still stops it
    daemon.badge("MEMBERA1")
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop.payload["idTag"] == "MEMBERA1" and stop.payload["reason"] == "Local"


# ---------------------------------------------------------------- R-AUTH 6: offline strategies

#: the guide's "Offline strategies" table (AuthorizationCacheEnable[d] / LocalAuthListEnabled
#: as the row says; allow-all and reject-all with both stores on, so that known ids are known)
STRATEGIES = {
    "allow_all": (
        {"AllowOfflineTxForUnknownId": True, "LocalAuthorizeOffline": True,
         "AuthorizationCacheEnabled": True, "LocalAuthListEnabled": True},
        ["CACHED01", "LISTED01", "UNKNOWN1"],
    ),
    "cache_only": (
        {"AllowOfflineTxForUnknownId": False, "LocalAuthorizeOffline": True,
         "AuthorizationCacheEnabled": True, "LocalAuthListEnabled": False},
        ["CACHED01"],
    ),
    "local_list_only": (
        {"AllowOfflineTxForUnknownId": False, "LocalAuthorizeOffline": True,
         "AuthorizationCacheEnabled": False, "LocalAuthListEnabled": True},
        ["LISTED01"],
    ),
    "reject_all": (
        {"AllowOfflineTxForUnknownId": False, "LocalAuthorizeOffline": False,
         "AuthorizationCacheEnabled": True, "LocalAuthListEnabled": True},
        [],
    ),
}


async def offline_badge(d: Daemon, tag: str, starts: bool) -> None:
    """Offline: plug 1, badge ``tag``; if it starts, stop it with the same badge; unplug."""
    d.plug(1)
    await d.until(lambda s: conn(s, 1)["status"] == "Preparing", what="Preparing")
    d.badge(tag)
    if starts:
        await until_log(d, f"offline authorization of {tag}: allowed")
        await d.until(lambda s: conn(s, 1)["id_tag"] == tag, what=f"offline start of {tag}")
        d.badge(tag)  # the same idTag stops its transaction, offline too
        await d.until(lambda s: conn(s, 1)["id_tag"] is None and conn(s, 1)["status"] == "Finishing",
                      what=f"offline stop of {tag}")
    else:
        await until_log(d, f"offline authorization of {tag}: refused")
        assert conn(d.status(), 1)["id_tag"] is None
    d.unplug(1)
    await d.until(lambda s: conn(s, 1)["status"] == "Available", what="Available")


@pytest.mark.parametrize("strategy", list(STRATEGIES))
async def test_r_auth_6_tc_037_offline_start_per_strategy(csms, make_daemon, strategy):
    keys, starters = STRATEGIES[strategy]
    d = await boot(make_daemon, csms, keys=keys)
    # online: CACHED01 charges once (cached if the cache is on), LISTED01 goes into the list
    await start_session(d, csms, "CACHED01")
    await end_session(d, csms, "CACHED01")
    answer = await csms.call(BOX, "SendLocalList",
                             {"listVersion": 1, "updateType": "Full", "localAuthorizationList": [accepted("LISTED01")]})
    assert answer == {"status": "Accepted" if keys["LocalAuthListEnabled"] else "NotSupported"}
    port = await go_offline(d, csms)
    for tag in ("CACHED01", "LISTED01", "UNKNOWN1"):
        await offline_badge(d, tag, tag in starters)
    assert d.status()["queued_messages"] == 2 * len(starters)
    async with CentralSystem("127.0.0.1", port) as again:
        await again.wait_for("BootNotification", timeout=15)
        await d.until(lambda s: s["queued_messages"] == 0, what="queue delivered")
        tx = [r for r in again.calls() if r.action in ("StartTransaction", "StopTransaction")]
        assert [r.action for r in tx] == ["StartTransaction", "StopTransaction"] * len(starters)
        assert [r.payload["idTag"] for r in tx] == [t for t in starters for _ in (0, 1)]
        for n, (start, stop) in enumerate(zip(tx[::2], tx[1::2]), start=1):
            assert start.payload["connectorId"] == 1 and "reservationId" not in start.payload
            assert stop.payload["transactionId"] == n and stop.payload["reason"] == "Local"
            assert start.payload["timestamp"] <= stop.payload["timestamp"]
        assert again.calls("Authorize") == []


@pytest.mark.parametrize("stop_on_invalid", [True, False])
async def test_r_auth_8_offline_start_rejected_by_start_transaction_conf(csms, make_daemon, stop_on_invalid):
    d = await boot(make_daemon, csms, keys={"StopTransactionOnInvalidId": stop_on_invalid})
    port = await go_offline(d, csms)
    d.plug(1)
    await d.until(lambda s: conn(s, 1)["status"] == "Preparing", what="Preparing")
    d.badge("BADTAG01")  # AllowOfflineTxForUnknownId = true: starts offline
    await d.until(lambda s: conn(s, 1)["id_tag"] == "BADTAG01", what="offline start")
    async with CentralSystem("127.0.0.1", port, rejected_tags={"BADTAG01"}) as again:
        start = await again.wait_for("StartTransaction", timeout=15)
        assert start.payload["idTag"] == "BADTAG01"
        reply = await again.wait_frame(BOX, lambda f: f.json()[1] == start.unique_id, since=start.seq,
                                       direction="out")
        assert reply.json()[2]["idTagInfo"] == {"status": "Invalid"}
        if stop_on_invalid:
            stop = await again.wait_for("StopTransaction", since=start.seq)
            assert stop.payload["transactionId"] == 1 and stop.payload["reason"] == "DeAuthorized"
            assert "idTag" not in stop.payload
            await d.until(lambda s: conn(s, 1)["status"] == "Finishing", what="Finishing")
        else:
            await d.until(lambda s: conn(s, 1)["transaction_id"] == 1, what="transaction id")
            d.advance(10)
            mark = again.mark()
            await again.call(BOX, "TriggerMessage", {"requestedMessage": "Heartbeat"})
            await again.wait_for("Heartbeat", since=mark)
            assert again.calls("StopTransaction") == []
            c = d.connector(1)
            assert c["transaction_id"] == 1 and c["status"] == "Charging" and c["energy_wh"] > 0
            # the holder can still stop it
            d.badge("BADTAG01")
            stop = await again.wait_for("StopTransaction", since=start.seq)
            assert stop.payload["reason"] == "Local" and stop.payload["idTag"] == "BADTAG01"


# ---------------------------------------------------------------- R-AUTH 7: the authorization cache

CACHE_ONLY = STRATEGIES["cache_only"][0]


async def test_r_auth_7_tc_061_clear_cache(csms, make_daemon):
    d = await boot(make_daemon, csms, keys=CACHE_ONLY)
    for tag in ("CACHED01", "CACHED02"):
        await start_session(d, csms, tag)
        await end_session(d, csms, tag)
    assert (await csms.call(BOX, "ClearCache", {})) == {"status": "Accepted"}
    port = await go_offline(d, csms)
    await offline_badge(d, "CACHED01", starts=False)  # no longer in the cache: refused offline
    await offline_badge(d, "CACHED02", starts=False)
    assert d.status()["queued_messages"] == 0
    async with CentralSystem("127.0.0.1", port) as again:
        await again.wait_for("BootNotification", timeout=15)
        await d.until(lambda s: s["link"] == "connected", what="back online")
        mark = again.mark()
        await again.call(BOX, "TriggerMessage", {"requestedMessage": "Heartbeat"})
        await again.wait_for("Heartbeat", since=mark)
        assert again.calls("StartTransaction") == [] and again.calls("StopTransaction") == []


async def test_r_auth_7_cache_entry_expires_on_the_charger_clock(csms, make_daemon):
    d = await boot(make_daemon, csms, keys=CACHE_ONLY)
    expiry = in_seconds(120)
    info = {"status": "Accepted", "expiryDate": expiry}
    # every idTagInfo of this session carries the expiry (each one updates the cache)
    csms.respond("Authorize", {"idTagInfo": info}, once=True)
    csms.respond("StartTransaction", {"transactionId": 1, "idTagInfo": info}, once=True)
    csms.respond("StopTransaction", {"idTagInfo": info}, once=True)
    await start_session(d, csms, "EXPIRING")
    await end_session(d, csms, "EXPIRING")
    port = await go_offline(d, csms)
    await offline_badge(d, "EXPIRING", starts=True)  # before expiryDate: from the cache
    d.advance(180)  # past expiryDate on the charger's clock (offline: no Heartbeat resets it)
    await offline_badge(d, "EXPIRING", starts=False)
    async with CentralSystem("127.0.0.1", port) as again:
        await again.wait_for("BootNotification", timeout=15)
        await d.until(lambda s: s["queued_messages"] == 0, what="queue delivered")
        assert [r.payload["idTag"] for r in again.calls("StartTransaction")] == ["EXPIRING"]


async def test_r_auth_7_cache_entry_with_past_expiry_is_not_used(csms, make_daemon):
    d = await boot(make_daemon, csms, keys={**CACHE_ONLY, "LocalPreAuthorize": True})
    info = {"status": "Accepted", "expiryDate": in_seconds(-3600)}
    csms.respond("Authorize", {"idTagInfo": info}, once=True)
    csms.respond("StartTransaction", {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}, once=True)
    csms.respond("StopTransaction", {"idTagInfo": info}, once=True)
    await start_session(d, csms, "STALE001")
    await end_session(d, csms, "STALE001")
    # online with LocalPreAuthorize: an expired entry does not start by itself
    csms.respond("Authorize", {"idTagInfo": {"status": "Invalid"}})
    assert await probe(d, csms, "STALE001") == "asked"
    # the Invalid answer replaced the entry; offline, cache only: refused either way
    await go_offline(d, csms)
    await offline_badge(d, "STALE001", starts=False)


async def test_r_auth_7_cache_disabled_nothing_is_cached(csms, make_daemon):
    d = await boot(make_daemon, csms, keys={**CACHE_ONLY, "AuthorizationCacheEnabled": False,
                                             "LocalAuthorizeOffline": True})
    await start_session(d, csms, "CACHED01")
    await end_session(d, csms, "CACHED01")
    answer = await csms.call(BOX, "ChangeConfiguration", {"key": "AuthorizationCacheEnabled", "value": "true"})
    assert answer == {"status": "Accepted"}
    await go_offline(d, csms)
    await offline_badge(d, "CACHED01", starts=False)


# ---------------------------------------------------------------- R-AUTH 7: the local list


async def test_r_auth_7_tc_042_get_local_list_version(daemon, csms):
    # LocalAuthListEnabled false (the guide's default): -1
    assert (await csms.call(BOX, "GetLocalListVersion", {})) == {"listVersion": -1}
    assert daemon.status()["local_list_version"] == -1
    answer = await csms.call(BOX, "ChangeConfiguration", {"key": "LocalAuthListEnabled", "value": "true"})
    assert answer == {"status": "Accepted"}
    assert (await csms.call(BOX, "GetLocalListVersion", {})) == {"listVersion": 0}  # enabled, empty
    assert daemon.status()["local_list_version"] == 0


LIST_KEYS = {"LocalAuthListEnabled": True, "LocalPreAuthorize": True}


async def send_list(csms: CentralSystem, version: int, update: str, entries: list[dict[str, Any]]) -> str:
    payload = {"listVersion": version, "updateType": update, "localAuthorizationList": entries}
    return (await csms.call(BOX, "SendLocalList", payload))["status"]


async def list_version(csms: CentralSystem) -> int:
    return (await csms.call(BOX, "GetLocalListVersion", {}))["listVersion"]


async def test_r_auth_7_tc_043_send_local_list_full_and_differential(csms, make_daemon):
    d = await boot(make_daemon, csms, keys=LIST_KEYS)
    csms.respond("Authorize", {"idTagInfo": {"status": "Invalid"}})  # only the list lets anyone in
    assert await send_list(csms, 1, "Full", [accepted("TAGA"), accepted("TAGB")]) == "Accepted"
    assert await list_version(csms) == 1
    assert await probe(d, csms, "TAGA") == "local"
    # Differential: add TAGC, remove TAGA (no idTagInfo), block TAGB
    assert await send_list(csms, 2, "Differential", [
        accepted("TAGC"), {"idTag": "TAGA"}, {"idTag": "TAGB", "idTagInfo": {"status": "Blocked"}},
    ]) == "Accepted"
    assert await list_version(csms) == 2
    assert d.status()["local_list_version"] == 2
    assert [await probe(d, csms, t) for t in ("TAGA", "TAGB", "TAGC")] == ["asked", "asked", "local"]
    # Differential with a version not above the current one: VersionMismatch, list unchanged
    for version in (2, 1):
        assert await send_list(csms, version, "Differential", [accepted("TAGD")]) == "VersionMismatch"
    assert await list_version(csms) == 2
    assert await probe(d, csms, "TAGD") == "asked"
    # Full replaces everything
    assert await send_list(csms, 5, "Full", [accepted("TAGD")]) == "Accepted"
    assert await list_version(csms) == 5
    assert [await probe(d, csms, t) for t in ("TAGC", "TAGD")] == ["asked", "local"]
    # Full with no entries empties the list (version 0 is the empty list's)
    assert await send_list(csms, 0, "Full", []) == "Accepted"
    assert await list_version(csms) == 0
    assert await probe(d, csms, "TAGD") == "asked"


@pytest.mark.parametrize(("update", "entries"), [
    ("Full", [accepted("DUP1"), accepted("DUP1")]),
    ("Differential", [accepted("DUP1"), {"idTag": "dup1"}]),  # idTags are case-insensitive
    ("Full", [{"idTag": "NOINFO1"}]),  # a Full entry needs idTagInfo
])
async def test_r_auth_7_tc_043_send_local_list_failed_leaves_the_list_whole(csms, make_daemon, update, entries):
    d = await boot(make_daemon, csms, keys=LIST_KEYS)
    csms.respond("Authorize", {"idTagInfo": {"status": "Invalid"}})
    assert await send_list(csms, 3, "Full", [accepted("KEEP0001")]) == "Accepted"
    assert await send_list(csms, 4, update, [*entries, accepted("NEW00001")]) == "Failed"
    assert await list_version(csms) == 3
    assert [await probe(d, csms, t) for t in ("KEEP0001", "NEW00001")] == ["local", "asked"]


async def test_r_auth_7_tc_043_send_local_list_not_supported_when_disabled(daemon, csms):
    assert await send_list(csms, 1, "Full", [accepted("TAGA")]) == "NotSupported"
    assert await send_list(csms, 2, "Differential", [accepted("TAGB")]) == "NotSupported"
    assert await list_version(csms) == -1


async def test_r_auth_7_send_local_list_over_400_entries_fails_list_unchanged(csms, make_daemon):
    d = await boot(make_daemon, csms, keys=LIST_KEYS)
    csms.respond("Authorize", {"idTagInfo": {"status": "Invalid"}})
    assert await send_list(csms, 1, "Full", [accepted("KEEP0001")]) == "Accepted"
    many = [accepted(f"BULK{n:05d}") for n in range(401)]  # SendLocalListMaxLength = 400
    # the schema sets no maximum: the OCPP answer is SendLocalList.conf Failed
    assert await send_list(csms, 2, "Differential", many) == "Failed"
    assert await send_list(csms, 2, "Full", many) == "Failed"
    assert await list_version(csms) == 1
    assert [await probe(d, csms, t) for t in ("KEEP0001", "BULK00000")] == ["local", "asked"]
    # exactly 400 is within the limit
    assert await send_list(csms, 2, "Differential", many[:400]) == "Accepted"
    assert await list_version(csms) == 2


@pytest.mark.parametrize(("payload", "code"), [
    ({"listVersion": 2, "updateType": "Differential",
      "localAuthorizationList": [{"idTag": "T" * 21, "idTagInfo": {"status": "Accepted"}}]},
     "PropertyConstraintViolation"),
    ({"listVersion": 2, "updateType": "Partial", "localAuthorizationList": [accepted("NEW00001")]},
     "PropertyConstraintViolation"),
    ({"listVersion": 2, "updateType": "Full",
      "localAuthorizationList": [{"idTag": "NEW00001", "idTagInfo": {"status": "Maybe"}}]},
     "PropertyConstraintViolation"),
    ({"listVersion": "2", "updateType": "Full", "localAuthorizationList": []}, "TypeConstraintViolation"),
    # the schema's "format": "date-time" is not enforced by the validator: the charger's own
    # check answers SendLocalList.conf Failed
    ({"listVersion": 2, "updateType": "Differential", "localAuthorizationList": [
        {"idTag": "NEW00001", "idTagInfo": {"status": "Accepted", "expiryDate": "not-a-date"}}]}, "Failed"),
])
async def test_r_auth_7_send_local_list_bad_input_callerror_state_unchanged(csms, make_daemon, payload, code):
    d = await boot(make_daemon, csms, keys=LIST_KEYS)
    csms.respond("Authorize", {"idTagInfo": {"status": "Invalid"}})
    assert await send_list(csms, 1, "Full", [accepted("KEEP0001")]) == "Accepted"
    answer = await raw_call(csms, "SendLocalList", payload)
    if code == "Failed":
        assert answer[0] == 3 and answer[2] == {"status": "Failed"}, answer
    else:
        assert answer[0] == 4 and answer[2] == code, answer
    assert await list_version(csms) == 1
    assert [await probe(d, csms, t) for t in ("KEEP0001", "NEW00001")] == ["local", "asked"]
    assert csms.connected(BOX) and d.status()["link"] == "connected"


async def test_r_auth_7_local_list_and_cache_survive_a_restart(csms, make_daemon):
    d = await boot(make_daemon, csms, keys={**LIST_KEYS, "AuthorizationCacheEnabled": True})
    await start_session(d, csms, "CACHED01")
    await end_session(d, csms, "CACHED01")
    assert await send_list(csms, 7, "Full", [accepted("LISTED01")]) == "Accepted"
    await d.stop()
    mark = csms.mark()
    await d.start()
    await csms.wait_for("BootNotification", since=mark, timeout=15)
    await d.until(lambda s: s["link"] == "connected", what="boot")
    assert await list_version(csms) == 7
    csms.respond("Authorize", {"idTagInfo": {"status": "Invalid"}})
    assert [await probe(d, csms, t) for t in ("LISTED01", "CACHED01", "UNKNOWN1")] == ["local", "local", "asked"]


async def test_r_auth_7_local_list_has_priority_over_the_cache_offline(csms, make_daemon):
    """OCPP 1.6 §3.5.3: an id Blocked in the list does not charge offline, whatever the cache says."""
    d = await boot(make_daemon, csms, keys={**STRATEGIES["allow_all"][0]})
    await start_session(d, csms, "BOTH0001")  # Accepted: cached
    await end_session(d, csms, "BOTH0001")
    assert await send_list(csms, 1, "Full", [{"idTag": "BOTH0001", "idTagInfo": {"status": "Blocked"}}]) == "Accepted"
    await go_offline(d, csms)
    await offline_badge(d, "BOTH0001", starts=False)  # known and Blocked: not let in by allow-all
    await offline_badge(d, "NEWCOMER", starts=True)


async def test_r_auth_tc_069_offline_group_stop_from_the_local_list(csms, make_daemon):
    d = await boot(make_daemon, csms, keys=LIST_KEYS)
    group = {"status": "Accepted", "parentIdTag": "GROUP1"}
    assert await send_list(csms, 1, "Full", [
        {"idTag": "MEMBERA1", "idTagInfo": group}, {"idTag": "MEMBERB1", "idTagInfo": group},
        {"idTag": "OUTSIDER", "idTagInfo": {"status": "Accepted", "parentIdTag": "GROUP2"}},
    ]) == "Accepted"
    await start_session(d, csms, "MEMBERA1")  # pre-authorized from the list, group GROUP1
    port = await go_offline(d, csms)
    d.badge("OUTSIDER")
    await until_log(d, "badge OUTSIDER refused")
    assert conn(d.status(), 1)["id_tag"] == "MEMBERA1"
    d.badge("MEMBERB1")
    await d.until(lambda s: conn(s, 1)["id_tag"] is None, what="stopped by the other member")
    async with CentralSystem("127.0.0.1", port) as again:
        stop = await again.wait_for("StopTransaction", timeout=15)
        assert stop.payload["transactionId"] == 1
        assert stop.payload["reason"] == "Local" and stop.payload["idTag"] == "MEMBERB1"


async def test_r_auth_8_start_transaction_conf_blocked_stops_and_updates_the_cache(csms, make_daemon):
    d = await boot(make_daemon, csms, keys=CACHE_ONLY)
    csms.respond("StartTransaction", {"transactionId": 1, "idTagInfo": {"status": "Blocked"}}, once=True)
    csms.respond("StopTransaction", {}, once=True)  # no idTagInfo: the cache keeps Blocked
    mark = csms.mark()
    d.plug(1)
    d.badge("BLOCKME1")
    assert (await csms.wait_for("Authorize", since=mark)).payload == {"idTag": "BLOCKME1"}  # Accepted
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop.payload["transactionId"] == 1 and stop.payload["reason"] == "DeAuthorized"
    d.unplug(1)
    await d.until(lambda s: conn(s, 1)["status"] == "Available" and s["queued_messages"] == 0, what="idle")
    await go_offline(d, csms)
    await offline_badge(d, "BLOCKME1", starts=False)  # cached Blocked from StartTransaction.conf


async def test_r_auth_7_tc_061_clear_cache_leaves_the_local_list(csms, make_daemon):
    d = await boot(make_daemon, csms, keys={**LIST_KEYS, "AuthorizationCacheEnabled": True})
    await start_session(d, csms, "CACHED01")
    await end_session(d, csms, "CACHED01")
    assert await send_list(csms, 4, "Full", [accepted("LISTED01")]) == "Accepted"
    assert (await csms.call(BOX, "ClearCache", {})) == {"status": "Accepted"}
    assert await list_version(csms) == 4
    csms.respond("Authorize", {"idTagInfo": {"status": "Invalid"}})
    assert [await probe(d, csms, t) for t in ("LISTED01", "CACHED01")] == ["local", "asked"]


async def test_r_auth_7_ids_of_the_local_list_are_never_cached(csms, make_daemon):
    """OCPP 1.6 §3.5.1: an Authorize answer for an id of the local list does not go into the cache."""
    d = await boot(make_daemon, csms, keys=STRATEGIES["allow_all"][0])  # LocalPreAuthorize false
    assert await send_list(csms, 1, "Full", [accepted("LISTED01")]) == "Accepted"
    csms.respond("Authorize", {"idTagInfo": {"status": "Blocked"}}, once=True)
    mark = csms.mark()
    d.plug(1)
    d.badge("LISTED01")
    auth = await csms.wait_for("Authorize", since=mark)  # no LocalPreAuthorize: asked, Blocked
    await round_trip(csms, auth.seq)
    d.unplug(1)
    assert await send_list(csms, 2, "Differential", [{"idTag": "LISTED01"}]) == "Accepted"
    await go_offline(d, csms)
    # not in the list any more, and the Blocked answer was not cached: unknown, allowed
    await offline_badge(d, "LISTED01", starts=True)
