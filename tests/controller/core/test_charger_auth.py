"""Scenario tests of who may charge: auth modes, offline strategies, cache, local list, reservations.

Same method as ``test_charger.py`` (whose :class:`Rig` this file reuses): the
real charger core, a real SQLite store in ``tmp_path``, a fake clock, and a rig
answering the core's commands -- no event loop, no sockets, no sleeping. Time
passes only through ``Rig.advance``; the fake wall clock moves with it, so
expiry dates (idTagInfo.expiryDate, ReserveNow.expiryDate) are honoured against
it.

:class:`AuthRig` adds what these scenarios need on top of the plain rig: an EV
that tells its MAC address / ISO 15118 contract id at plug-in (AutoCharge,
Plug & Charge), and a CSMS that answers Authorize, StartTransaction and
StopTransaction with whole idTagInfo objects (expiryDate, parentIdTag), not only
a status.

Requirements covered: R-AUTH 1, 6, 7, 8 and the stop rules of issue 3,
R-TX 5 (reserved connector), R-RES.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.core import events as ev
from controller.core.auth import plan_list_update
from controller.core.timefmt import rfc3339
from controller.store.sqlite import StoreError
from test_charger import PRO_DC, Rig

#: an error-severity DTC of a connector (ConnectorLockFailure): the connector goes Faulted
CONNECTOR_ERROR_DTC = "0x100205"


# ============================================================================ the rig
@dataclass
class AuthRig(Rig):
    """:class:`Rig` with EV identities at plug-in and whole idTagInfo answers from the CSMS."""

    def __post_init__(self) -> None:
        super().__post_init__()
        ids = list(self.charger.connectors)
        self.ev_mac: dict[int, str | None] = {cid: None for cid in ids}
        self.contract_id: dict[int, str | None] = {cid: None for cid in ids}
        # idTag -> the whole idTagInfo of the answer (else the plain rig's status-only answer)
        self.authorize_info: dict[str, dict[str, Any]] = {}
        self.start_info: dict[str, dict[str, Any]] = {}
        self.stop_info: dict[str, dict[str, Any]] = {}

    def reading(self, cid: int) -> tuple[Any, Any]:
        meter, power = super().reading(cid)
        return meter, dataclasses.replace(power, ev_mac=self.ev_mac[cid], contract_id=self.contract_id[cid])

    def _reply(self, c: Any) -> dict[str, Any]:
        if c.action == "Authorize" and c.payload["idTag"] in self.authorize_info:
            return {"idTagInfo": self.authorize_info[c.payload["idTag"]]}
        return super()._reply(c)

    def feed(self, event: object) -> list[Any]:
        if isinstance(event, ev.TxMessageDelivered) and event.action in ("StartTransaction", "StopTransaction"):
            sent = self.wire[-1].payload  # the queued message this answers (Rig.deliver sent it just now)
            table = self.start_info if event.action == "StartTransaction" else self.stop_info
            info = table.get(sent.get("idTag") or "")
            if info is not None:
                event = dataclasses.replace(event, reply={**event.reply, "idTagInfo": info})
        return super().feed(event)

    # ---------------------------------------------------------------- helpers
    def wall_in(self, seconds: float) -> str:
        """The RFC 3339 text of the fake wall clock ``seconds`` from now."""
        return rfc3339(self.clock.wall() + timedelta(seconds=seconds))

    def offline(self) -> None:
        self.feed(ev.LinkDown())

    def online_again(self) -> None:
        self.boot()

    def change(self, key: str, value: object) -> str:
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return self.request("ChangeConfiguration", {"key": key, "value": text})["status"]

    def send_list(self, version: int, update: str, entries: list[dict[str, Any]] | None = None) -> str:
        payload: dict[str, Any] = {"listVersion": version, "updateType": update}
        if entries is not None:
            payload["localAuthorizationList"] = entries
        return self.request("SendLocalList", payload)["status"]

    def list_version(self) -> int:
        return self.request("GetLocalListVersion", {})["listVersion"]

    def reserve(self, rid: int, cid: int, tag: str, seconds: float = 3600, parent: str | None = None) -> str:
        payload: dict[str, Any] = {
            "connectorId": cid, "expiryDate": self.wall_in(seconds), "idTag": tag, "reservationId": rid,
        }
        if parent is not None:
            payload["parentIdTag"] = parent
        return self.request("ReserveNow", payload)["status"]

    def starts(self, since: int = 0) -> list[dict[str, Any]]:
        return [m.payload for m in self.sent("StartTransaction", since)]

    def authorized_tags(self, since: int = 0) -> list[str]:
        return [m.payload["idTag"] for m in self.sent("Authorize", since)]

    def try_badge(self, tag: str, cid: int = 1) -> bool:
        """Plug ``cid``, present ``tag``; True when a transaction started. Leaves the connector free."""
        self.plug(cid)
        self.badge(tag)
        started = self.session(cid) is not None
        if started:
            self.badge(tag)  # the owner's badge stops it
        self.unplug(cid)
        return started

    def charge_and_leave(self, tag: str, cid: int = 1) -> None:
        """One whole visit of ``tag`` while online: badge, charge, badge again, unplug."""
        assert self.try_badge(tag, cid), f"{tag} did not start"


def entry(tag: str, status: str | None = "Accepted", expiry: str | None = None, parent: str | None = None
          ) -> dict[str, Any]:
    """One localAuthorizationList entry; ``status`` None: no idTagInfo (a delete in a Differential)."""
    e: dict[str, Any] = {"idTag": tag}
    if status is not None:
        info: dict[str, Any] = {"status": status}
        if expiry is not None:
            info["expiryDate"] = expiry
        if parent is not None:
            info["parentIdTag"] = parent
        e["idTagInfo"] = info
    return e


def listed(rig: AuthRig) -> dict[str, str]:
    """The local list as stored: idTag -> status."""
    with sqlite3.connect(rig.db_path) as conn:
        return dict(conn.execute("SELECT id_tag, status FROM local_list").fetchall())


@pytest.fixture
def make_rig(tmp_path: Path):
    rigs: list[AuthRig] = []

    def make(model: str = PRO_DC, **seeds: object) -> AuthRig:
        rig = AuthRig(tmp_path, model, seeds)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        try:
            rig.store.close()
        except Exception:  # noqa: BLE001 - closed by the test already
            pass


# ============================================================================ R-AUTH 1: modes
def test_r_auth_1_rfid_disabled_ignores_badges_but_remote_start_still_works(make_rig):
    rig = make_rig(RFIDEnabled=False)
    rig.boot()
    rig.plug(1)
    mark = rig.mark()
    assert rig.badge("BADGE-1") == []
    assert rig.sent(since=mark) == [] and rig.session(1) is None and rig.charger.connectors[1].pending is None
    assert rig.request("RemoteStartTransaction", {"idTag": "APP-1", "connectorId": 1}) == {"status": "Accepted"}
    assert rig.session(1).id_tag == "APP-1"
    assert rig.badge("APP-1") == []  # nor does a badge stop it
    assert not rig.session(1).stopping
    assert "rfid" not in rig.charger.snapshot()["auth_options"]


def test_r_auth_1_rfid_enabled_again_over_ocpp_takes_badges_at_once(make_rig):
    rig = make_rig(RFIDEnabled=False)
    rig.boot()
    rig.plug(1)
    rig.badge("BADGE-1")
    assert rig.session(1) is None
    assert rig.change("RFIDEnabled", True) == "Accepted"
    rig.badge("BADGE-1")
    assert rig.session(1).id_tag == "BADGE-1"


def test_r_auth_1_free_charging_starts_on_plug_with_default_id_tag_and_ignores_ev_identity(make_rig):
    rig = make_rig(FreeCharging=True, AutoCharge=True, MacAddressPrefix="VID:")
    rig.boot()
    rig.ev_mac[1] = "00:11:22:33:44:55"
    rig.plug(1)
    assert rig.authorized_tags() == ["SIMTAG"]
    assert [s["idTag"] for s in rig.starts()] == ["SIMTAG"]
    assert rig.charger.snapshot()["auth_options"] == ["free"]


def test_r_auth_1_free_charging_is_exclusive_with_every_other_mode(make_rig):
    rig = make_rig(FreeCharging=True)
    rig.boot()
    for key in ("RFIDEnabled", "QRcodeEnabled", "AppEnabled", "POSEnabled", "AutoCharge", "ISO15118PnCEnabled"):
        assert rig.change(key, True) == "Rejected", key
    assert rig.charger.snapshot()["auth_options"] == ["free"]
    assert rig.change("FreeCharging", False) == "Accepted"
    assert rig.change("AutoCharge", True) == "Accepted"
    assert rig.charger.snapshot()["auth_options"] == ["rfid", "qr", "app", "autocharge"]


@pytest.mark.parametrize(("seeds", "changes", "expected"), [
    ({}, [], ["rfid", "qr", "app"]),
    ({"PosEnabled": True, "AutoCharge": True, "ISO15118PnCEnabled": True}, [],
     ["rfid", "qr", "app", "pos", "autocharge", "pnc"]),
    ({"RFIDEnabled": False, "QRCodeEnabled": False, "APPEEnabled": False}, [], []),
    ({}, [("APPEEnabled", False), ("POSEnabled", True)], ["rfid", "qr", "pos"]),
    ({}, [("AppEnabled", False), ("PosEnabled", True)], ["rfid", "qr", "pos"]),  # the other spellings
    ({}, [("AuthenticationOCPPMode", False)], ["free"]),  # legacy key (R-AUTH 2)
    ({"FreeCharging": True}, [("AuthenticationOCPPMode", True)], ["rfid", "qr", "app"]),
])
def test_r_auth_1_snapshot_auth_options_are_the_enabled_modes(make_rig, seeds, changes, expected):
    rig = make_rig(**seeds)
    rig.boot()
    for key, value in changes:
        assert rig.change(key, value) == "Accepted"
    assert rig.charger.snapshot()["auth_options"] == expected


@pytest.mark.parametrize(("prefix", "mac", "tag"), [
    ("VID:", "aa:bb:cc:dd:ee:0f", "VID:AABBCCDDEE0F"),
    ("", "AA-BB-CC-DD-EE-0F", "AABBCCDDEE0F"),
    ("EV", "aabb.ccdd.ee0f", "EVAABBCCDDEE0F"),
    ("OPERATOR", "AA:BB:CC:DD:EE:0F", "OPERATORAABBCCDDEE0F"),  # 8 + 12: exactly 20 characters
])
def test_r_auth_1_autocharge_id_tag_is_prefix_plus_upper_hex_mac(make_rig, prefix, mac, tag):
    rig = make_rig(AutoCharge=True, MacAddressPrefix=prefix)
    rig.boot()
    rig.ev_mac[2] = mac
    mark = rig.mark()
    rig.plug(2)
    assert rig.authorized_tags(mark) == [tag]
    assert [(s["connectorId"], s["idTag"]) for s in rig.starts()] == [(2, tag)]


@pytest.mark.parametrize("prefix", ["OPERATOR:", "OPERATOR-X:"])  # 9 or 11 + 12 hex: 21, 23 characters
def test_r_auth_1_autocharge_too_long_id_tag_starts_nothing_and_a_badge_still_can(make_rig, prefix):
    rig = make_rig(AutoCharge=True, MacAddressPrefix=prefix)  # an idTag is a CiString20
    rig.boot()
    rig.ev_mac[1] = "AA:BB:CC:DD:EE:FF"
    mark = rig.mark()
    rig.plug(1)
    assert rig.sent("Authorize", mark) == [] and rig.session(1) is None
    assert rig.charger.connectors[1].pending is None
    rig.badge("BADGE-1")  # the connector is not stuck
    assert rig.session(1).id_tag == "BADGE-1"


def test_r_auth_1_autocharge_refused_mac_does_not_start(make_rig):
    rig = make_rig(AutoCharge=True, MacAddressPrefix="VID:")
    rig.boot()
    rig.ev_mac[1] = "AA:BB:CC:DD:EE:FF"
    rig.authorize_status["VID:AABBCCDDEEFF"] = "Invalid"
    rig.plug(1)
    assert rig.authorized_tags() == ["VID:AABBCCDDEEFF"] and rig.starts() == []
    assert rig.charger.connectors[1].pending is None


def test_r_auth_1_autocharge_without_ev_mac_waits_for_another_mode(make_rig):
    rig = make_rig(AutoCharge=True)
    rig.boot()
    mark = rig.mark()
    rig.plug(1)  # the EV tells no MAC
    assert rig.sent("Authorize", mark) == [] and rig.session(1) is None
    rig.badge("BADGE-1")
    assert rig.session(1).id_tag == "BADGE-1"


def test_r_auth_1_autocharge_disabled_does_not_read_the_mac(make_rig):
    rig = make_rig(AutoCharge=False, MacAddressPrefix="VID:")
    rig.boot()
    rig.ev_mac[1] = "AA:BB:CC:DD:EE:FF"
    mark = rig.mark()
    rig.plug(1)
    assert rig.sent("Authorize", mark) == [] and rig.session(1) is None


def test_r_auth_1_pnc_id_tag_is_the_contract_id(make_rig):
    rig = make_rig(ISO15118PnCEnabled=True, CentralContractValidationAllowed=True)
    rig.boot()
    rig.contract_id[1] = "FRXYZ123456789"
    rig.plug(1)
    assert rig.authorized_tags() == ["FRXYZ123456789"]
    assert [s["idTag"] for s in rig.starts()] == ["FRXYZ123456789"]


def test_r_auth_1_pnc_wins_over_autocharge_when_both_are_on(make_rig):
    rig = make_rig(ISO15118PnCEnabled=True, AutoCharge=True, MacAddressPrefix="VID:", CentralContractValidationAllowed=True)
    rig.boot()
    rig.contract_id[1] = "FRXYZ123456789"
    rig.ev_mac[1] = "AA:BB:CC:DD:EE:FF"
    rig.plug(1)
    assert rig.authorized_tags() == ["FRXYZ123456789"]
    assert [s["idTag"] for s in rig.starts()] == ["FRXYZ123456789"]
    # PnC off again: AutoCharge takes over at the next plug-in
    rig.badge("FRXYZ123456789")
    rig.unplug(1)
    assert rig.change("ISO15118PnCEnabled", False) == "Accepted"
    rig.plug(1)
    assert rig.authorized_tags()[-1] == "VID:AABBCCDDEEFF"
    assert rig.session(1).id_tag == "VID:AABBCCDDEEFF"


def test_r_auth_1_pnc_without_contract_id_falls_back_to_the_mac(make_rig):
    """PnC has priority over AutoCharge (guide note 3), it does not switch it off."""
    rig = make_rig(ISO15118PnCEnabled=True, AutoCharge=True)
    rig.boot()
    rig.ev_mac[1] = "AA:BB:CC:DD:EE:FF"
    mark = rig.mark()
    rig.plug(1)
    assert [m.payload for m in rig.sent("Authorize", mark)] == [{"idTag": "AABBCCDDEEFF"}]


def test_r_auth_1_pnc_only_without_contract_id_waits_for_another_mode(make_rig):
    rig = make_rig(ISO15118PnCEnabled=True, AutoCharge=False)
    rig.boot()
    rig.ev_mac[1] = "AA:BB:CC:DD:EE:FF"
    mark = rig.mark()
    rig.plug(1)
    assert rig.sent("Authorize", mark) == [] and rig.session(1) is None


def test_r_auth_1_autocharge_offline_follows_the_offline_rule(make_rig):
    rig = make_rig(AutoCharge=True, MacAddressPrefix="VID:", AllowOfflineTxForUnknownId=True)
    rig.boot()
    rig.offline()
    rig.ev_mac[1] = "AA:BB:CC:DD:EE:FF"
    rig.plug(1)
    assert rig.session(1).id_tag == "VID:AABBCCDDEEFF"
    assert [r.payload["idTag"] for r in rig.store.pending()] == ["VID:AABBCCDDEEFF"]


# ============================================================================ R-AUTH 6: offline strategies
#: every tag the table tests, and how it is known before the link drops
OFFLINE_TAGS = ("UNKNOWN", "CACHED", "CACHED-BLOCKED", "LISTED", "LISTED-BLOCKED")

#: the guide's "Offline strategies" table: the row's keys, and which tags start offline
OFFLINE_ROWS = {
    "allow_all": ({"AllowOfflineTxForUnknownId": True}, {"UNKNOWN", "CACHED", "LISTED"}),
    "cache_only": (
        {"AllowOfflineTxForUnknownId": False, "LocalAuthorizeOffline": True,
         "AuthorizationCacheEnabled": True, "LocalAuthListEnabled": False},
        {"CACHED"},
    ),
    "local_list_only": (
        {"AllowOfflineTxForUnknownId": False, "LocalAuthorizeOffline": True,
         "AuthorizationCacheEnabled": False, "LocalAuthListEnabled": True},
        {"LISTED"},
    ),
    "reject_all": ({"AllowOfflineTxForUnknownId": False, "LocalAuthorizeOffline": False}, set()),
}


def known_tags_then_offline(rig: AuthRig) -> None:
    """Teach the charger CACHED* (through Authorize answers) and LISTED* (SendLocalList), then drop the link."""
    rig.boot()
    assert rig.send_list(1, "Full", [entry("LISTED"), entry("LISTED-BLOCKED", "Blocked")]) == "Accepted"
    rig.charge_and_leave("CACHED")
    rig.authorize_status["CACHED-BLOCKED"] = "Blocked"
    assert not rig.try_badge("CACHED-BLOCKED")
    assert rig.store.cache_get("CACHED")["status"] == "Accepted"
    assert rig.store.cache_get("CACHED-BLOCKED")["status"] == "Blocked"
    assert rig.store.cache_get("LISTED") is None  # listed ids are never cached
    rig.offline()


@pytest.mark.parametrize("tag", OFFLINE_TAGS)
@pytest.mark.parametrize("row", list(OFFLINE_ROWS))
def test_r_auth_6_offline_strategies_table(make_rig, row, tag):
    keys, starting = OFFLINE_ROWS[row]
    rig = make_rig(AuthorizationCacheEnabled=True, LocalAuthListEnabled=True, AllowOfflineTxForUnknownId=True)
    known_tags_then_offline(rig)
    for key, value in keys.items():  # keys are read at each decision
        assert rig.change(key, value) == "Accepted"
    mark = rig.mark()
    rig.plug(1)
    rig.badge(tag)
    assert rig.sent(since=mark) == []  # offline: nothing on the wire
    s = rig.session(1)
    assert (s is not None) is (tag in starting)
    assert rig.charger.connectors[1].pending is None
    assert [r.action for r in rig.store.pending()] == (["StartTransaction"] if tag in starting else [])
    if s is not None:
        assert s.id_tag == tag


@pytest.mark.parametrize("status", ["Blocked", "Invalid", "Expired", "ConcurrentTx"])
@pytest.mark.parametrize("where", ["list", "cache"])
def test_r_auth_6_allow_all_still_refuses_a_known_id_that_is_not_accepted(make_rig, where, status):
    rig = make_rig(AllowOfflineTxForUnknownId=True, AuthorizationCacheEnabled=True, LocalAuthListEnabled=True)
    rig.boot()
    if where == "list":
        assert rig.send_list(1, "Full", [entry("KNOWN", status)]) == "Accepted"
    else:
        rig.authorize_status["KNOWN"] = status
        assert not rig.try_badge("KNOWN")
        assert rig.store.cache_get("KNOWN") == {"status": status}
    rig.offline()
    assert not rig.try_badge("KNOWN")
    assert rig.try_badge("NEVER-SEEN")  # unknown: allowed


def test_r_auth_6_unknown_ids_start_offline_only_with_allow_offline_tx_for_unknown_id(make_rig):
    rig = make_rig(AllowOfflineTxForUnknownId=False)
    rig.boot()
    rig.offline()
    assert not rig.try_badge("STRANGER")
    assert rig.change("AllowOfflineTxForUnknownId", True) == "Accepted"
    assert rig.try_badge("STRANGER")


@pytest.mark.parametrize("where", ["list", "cache"])
def test_r_auth_6_offline_expiry_honoured_against_the_wall_clock(make_rig, where):
    rig = make_rig(AllowOfflineTxForUnknownId=True, AuthorizationCacheEnabled=True, LocalAuthListEnabled=True)
    rig.boot()
    expiry = rig.wall_in(3600)
    if where == "list":
        assert rig.send_list(1, "Full", [entry("HOLDER", expiry=expiry)]) == "Accepted"
    else:
        rig.authorize_info["HOLDER"] = rig.start_info["HOLDER"] = {"status": "Accepted", "expiryDate": expiry}
        rig.charge_and_leave("HOLDER")
        assert rig.store.cache_get("HOLDER") == {"status": "Accepted", "expiryDate": expiry}
    rig.offline()
    rig.advance(3599)
    assert rig.try_badge("HOLDER")
    rig.advance(1)  # at the expiry date: expired, and a known id that is not usable is refused
    assert not rig.try_badge("HOLDER")
    assert rig.try_badge("NEVER-SEEN")


def test_r_auth_6_local_list_wins_over_the_cache_offline(make_rig):
    rig = make_rig(AllowOfflineTxForUnknownId=False, AuthorizationCacheEnabled=True, LocalAuthListEnabled=True)
    rig.boot()
    rig.charge_and_leave("TAG-X")  # cached Accepted
    assert rig.send_list(1, "Full", [entry("TAG-X", "Blocked")]) == "Accepted"
    rig.offline()
    assert not rig.try_badge("TAG-X")


def test_r_auth_6_id_tags_compare_case_insensitively_offline(make_rig):
    rig = make_rig(AllowOfflineTxForUnknownId=False, LocalAuthListEnabled=True)
    rig.boot()
    assert rig.send_list(1, "Full", [entry("AbCd-01")]) == "Accepted"
    rig.offline()
    assert rig.try_badge("abcd-01")


def test_r_auth_6_authorize_timeout_uses_the_local_list(make_rig):
    rig = make_rig(AllowOfflineTxForUnknownId=False, LocalAuthListEnabled=True)
    rig.boot()
    assert rig.send_list(1, "Full", [entry("LISTED")]) == "Accepted"
    rig.auto_answer.discard("Authorize")
    for tag, starts in (("LISTED", True), ("STRANGER", False)):
        rig.plug(1)
        rig.badge(tag)
        call = rig.pop_call("Authorize")
        rig.feed(ev.CallFailed(call.ref, "Authorize", "timeout"))
        assert (rig.session(1) is not None) is starts, tag
        rig.unplug(1)


# ============================================================================ R-AUTH 6: LocalPreAuthorize
def pre_authorize_rig(make_rig, **seeds: object) -> AuthRig:
    rig = make_rig(AuthorizationCacheEnabled=True, LocalAuthListEnabled=True, **seeds)
    rig.boot()
    assert rig.send_list(3, "Full", [
        entry("LISTED"), entry("LISTED-BLOCKED", "Blocked"),
        entry("LISTED-EXPIRED", "Accepted", expiry=rig.wall_in(-60)),
    ]) == "Accepted"
    rig.charge_and_leave("CACHED")
    rig.authorize_info["CACHED-SOON"] = rig.start_info["CACHED-SOON"] = {
        "status": "Accepted", "expiryDate": rig.wall_in(600),
    }
    rig.charge_and_leave("CACHED-SOON")
    rig.advance(601)  # CACHED-SOON is now expired in the cache
    return rig


@pytest.mark.parametrize(("tag", "asks"), [
    ("LISTED", False),
    ("CACHED", False),
    ("LISTED-BLOCKED", True),
    ("LISTED-EXPIRED", True),
    ("CACHED-SOON", True),
    ("UNKNOWN", True),
])
def test_r_auth_6_local_pre_authorize_starts_valid_local_ids_without_authorize(make_rig, tag, asks):
    rig = pre_authorize_rig(make_rig, LocalPreAuthorize=True)
    mark = rig.mark()
    rig.plug(1)
    rig.badge(tag)
    assert rig.authorized_tags(mark) == ([tag] if asks else [])
    assert [s["idTag"] for s in rig.starts(mark)] == [tag]  # the CSMS accepts everyone here
    actions = [m.action for m in rig.sent(since=mark) if m.action in ("Authorize", "StartTransaction")]
    assert actions == (["Authorize", "StartTransaction"] if asks else ["StartTransaction"])


@pytest.mark.parametrize("tag", ["LISTED", "CACHED"])
def test_r_auth_6_without_local_pre_authorize_every_badge_is_authorized(make_rig, tag):
    rig = pre_authorize_rig(make_rig, LocalPreAuthorize=False)
    mark = rig.mark()
    rig.plug(1)
    rig.badge(tag)
    assert rig.authorized_tags(mark) == [tag]


def test_r_auth_6_local_pre_authorize_asks_when_the_csms_refuses_later_and_stops(make_rig):
    """Pre-authorized from the cache, then the StartTransaction answer says Blocked: DeAuthorized (R-AUTH 8)."""
    rig = pre_authorize_rig(make_rig, LocalPreAuthorize=True, StopTransactionOnInvalidId=True)
    rig.start_status["CACHED"] = "Blocked"
    mark = rig.mark()
    rig.plug(1)
    rig.badge("CACHED")
    assert rig.authorized_tags(mark) == []
    [stop] = [m.payload for m in rig.sent("StopTransaction", mark)]
    assert stop["reason"] == "DeAuthorized"
    assert rig.store.cache_get("CACHED") == {"status": "Blocked"}  # the answer updated the cache
    mark = rig.mark()
    rig.unplug(1)
    rig.plug(1)
    rig.badge("CACHED")  # no longer usable locally: asked again
    assert rig.authorized_tags(mark) == ["CACHED"]


# ============================================================================ R-AUTH 7: the cache
def test_r_auth_7_cache_updated_from_authorize_with_expiry_and_parent(make_rig):
    rig = make_rig(AuthorizationCacheEnabled=True)
    rig.boot()
    info = {"status": "Accepted", "expiryDate": rig.wall_in(86400), "parentIdTag": "FLEET"}
    rig.authorize_info["MEMBER"] = info
    rig.auto_answer.discard("Authorize")
    rig.auto_sample = False  # hold the start: its own answer would update the entry again
    rig.plug(1)
    rig.badge("MEMBER")
    assert rig.store.cache_get("MEMBER") is None
    rig.answer(rig.pop_call("Authorize"), {"idTagInfo": info})
    assert rig.store.cache_get("MEMBER") == info


def test_r_auth_7_cache_updated_from_start_transaction_answer(make_rig):
    rig = make_rig(AuthorizationCacheEnabled=True, StopTransactionOnInvalidId=False)
    rig.boot()
    rig.start_info["TAG"] = {"status": "ConcurrentTx", "parentIdTag": "P"}
    rig.plug(1)
    rig.badge("TAG")
    assert rig.store.cache_get("TAG") == {"status": "ConcurrentTx", "parentIdTag": "P"}


def test_r_auth_7_cache_updated_from_stop_transaction_answer(make_rig):
    rig = make_rig(AuthorizationCacheEnabled=True)
    rig.boot()
    rig.stop_info["TAG"] = {"status": "Expired"}
    rig.charge_and_leave("TAG")
    [stop] = rig.sent("StopTransaction")
    assert stop.payload["idTag"] == "TAG"
    assert rig.store.cache_get("TAG") == {"status": "Expired"}


def test_r_auth_7_cache_updated_from_offline_started_transaction_answers(make_rig):
    rig = make_rig(AuthorizationCacheEnabled=True, AllowOfflineTxForUnknownId=True, StopTransactionOnInvalidId=False)
    rig.boot()
    rig.offline()
    rig.plug(1)
    rig.badge("OFF-1")
    assert rig.store.cache_get("OFF-1") is None  # allowed as unknown: nothing learnt yet
    rig.start_info["OFF-1"] = {"status": "Accepted", "expiryDate": rig.wall_in(7200)}
    rig.online_again()
    assert rig.store.cache_get("OFF-1") == {"status": "Accepted", "expiryDate": rig.wall_in(7200)}


def test_r_auth_7_ids_of_the_local_list_are_never_cached(make_rig):
    rig = make_rig(AuthorizationCacheEnabled=True, LocalAuthListEnabled=True)
    rig.boot()
    assert rig.send_list(1, "Full", [entry("LISTED")]) == "Accepted"
    rig.authorize_info["LISTED"] = {"status": "Accepted", "parentIdTag": "P"}
    rig.start_info["LISTED"] = {"status": "Accepted"}
    rig.stop_info["LISTED"] = {"status": "Accepted"}
    rig.charge_and_leave("LISTED")
    assert len(rig.sent("Authorize")) == 1  # LocalPreAuthorize is off: it was asked
    assert rig.store.cache_get("LISTED") is None and rig.store.cache_size() == 0


def test_r_auth_7_cache_disabled_learns_nothing(make_rig):
    rig = make_rig(AuthorizationCacheEnabled=False, AllowOfflineTxForUnknownId=False)
    rig.boot()
    rig.charge_and_leave("TAG")
    assert rig.store.cache_size() == 0
    rig.offline()
    assert not rig.try_badge("TAG")


def test_r_auth_7_cache_bounded_least_recently_used_goes_first(make_rig):
    rig = make_rig(AuthorizationCacheEnabled=True, AllowOfflineTxForUnknownId=False)
    rig.charger.authorizer.max_cache_entries = 3
    rig.boot()
    for tag in ("A", "B", "C"):
        rig.charge_and_leave(tag)
    rig.charge_and_leave("A")  # A is used again: B is now the least recently used
    rig.charge_and_leave("D")
    assert rig.store.cache_size() == 3
    assert {t for t in "ABCD" if rig.store.cache_get(t) is not None} == {"A", "C", "D"}
    # an offline use counts as a use too
    rig.offline()
    assert rig.try_badge("C")
    rig.online_again()
    rig.charge_and_leave("E")  # evicts A, the least recently used now (C was used offline)
    assert {t for t in "ACDE" if rig.store.cache_get(t) is not None} == {"C", "D", "E"}
    rig.offline()
    assert not rig.try_badge("A") and not rig.try_badge("B")
    assert rig.try_badge("E")


def test_r_auth_7_clear_cache(make_rig):
    rig = make_rig(AuthorizationCacheEnabled=True, AllowOfflineTxForUnknownId=False, LocalAuthListEnabled=True)
    rig.boot()
    assert rig.send_list(1, "Full", [entry("LISTED")]) == "Accepted"
    rig.charge_and_leave("CACHED")
    assert rig.store.cache_size() == 1
    assert rig.request("ClearCache", {}) == {"status": "Accepted"}
    assert rig.store.cache_size() == 0
    assert listed(rig) == {"LISTED": "Accepted"}  # the local list is not the cache
    rig.offline()
    assert not rig.try_badge("CACHED")
    assert rig.try_badge("LISTED")


def test_r_auth_7_cache_persisted_across_restart(make_rig):
    rig = make_rig(AuthorizationCacheEnabled=True, AllowOfflineTxForUnknownId=False)
    rig.boot()
    rig.charge_and_leave("REGULAR")
    rig.close(clean=True)
    again = make_rig(AuthorizationCacheEnabled=True, AllowOfflineTxForUnknownId=False)
    again.feed(ev.Started())
    assert again.try_badge("REGULAR")  # offline (never connected): from the cache
    assert not again.try_badge("STRANGER")


# ============================================================================ R-AUTH 7: the local list
def test_r_auth_7_get_local_list_version_minus_one_when_disabled_and_send_not_supported(make_rig):
    rig = make_rig(LocalAuthListEnabled=False)
    rig.boot()
    assert rig.list_version() == -1
    assert rig.send_list(1, "Full", [entry("A")]) == "NotSupported"
    assert rig.send_list(1, "Differential", [entry("A")]) == "NotSupported"
    assert listed(rig) == {} and rig.charger.snapshot()["local_list_version"] == -1


def test_r_auth_7_full_and_differential_updates_with_versions(make_rig):
    rig = make_rig(LocalAuthListEnabled=True)
    rig.boot()
    assert rig.list_version() == 0  # empty
    assert rig.send_list(5, "Full", [entry("A"), entry("B", "Blocked"), entry("C")]) == "Accepted"
    assert rig.list_version() == 5
    assert listed(rig) == {"A": "Accepted", "B": "Blocked", "C": "Accepted"}
    # differential: add D, change B, remove C (an entry without idTagInfo)
    assert rig.send_list(6, "Differential", [entry("D"), entry("B"), entry("C", None)]) == "Accepted"
    assert rig.list_version() == 6
    assert listed(rig) == {"A": "Accepted", "B": "Accepted", "D": "Accepted"}
    # removing an id that is not there is no error; no entries only moves the version
    assert rig.send_list(7, "Differential", [entry("NOT-THERE", None)]) == "Accepted"
    assert rig.send_list(9, "Differential") == "Accepted"
    assert rig.list_version() == 9 and listed(rig) == {"A": "Accepted", "B": "Accepted", "D": "Accepted"}
    # full replaces everything
    assert rig.send_list(10, "Full", [entry("Z", parent="GROUP")]) == "Accepted"
    assert listed(rig) == {"Z": "Accepted"}
    assert rig.store.local_list_get("Z") == {"status": "Accepted", "parentIdTag": "GROUP"}
    assert rig.charger.snapshot()["local_list_version"] == 10
    # full, version 0, no entries: the empty list
    assert rig.send_list(0, "Full", []) == "Accepted"
    assert rig.list_version() == 0 and listed(rig) == {}


@pytest.mark.parametrize("version", [3, 4])
def test_r_auth_7_differential_not_newer_than_the_list_is_version_mismatch(make_rig, version):
    rig = make_rig(LocalAuthListEnabled=True)
    rig.boot()
    assert rig.send_list(4, "Full", [entry("A")]) == "Accepted"
    assert rig.send_list(version, "Differential", [entry("B"), entry("A", None)]) == "VersionMismatch"
    assert rig.list_version() == 4 and listed(rig) == {"A": "Accepted"}


def test_r_auth_7_full_update_may_renumber_the_list_downwards(make_rig):
    rig = make_rig(LocalAuthListEnabled=True)
    rig.boot()
    assert rig.send_list(40, "Full", [entry("A")]) == "Accepted"
    assert rig.send_list(2, "Full", [entry("B")]) == "Accepted"
    assert rig.list_version() == 2 and listed(rig) == {"B": "Accepted"}


@pytest.mark.parametrize(("version", "update", "entries"), [
    pytest.param(8, "Full", [entry("A"), entry("a")], id="duplicate-ids-any-case"),
    pytest.param(8, "Differential", [entry("N"), entry("N", None)], id="upsert-and-delete-of-one-id"),
    pytest.param(8, "Full", [entry(f"ID-{i}") for i in range(401)], id="over-send-local-list-max-length"),
    pytest.param(8, "Full", [entry("A"), entry("B", None)], id="full-entry-without-id-tag-info"),
    pytest.param(8, "Full", [{"idTag": "A", "idTagInfo": {"status": "Accepted", "expiryDate": "soon"}}],
                 id="unreadable-expiry-date"),
    pytest.param(0, "Differential", [entry("A")], id="version-0-with-entries"),
    pytest.param(-2, "Full", [], id="negative-version"),
    pytest.param(8, "Partial", [entry("A")], id="unknown-update-type"),
])
def test_r_auth_7_bad_send_local_list_fails_and_leaves_the_list_whole(make_rig, version, update, entries):
    rig = make_rig(LocalAuthListEnabled=True)
    rig.boot()
    assert rig.send_list(7, "Full", [entry("KEEP-1"), entry("KEEP-2", "Blocked")]) == "Accepted"
    assert rig.send_list(version, update, entries) == "Failed"
    assert rig.list_version() == 7
    assert listed(rig) == {"KEEP-1": "Accepted", "KEEP-2": "Blocked"}


def test_r_auth_7_send_local_list_max_length_entries_accepted(make_rig):
    rig = make_rig(LocalAuthListEnabled=True)
    rig.boot()
    assert rig.send_list(1, "Full", [entry(f"ID-{i}") for i in range(400)]) == "Accepted"
    assert rig.store.local_list_size() == 400


def small_list_capacity(rig: AuthRig, monkeypatch: pytest.MonkeyPatch, capacity: int) -> None:
    """LocalAuthListMaxLength is read-only (100 000): it cannot be seeded nor changed over OCPP,
    so the key store the authorizer reads is made to answer a small capacity."""
    keys = rig.charger.authorizer.keys
    real = keys.get_int
    monkeypatch.setattr(keys, "get_int", lambda name: capacity if name == "LocalAuthListMaxLength" else real(name))
    assert rig.request("GetConfiguration", {"key": ["LocalAuthListMaxLength"]})["configurationKey"][0]["readonly"]


def test_r_auth_7_local_auth_list_max_length_full_and_differential(make_rig, monkeypatch):
    rig = make_rig(LocalAuthListEnabled=True)
    rig.boot()
    small_list_capacity(rig, monkeypatch, 3)
    assert rig.send_list(1, "Full", [entry("A"), entry("B"), entry("C"), entry("D")]) == "Failed"
    assert rig.send_list(1, "Full", [entry("A"), entry("B"), entry("C")]) == "Accepted"
    assert rig.send_list(2, "Differential", [entry("D")]) == "Failed"  # 4 > 3
    assert rig.send_list(2, "Differential", [entry("A", "Blocked"), entry("b")]) == "Accepted"  # replaces: still 3
    assert rig.send_list(3, "Differential", [entry("D"), entry("C", None)]) == "Accepted"  # one in, one out
    assert rig.list_version() == 3
    assert listed(rig) == {"A": "Blocked", "b": "Accepted", "D": "Accepted"}


def test_r_auth_7_local_auth_list_max_length_check_directly():
    """The same rule, without a charger: the planner given the key's value (a pure function)."""
    common = {"current_version": 1, "current_size": 2, "enabled": True, "max_length": 3, "max_send": 400}
    have = {"a", "b"}

    def contains(tag: str) -> bool:
        return tag.lower() in have

    add_two = {"listVersion": 2, "updateType": "Differential", "localAuthorizationList": [entry("C"), entry("D")]}
    assert plan_list_update(add_two, contains=contains, **common) == "Failed"
    swap = {"listVersion": 2, "updateType": "Differential",
            "localAuthorizationList": [entry("C"), entry("D"), entry("A", None)]}
    plan = plan_list_update(swap, contains=contains, **common)
    assert not isinstance(plan, str) and set(plan.upserts) == {"C", "D"} and plan.deletes == {"A"}


def test_r_auth_7_store_failure_during_an_update_leaves_the_old_list_whole(make_rig):
    rig = make_rig(LocalAuthListEnabled=True)
    rig.boot()
    assert rig.send_list(3, "Full", [entry("OLD-1"), entry("OLD-2")]) == "Accepted"
    with sqlite3.connect(rig.db_path) as other:  # the disk refuses the third row of the next update
        other.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON local_list WHEN NEW.id_tag = 'NEW-3' "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    with pytest.raises(StoreError):
        rig.send_list(4, "Full", [entry("NEW-1"), entry("NEW-2"), entry("NEW-3")])
    assert rig.list_version() == 3 and listed(rig) == {"OLD-1": "Accepted", "OLD-2": "Accepted"}
    with pytest.raises(StoreError):
        rig.send_list(4, "Differential", [entry("OLD-1", None), entry("NEW-3")])
    assert rig.list_version() == 3 and listed(rig) == {"OLD-1": "Accepted", "OLD-2": "Accepted"}


def test_r_auth_7_local_list_persisted_across_restart(make_rig):
    rig = make_rig(LocalAuthListEnabled=True, AllowOfflineTxForUnknownId=False)
    rig.boot()
    assert rig.send_list(12, "Full", [entry("KEPT"), entry("GONE", "Blocked")]) == "Accepted"
    rig.close(clean=True)
    again = make_rig(LocalAuthListEnabled=True, AllowOfflineTxForUnknownId=False)
    again.feed(ev.Started())
    assert again.try_badge("KEPT") and not again.try_badge("GONE")
    again.boot()
    assert again.list_version() == 12
    assert again.send_list(12, "Differential", [entry("NEW")]) == "VersionMismatch"


def test_r_auth_7_disabling_the_list_hides_it_and_enabling_brings_it_back(make_rig):
    rig = make_rig(LocalAuthListEnabled=True, AllowOfflineTxForUnknownId=False)
    rig.boot()
    assert rig.send_list(2, "Full", [entry("LISTED")]) == "Accepted"
    assert rig.change("LocalAuthListEnabled", False) == "Accepted"
    assert rig.list_version() == -1
    rig.offline()
    assert not rig.try_badge("LISTED")
    assert rig.change("LocalAuthListEnabled", True) == "Accepted"
    assert rig.try_badge("LISTED")


# ============================================================================ R-AUTH 8: offline-started, refused later
@pytest.mark.parametrize("status", ["Invalid", "Blocked", "Expired"])
def test_r_auth_8_offline_started_transaction_refused_later_stops_deauthorized(make_rig, status):
    rig = make_rig(AllowOfflineTxForUnknownId=True, StopTransactionOnInvalidId=True)
    rig.boot()
    rig.offline()
    rig.energy[1] = 5_000
    rig.plug(1)
    rig.badge("OFF-1")
    assert rig.session(1) is not None and rig.power_on[1]
    rig.advance(300)
    rig.energy[1] = 8_000
    rig.start_status["OFF-1"] = status
    mark = rig.mark()
    rig.online_again()
    queued = [(m.action, m.payload.get("reason")) for m in rig.sent(since=mark) if m.queued]
    assert queued[0] == ("StartTransaction", None) and queued[-1] == ("StopTransaction", "DeAuthorized")
    stop = rig.sent("StopTransaction")[-1].payload
    assert stop["transactionId"] == 100 and stop["meterStop"] == 8_000 and "idTag" not in stop
    assert rig.session(1) is None and not rig.power_on[1]


def test_r_auth_8_offline_started_transaction_refused_later_continues_without_stop_on_invalid_id(make_rig):
    rig = make_rig(AllowOfflineTxForUnknownId=True, StopTransactionOnInvalidId=False, MinimumStatusDuration=0)
    rig.boot()
    rig.offline()
    rig.plug(1)
    rig.badge("OFF-1")
    rig.start_status["OFF-1"] = "Invalid"
    rig.online_again()
    rig.advance(600)
    assert rig.sent("StopTransaction") == []
    assert rig.session(1) is not None and rig.session(1).transaction_id == 100 and rig.power_on[1]
    assert rig.status(1) == "Charging"
    rig.badge("OFF-1")  # its owner can still stop it
    assert rig.sent("StopTransaction")[-1].payload["reason"] == "Local"


# ============================================================================ stop rules (issue 3, point 7)
def fleet_charge(rig: AuthRig, cid: int = 1, tag: str = "MEMBER-1") -> None:
    """``tag`` of group FLEET starts on ``cid``; nothing else is left plugged."""
    rig.authorize_info[tag] = {"status": "Accepted", "parentIdTag": "FLEET"}
    rig.plug(cid)
    rig.badge(tag)
    assert rig.session(cid).parent_id_tag == "FLEET"


def test_r_auth_stop_by_another_badge_of_the_group_known_locally(make_rig):
    rig = make_rig(LocalAuthListEnabled=True)
    rig.boot()
    assert rig.send_list(1, "Full", [entry("MEMBER-2", parent="FLEET")]) == "Accepted"
    fleet_charge(rig)
    tx = rig.session(1).transaction_id
    mark = rig.mark()
    rig.badge("MEMBER-2")
    assert rig.sent("Authorize", mark) == []  # the group is known: no need to ask
    [stop] = [m.payload for m in rig.sent("StopTransaction", mark)]
    assert (stop["transactionId"], stop["reason"], stop["idTag"]) == (tx, "Local", "MEMBER-2")


def test_r_auth_stop_by_another_badge_of_the_group_learnt_through_authorize(make_rig):
    rig = make_rig()
    rig.boot()
    fleet_charge(rig)
    rig.authorize_info["MEMBER-3"] = {"status": "Accepted", "parentIdTag": "fleet"}  # case-insensitive
    mark = rig.mark()
    rig.badge("MEMBER-3")
    assert rig.authorized_tags(mark) == ["MEMBER-3"]
    [stop] = [m.payload for m in rig.sent("StopTransaction", mark)]
    assert (stop["reason"], stop["idTag"]) == ("Local", "MEMBER-3")


def test_r_auth_stop_group_learnt_from_the_start_transaction_answer(make_rig):
    rig = make_rig(AuthorizeRemoteTxRequests=False)
    rig.boot()
    rig.start_info["REMOTE-1"] = {"status": "Accepted", "parentIdTag": "FLEET"}
    rig.charge(1, "REMOTE-1")
    assert rig.session(1).parent_id_tag == "FLEET"
    rig.authorize_info["MEMBER-3"] = {"status": "Accepted", "parentIdTag": "FLEET"}
    rig.badge("MEMBER-3")
    assert rig.session(1) is None


@pytest.mark.parametrize("info", [
    {"status": "Accepted", "parentIdTag": "OTHER-FLEET"},
    {"status": "Accepted"},
    {"status": "Blocked", "parentIdTag": "FLEET"},
])
def test_r_auth_stop_by_a_badge_of_another_group_refused(make_rig, info):
    rig = make_rig()
    rig.boot()
    fleet_charge(rig)
    rig.authorize_info["OUTSIDER"] = info
    mark = rig.mark()
    rig.badge("OUTSIDER")
    assert rig.authorized_tags(mark) == ["OUTSIDER"]
    assert rig.sent("StopTransaction", mark) == [] and not rig.session(1).stopping


def test_r_auth_stop_by_a_badge_of_another_group_known_locally_refused_without_asking(make_rig):
    rig = make_rig(LocalAuthListEnabled=True)
    rig.boot()
    assert rig.send_list(1, "Full", [entry("OUTSIDER", parent="OTHER-FLEET")]) == "Accepted"
    fleet_charge(rig)
    mark = rig.mark()
    rig.badge("OUTSIDER")
    assert rig.sent(since=mark) == [] and not rig.session(1).stopping


def test_r_auth_stop_by_unknown_badge_offline_refused(make_rig):
    rig = make_rig()
    rig.boot()
    fleet_charge(rig)
    rig.offline()
    rig.badge("MEMBER-9")
    assert not rig.session(1).stopping
    rig.badge("MEMBER-1")  # the owner's badge works offline
    assert rig.session(1) is None


# ============================================================================ R-RES
def test_r_res_reserve_now_accepted_reports_reserved_and_holds_the_connector(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    assert rig.reserve(11, 1, "HOLDER") == "Accepted"
    assert rig.status(1) == "Reserved" and rig.status(2) == "Available"
    view = rig.charger.snapshot()["connectors"][0]["reservation"]
    assert view["reservation_id"] == 11 and view["id_tag"] == "HOLDER"
    [row] = rig.store.reservations()
    assert (row.reservation_id, row.connector_id, row.id_tag) == (11, 1, "HOLDER")


def test_r_res_reserve_now_occupied(make_rig):
    rig = make_rig()
    rig.boot()
    rig.charge(1)
    assert rig.reserve(1, 1, "HOLDER") == "Occupied"  # charging
    rig.plug(2)
    assert rig.reserve(2, 2, "HOLDER") == "Occupied"  # an EV is plugged in
    rig.unplug(2)
    assert rig.reserve(3, 2, "HOLDER") == "Accepted"
    assert rig.reserve(4, 2, "SOMEONE") == "Occupied"  # already reserved by another reservation
    assert rig.reserve(3, 2, "HOLDER-2") == "Accepted"  # the same reservation id replaces it
    assert [(r.reservation_id, r.id_tag) for r in rig.store.reservations()] == [(3, "HOLDER-2")]


def test_r_res_reserve_now_faulted(make_rig):
    rig = make_rig()
    rig.boot()
    rig.feed(ev.FaultRaised(CONNECTOR_ERROR_DTC, 1))
    assert rig.reserve(1, 1, "HOLDER") == "Faulted"
    assert rig.reserve(2, 2, "HOLDER") == "Accepted"
    rig.feed(ev.FaultRaised(CONNECTOR_ERROR_DTC, 0))  # the whole station
    assert rig.reserve(3, 0, "HOLDER") == "Faulted"
    assert rig.store.reservations()[0].reservation_id == 2 and len(rig.store.reservations()) == 1


def test_r_res_reserve_now_unavailable(make_rig):
    rig = make_rig()
    rig.boot()
    rig.request("ChangeAvailability", {"connectorId": 2, "type": "Inoperative"})
    assert rig.reserve(1, 2, "HOLDER") == "Unavailable"
    rig.request("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
    assert rig.reserve(2, 1, "HOLDER") == "Unavailable"
    assert rig.reserve(3, 0, "HOLDER") == "Unavailable"
    assert rig.store.reservations() == []


@pytest.mark.parametrize(("cid", "seconds"), [(3, 3600), (99, 3600), (1, 0), (1, -60)])
def test_r_res_reserve_now_rejected(make_rig, cid, seconds):
    rig = make_rig()
    rig.boot()
    assert rig.reserve(1, cid, "HOLDER", seconds=seconds) == "Rejected"
    assert rig.store.reservations() == []


def test_r_res_reserve_now_rejected_while_resetting(make_rig):
    rig = make_rig()
    rig.boot()
    rig.charge(1)
    rig.auto_deliver = False  # the reset waits for its stop
    rig.request("Reset", {"type": "Soft"})
    assert rig.reserve(1, 2, "HOLDER") == "Rejected"


def test_r_res_expiry_frees_the_connector(make_rig):
    rig = make_rig(MinimumStatusDuration=0, AuthorizeRemoteTxRequests=False)
    rig.boot()
    assert rig.reserve(1, 1, "HOLDER", seconds=900) == "Accepted"
    rig.advance(899.9)
    assert rig.status(1) == "Reserved" and rig.store.reservations() != []
    rig.advance(0.1)  # the fake wall clock moved with it: expired
    assert rig.status(1) == "Available"
    assert rig.store.reservations() == [] and rig.charger.reservations.by_id == {}
    # the connector is free for anyone again
    assert rig.request("RemoteStartTransaction", {"idTag": "ANYONE", "connectorId": 1}) == {"status": "Accepted"}
    rig.plug(1)
    assert rig.session(1).id_tag == "ANYONE" and "reservationId" not in rig.starts()[-1]


@pytest.mark.parametrize(("jump_s", "reserved_after_jump"), [(3600, False), (-3600, True)])
def test_r_res_expiry_follows_a_clock_correction_from_the_csms(make_rig, jump_s, reserved_after_jump):
    """expiryDate is a wall-clock date: when the CSMS corrects our clock, the expiry moves with it."""
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    expiry = rig.clock.wall() + timedelta(seconds=600)
    assert rig.reserve(1, 1, "HOLDER", seconds=600) == "Accepted"
    rig.auto_answer.discard("Heartbeat")
    rig.advance(60)
    rig.answer(rig.pop_call("Heartbeat"), {"currentTime": rig.wall_in(jump_s)})
    assert (rig.status(1) == "Reserved") is reserved_after_jump
    rig.auto_answer.add("Heartbeat")
    left = (expiry - rig.clock.wall()).total_seconds()
    if left > 0:
        rig.advance(left - 0.1)
        assert rig.status(1) == "Reserved"
        rig.advance(0.1)
    assert rig.status(1) == "Available" and rig.store.reservations() == []


def test_r_res_used_by_its_id_tag_carries_the_reservation_id(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    assert rig.reserve(21, 2, "HOLDER") == "Accepted"
    rig.plug(2)
    rig.badge("holder")  # idTags compare case-insensitively
    [start] = rig.starts()
    assert start["reservationId"] == 21 and start["connectorId"] == 2
    assert rig.store.reservations() == [] and rig.session(2).reservation_id == 21
    assert rig.store.open_transactions()[0].reservation_id == 21
    rig.badge("holder")
    rig.unplug(2)
    rig.advance(30)
    assert rig.status(2) == "Available"


def test_r_res_used_by_an_id_tag_of_its_parent_group(make_rig):
    rig = make_rig()
    rig.boot()
    assert rig.reserve(31, 1, "FLEET-CARD", parent="FLEET") == "Accepted"
    rig.authorize_info["STRANGER"] = {"status": "Accepted", "parentIdTag": "ELSEWHERE"}
    rig.authorize_info["MEMBER"] = {"status": "Accepted", "parentIdTag": "FLEET"}
    rig.plug(1)
    rig.badge("STRANGER")
    assert rig.starts() == [] and rig.charger.connectors[1].pending is None
    rig.badge("MEMBER")
    [start] = rig.starts()
    assert (start["idTag"], start["reservationId"]) == ("MEMBER", 31)


def test_r_res_parent_group_known_from_the_local_list(make_rig):
    rig = make_rig(LocalAuthListEnabled=True, LocalPreAuthorize=True, AuthorizeRemoteTxRequests=False)
    rig.boot()
    assert rig.send_list(1, "Full", [entry("MEMBER", parent="FLEET")]) == "Accepted"
    assert rig.reserve(31, 1, "FLEET-CARD", parent="FLEET") == "Accepted"
    rig.plug(1)
    assert rig.request("RemoteStartTransaction", {"idTag": "MEMBER", "connectorId": 1}) == {"status": "Accepted"}
    [start] = rig.starts()
    assert (start["idTag"], start["reservationId"]) == ("MEMBER", 31)


def test_r_res_reservation_without_parent_refuses_the_group(make_rig):
    rig = make_rig()
    rig.boot()
    assert rig.reserve(5, 1, "HOLDER") == "Accepted"
    rig.authorize_info["MEMBER"] = {"status": "Accepted", "parentIdTag": "HOLDER"}
    rig.plug(1)
    rig.badge("MEMBER")
    assert rig.starts() == []


def test_r_res_another_id_tag_refused_locally_and_remotely(make_rig):
    rig = make_rig(MinimumStatusDuration=0, EnableRemoteStartNoConnectedEV=False)
    rig.boot()
    assert rig.reserve(7, 1, "HOLDER") == "Accepted"
    rig.plug(1)
    rig.badge("OTHER")
    assert rig.starts() == [] and rig.session(1) is None
    assert rig.request("RemoteStartTransaction", {"idTag": "OTHER", "connectorId": 1}) == {"status": "Rejected"}
    assert rig.request("RemoteStartTransaction", {"idTag": "OTHER"}) == {"status": "Rejected"}
    assert rig.store.reservations() != []
    assert rig.request("RemoteStartTransaction", {"idTag": "HOLDER", "connectorId": 1}) == {"status": "Accepted"}
    assert rig.starts()[-1]["reservationId"] == 7 and rig.starts()[-1]["idTag"] == "HOLDER"


def test_r_res_remote_start_without_connector_avoids_the_reserved_one(make_rig):
    rig = make_rig()
    rig.boot()
    assert rig.reserve(7, 1, "HOLDER") == "Accepted"
    rig.plug(1)
    rig.plug(2)
    assert rig.request("RemoteStartTransaction", {"idTag": "OTHER"}) == {"status": "Accepted"}
    [start] = rig.starts()
    assert start["connectorId"] == 2 and "reservationId" not in start
    assert rig.request("RemoteStartTransaction", {"idTag": "HOLDER"}) == {"status": "Accepted"}
    assert (rig.starts()[-1]["connectorId"], rig.starts()[-1]["reservationId"]) == (1, 7)


def test_r_res_remote_start_for_any_connector_waiting_for_a_plug_is_not_lost_to_the_reserved_one(make_rig):
    rig = make_rig(EnableRemoteStartNoConnectedEV=True)
    rig.boot()
    assert rig.reserve(7, 1, "HOLDER") == "Accepted"
    assert rig.request("RemoteStartTransaction", {"idTag": "OTHER"}) == {"status": "Accepted"}
    rig.plug(1)  # the holder arrives first, on the reserved connector
    assert rig.starts() == []
    rig.plug(2)  # the remote start's driver, on the other one
    [start] = rig.starts()
    assert (start["connectorId"], start["idTag"]) == (2, "OTHER")
    rig.badge("HOLDER")
    assert (rig.starts()[-1]["connectorId"], rig.starts()[-1]["reservationId"]) == (1, 7)


def test_r_res_cancel_reservation(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    assert rig.reserve(8, 2, "HOLDER") == "Accepted"
    assert rig.request("CancelReservation", {"reservationId": 9}) == {"status": "Rejected"}
    assert rig.status(2) == "Reserved"
    assert rig.request("CancelReservation", {"reservationId": 8}) == {"status": "Accepted"}
    assert rig.status(2) == "Available" and rig.store.reservations() == []
    assert rig.request("CancelReservation", {"reservationId": 8}) == {"status": "Rejected"}
    rig.plug(2)
    rig.badge("OTHER")
    assert rig.session(2) is not None


def test_r_res_cancel_of_a_used_reservation_rejected(make_rig):
    rig = make_rig()
    rig.boot()
    assert rig.reserve(8, 1, "HOLDER") == "Accepted"
    rig.plug(1)
    rig.badge("HOLDER")
    assert rig.request("CancelReservation", {"reservationId": 8}) == {"status": "Rejected"}
    assert not rig.session(1).stopping


def test_r_res_connector_zero_keeps_one_connector_for_its_holder(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    assert rig.reserve(40, 0, "HOLDER") == "Accepted"
    # two free connectors for one station reservation: neither is held yet
    assert [rig.status(c) for c in (0, 1, 2)] == ["Available", "Available", "Available"]
    assert [r["reservation_id"] for r in rig.charger.snapshot()["station_reservations"]] == [40]
    rig.plug(1)
    assert rig.status(2) == "Reserved"  # now the last free one is
    rig.badge("OTHER")
    assert rig.session(1).id_tag == "OTHER" and "reservationId" not in rig.starts()[-1]
    assert rig.reserve(41, 0, "SECOND") == "Occupied"  # no second connector left to hold
    rig.plug(2)
    rig.badge("INTRUDER")
    assert rig.session(2) is None
    assert rig.request("RemoteStartTransaction", {"idTag": "INTRUDER", "connectorId": 2}) == {"status": "Rejected"}
    rig.badge("HOLDER")
    start = rig.starts()[-1]
    assert (start["connectorId"], start["idTag"], start["reservationId"]) == (2, "HOLDER", 40)
    assert rig.charger.snapshot()["station_reservations"] == []


def test_r_res_connector_zero_used_on_any_connector(make_rig):
    rig = make_rig()
    rig.boot()
    assert rig.reserve(40, 0, "HOLDER") == "Accepted"
    rig.plug(2)
    rig.badge("HOLDER")
    start = rig.starts()[-1]
    assert (start["connectorId"], start["reservationId"]) == (2, 40)
    assert rig.store.reservations() == []


def test_r_res_connector_zero_two_reservations_hold_both_connectors(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    assert rig.reserve(1, 0, "H1") == "Accepted"
    assert rig.reserve(2, 0, "H2") == "Accepted"
    assert rig.reserve(3, 0, "H3") == "Occupied"
    assert rig.status(1) == "Reserved" and rig.status(2) == "Reserved"


def test_r_res_connector_reservation_cannot_take_the_connector_held_for_connector_zero(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    rig.charge(2, "DRIVER")
    assert rig.reserve(1, 0, "HOLDER") == "Accepted"
    assert rig.status(1) == "Reserved"  # the last free connector is held for HOLDER
    assert rig.reserve(2, 1, "SOMEONE") == "Occupied"
    assert rig.reserve(1, 1, "HOLDER") == "Accepted"  # the same reservation, moved onto connector 1
    assert [(r.reservation_id, r.connector_id) for r in rig.store.reservations()] == [(1, 1)]


def test_r_res_connector_zero_expiry(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    assert rig.reserve(1, 0, "H1", seconds=120) == "Accepted"
    rig.plug(1)
    assert rig.status(2) == "Reserved"
    rig.advance(120)
    assert rig.status(2) == "Available" and rig.charger.snapshot()["station_reservations"] == []


def test_r_res_reservations_persisted_across_restart(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    assert rig.reserve(50, 1, "HOLDER", seconds=1800, parent="FLEET") == "Accepted"
    assert rig.reserve(51, 0, "ANYWHERE", seconds=600) == "Accepted"
    rig.close(clean=True)
    again = make_rig(MinimumStatusDuration=0)  # a new Charger on the same store, same wall time
    again.feed(ev.Started())
    assert sorted(again.charger.reservations.by_id) == [50, 51]
    r = again.charger.reservations.by_id[50]
    assert (r.connector_id, r.id_tag, r.parent_id_tag) == (1, "HOLDER", "FLEET")
    again.boot()
    assert again.status(1) == "Reserved"
    assert [v["reservation_id"] for v in again.charger.snapshot()["station_reservations"]] == [51]
    again.advance(600)  # expiry timers run again after the restart
    assert again.charger.snapshot()["station_reservations"] == []
    assert again.status(1) == "Reserved"
    again.authorize_info["MEMBER"] = {"status": "Accepted", "parentIdTag": "FLEET"}
    again.plug(1)
    again.badge("MEMBER")
    assert again.starts()[-1]["reservationId"] == 50


def test_r_res_reservation_expired_while_the_charger_was_down_is_dropped_at_start(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    assert rig.reserve(60, 1, "HOLDER", seconds=300) == "Accepted"
    rig.close(clean=True)
    again = make_rig(MinimumStatusDuration=0)
    again.clock.advance(301)  # down for five minutes
    again.boot()
    assert again.status(1) == "Available"
    assert again.store.reservations() == [] and again.charger.reservations.by_id == {}


def test_r_auth_1_pnc_contract_not_sent_when_central_validation_is_not_allowed(make_rig):
    rig = make_rig(ISO15118PnCEnabled=True, CentralContractValidationAllowed=False)
    rig.boot()
    rig.contract_id[1] = "FRXYZC12345678"
    mark = rig.mark()
    rig.plug(1)
    assert rig.sent("Authorize", mark) == [] and rig.session(1) is None


def test_r_auth_1_pnc_contract_validated_centrally_when_allowed(make_rig):
    rig = make_rig(ISO15118PnCEnabled=True, CentralContractValidationAllowed=True)
    rig.boot()
    rig.contract_id[1] = "FRXYZC12345678"
    mark = rig.mark()
    rig.plug(1)
    assert [m.payload for m in rig.sent("Authorize", mark)] == [{"idTag": "FRXYZC12345678"}]


@pytest.mark.parametrize(("offline_ok", "starts"), [(True, True), (False, False)])
def test_r_auth_1_pnc_offline_follows_contract_validation_offline(make_rig, offline_ok, starts):
    rig = make_rig(ISO15118PnCEnabled=True, ContractValidationOffline=offline_ok, AllowOfflineTxForUnknownId=True)
    rig.boot()
    rig.offline()
    rig.contract_id[1] = "FRXYZC12345678"
    rig.plug(1)
    assert (rig.session(1) is not None) == starts
