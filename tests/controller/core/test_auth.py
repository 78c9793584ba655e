"""Tests of controller.core.auth: idTagInfo, offline strategies, LocalPreAuthorize,
SendLocalList planning, cache bound.

Requirements covered: R-AUTH 6 (the guide's offline strategies table), R-AUTH 7
(authorization cache and local list: expiry, SendLocalList Full/Differential,
versions, VersionMismatch, LocalAuthListMaxLength, SendLocalListMaxLength).
"""

from __future__ import annotations

import ast
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core import auth
from controller.core.auth import (
    AuthCachePolicy,
    IdTagInfo,
    ListUpdate,
    OfflineDecision,
    decide_offline,
    entries_to_evict,
    id_tag_key,
    plan_list_update,
    pre_authorized,
)

NOW = datetime(2026, 4, 16, 8, 30, tzinfo=timezone.utc)
LATER = NOW + timedelta(days=1)
EARLIER = NOW - timedelta(seconds=1)

ACCEPTED = IdTagInfo("Accepted")
ACCEPTED_UNTIL_LATER = IdTagInfo("Accepted", LATER)
ACCEPTED_EXPIRED = IdTagInfo("Accepted", EARLIER)
BLOCKED = IdTagInfo("Blocked")

NOT_USABLE = [
    IdTagInfo("Blocked"),
    IdTagInfo("Invalid"),
    IdTagInfo("Expired"),
    IdTagInfo("ConcurrentTx"),
    IdTagInfo("Accepted", EARLIER),
    IdTagInfo("Accepted", NOW),  # expiry == now: expired
]


def offline(**kw):
    """decide_offline with the guide's defaults (AllowOfflineTxForUnknownId true,
    LocalAuthorizeOffline true, cache and list disabled), nothing known."""
    args = dict(
        now=NOW,
        allow_unknown=True,
        local_authorize_offline=True,
        local_list_enabled=False,
        cache_enabled=False,
        list_entry=None,
        cache_entry=None,
    )
    args.update(kw)
    return decide_offline(**args)


# ------------------------------------------------------------------ purity


def test_auth_module_is_pure_stdlib() -> None:
    tree = ast.parse(Path(auth.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    assert imported <= {"__future__", "collections.abc", "dataclasses", "datetime", "typing",
                        ".timefmt"}, imported
    source = Path(auth.__file__).read_text()
    for clock in ("datetime.now", "time.time", "monotonic", "utcnow"):
        assert clock not in source


# --------------------------------------------------------------- IdTagInfo


def test_r_auth_7_idtaginfo_from_and_to_ocpp_roundtrip() -> None:
    d = {"status": "Accepted", "expiryDate": "2026-04-17T10:30:00.000+02:00",
         "parentIdTag": "GROUP1"}
    info = IdTagInfo.from_ocpp(d)
    assert info == IdTagInfo("Accepted", datetime(2026, 4, 17, 8, 30, tzinfo=timezone.utc),
                             "GROUP1")
    assert info.to_ocpp() == {"status": "Accepted", "expiryDate": "2026-04-17T08:30:00.000Z",
                              "parentIdTag": "GROUP1"}
    assert IdTagInfo.from_ocpp(info.to_ocpp()) == info
    assert IdTagInfo.from_ocpp({"status": "Blocked"}).to_ocpp() == {"status": "Blocked"}
    assert IdTagInfo.from_ocpp({"status": "Invalid", "extra": 1}) == IdTagInfo("Invalid")


@pytest.mark.parametrize(
    "d",
    [
        {},
        {"status": "accepted"},
        {"status": "Unknown"},
        {"status": 1},
        {"status": "Accepted", "expiryDate": "tomorrow"},
        {"status": "Accepted", "expiryDate": "2026-04-17T08:30:00"},  # no offset
        {"status": "Accepted", "expiryDate": "2026-02-30T08:30:00Z"},
        {"status": "Accepted", "expiryDate": 1776414600},
        {"status": "Accepted", "parentIdTag": 5},
    ],
)
def test_r_auth_7_idtaginfo_from_ocpp_rejects_bad_input(d: dict) -> None:
    with pytest.raises(ValueError):
        IdTagInfo.from_ocpp(d)


def test_idtaginfo_refuses_naive_expiry_and_unknown_status() -> None:
    with pytest.raises(ValueError):
        IdTagInfo("Accepted", datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        IdTagInfo("OK")


def test_r_auth_7_expiry_makes_accepted_expired_and_unusable() -> None:
    assert ACCEPTED.effective_status(NOW) == "Accepted" and ACCEPTED.usable(NOW)
    assert ACCEPTED_UNTIL_LATER.usable(NOW)
    assert ACCEPTED_UNTIL_LATER.effective_status(LATER) == "Expired"  # expiry == now
    assert not ACCEPTED_UNTIL_LATER.usable(LATER)
    assert ACCEPTED_EXPIRED.effective_status(NOW) == "Expired"
    # other statuses keep theirs after the expiry
    assert IdTagInfo("Blocked", EARLIER).effective_status(NOW) == "Blocked"
    for info in NOT_USABLE:
        assert not info.usable(NOW), info
    # an expiry in another zone compares as the same instant
    plus2 = timezone(timedelta(hours=2))
    assert IdTagInfo("Accepted", (NOW + timedelta(seconds=1)).astimezone(plus2)).usable(NOW)


# ------------------------------------------------- offline table (R-AUTH 6)


def test_r_auth_6_allow_all_row_accepts_unknown_badges() -> None:
    # Guide: "Allow all badges: AllowOfflineTxForUnknownId = true" (the default)
    d = offline(allow_unknown=True)
    assert d == OfflineDecision(True, "unknown_allowed", None)
    # also with cache and list enabled, for a badge in neither
    assert offline(allow_unknown=True, cache_enabled=True, local_list_enabled=True).accepted
    # and with LocalAuthorizeOffline false
    assert offline(allow_unknown=True, local_authorize_offline=False).source == "unknown_allowed"


def test_r_auth_6_allow_all_row_known_usable_badges_come_from_list_or_cache() -> None:
    d = offline(allow_unknown=True, local_list_enabled=True, list_entry=ACCEPTED)
    assert d == OfflineDecision(True, "local_list", ACCEPTED)
    d = offline(allow_unknown=True, cache_enabled=True, cache_entry=ACCEPTED)
    assert d == OfflineDecision(True, "cache", ACCEPTED)


def test_r_auth_6_cache_list_only_row() -> None:
    row = dict(allow_unknown=False, local_authorize_offline=True, cache_enabled=True)
    assert offline(**row, cache_entry=ACCEPTED_UNTIL_LATER) == OfflineDecision(
        True, "cache", ACCEPTED_UNTIL_LATER
    )
    assert offline(**row) == OfflineDecision(False, "refused", None)
    assert offline(**row, cache_entry=BLOCKED) == OfflineDecision(False, "refused", BLOCKED)
    assert offline(**row, cache_entry=ACCEPTED_EXPIRED) == OfflineDecision(
        False, "refused", ACCEPTED_EXPIRED
    )
    # the (disabled) local list is not looked at
    assert offline(**row, list_entry=ACCEPTED) == OfflineDecision(False, "refused", None)
    assert offline(**row, list_entry=BLOCKED, cache_entry=ACCEPTED).source == "cache"


def test_r_auth_6_local_list_only_row() -> None:
    row = dict(allow_unknown=False, local_authorize_offline=True, local_list_enabled=True)
    assert offline(**row, list_entry=ACCEPTED) == OfflineDecision(True, "local_list", ACCEPTED)
    assert offline(**row) == OfflineDecision(False, "refused", None)
    assert offline(**row, list_entry=BLOCKED) == OfflineDecision(False, "refused", BLOCKED)
    # the (disabled) cache is not looked at
    assert offline(**row, cache_entry=ACCEPTED) == OfflineDecision(False, "refused", None)


@pytest.mark.parametrize("list_enabled", [False, True])
@pytest.mark.parametrize("cache_enabled", [False, True])
def test_r_auth_6_reject_all_row(list_enabled: bool, cache_enabled: bool) -> None:
    row = dict(allow_unknown=False, local_authorize_offline=False,
               local_list_enabled=list_enabled, cache_enabled=cache_enabled)
    for list_entry in (None, ACCEPTED, BLOCKED):
        for cache_entry in (None, ACCEPTED, BLOCKED):
            d = offline(**row, list_entry=list_entry, cache_entry=cache_entry)
            assert not d.accepted and d.source == "refused"


def test_r_auth_6_local_list_takes_precedence_over_cache() -> None:
    both = dict(local_list_enabled=True, cache_enabled=True)
    for allow in (False, True):
        d = offline(**both, allow_unknown=allow, list_entry=BLOCKED, cache_entry=ACCEPTED)
        assert d == OfflineDecision(False, "refused", BLOCKED)
        d = offline(**both, allow_unknown=allow, list_entry=ACCEPTED, cache_entry=BLOCKED)
        assert d == OfflineDecision(True, "local_list", ACCEPTED)
    # not in the list: the cache decides
    assert offline(**both, allow_unknown=False, cache_entry=ACCEPTED).source == "cache"
    # list disabled: its entry is ignored, the cache decides
    d = offline(cache_enabled=True, allow_unknown=False, list_entry=BLOCKED, cache_entry=ACCEPTED)
    assert d.source == "cache"


@pytest.mark.parametrize("entry", NOT_USABLE, ids=lambda e: f"{e.status}-{e.expiry}")
@pytest.mark.parametrize("where", ["list", "cache"])
def test_r_auth_6_known_but_not_usable_refused_even_with_allow_unknown(
    entry: IdTagInfo, where: str
) -> None:
    kw = (
        dict(local_list_enabled=True, list_entry=entry)
        if where == "list"
        else dict(cache_enabled=True, cache_entry=entry)
    )
    d = offline(allow_unknown=True, local_authorize_offline=True, **kw)
    assert d == OfflineDecision(False, "refused", entry)


def test_r_auth_6_local_authorize_offline_false_does_not_authorize_from_list_or_cache() -> None:
    base = dict(local_authorize_offline=False, local_list_enabled=True, cache_enabled=True)
    # usable entries do not authorize by themselves: the unknown rule decides
    assert offline(**base, allow_unknown=False, list_entry=ACCEPTED).source == "refused"
    assert offline(**base, allow_unknown=False, cache_entry=ACCEPTED).source == "refused"
    assert offline(**base, allow_unknown=True, list_entry=ACCEPTED) == OfflineDecision(
        True, "unknown_allowed", None
    )
    # cache entries are not consulted at all, not even to refuse
    assert offline(**base, allow_unknown=True, cache_entry=BLOCKED).source == "unknown_allowed"
    # but a badge the CSMS listed as not usable is never let in (OCPP 1.6 §3.5.4)
    for entry in NOT_USABLE:
        d = offline(**base, allow_unknown=True, list_entry=entry)
        assert d == OfflineDecision(False, "refused", entry)
    # ... unless the list itself is disabled
    d = offline(**{**base, "local_list_enabled": False}, allow_unknown=True, list_entry=BLOCKED)
    assert d.source == "unknown_allowed"


def test_r_auth_6_expiry_reached_while_offline() -> None:
    row = dict(allow_unknown=False, local_list_enabled=True)
    info = IdTagInfo("Accepted", LATER)
    assert offline(**row, list_entry=info).accepted
    assert not offline(**{**row, "now": LATER}, list_entry=info).accepted


def test_offline_decision_consistency_is_checked() -> None:
    with pytest.raises(ValueError):
        OfflineDecision(True, "refused", None)
    with pytest.raises(ValueError):
        OfflineDecision(False, "cache", ACCEPTED)
    with pytest.raises(ValueError):
        OfflineDecision(True, "free", None)


# --------------------------------------------------------- LocalPreAuthorize


def pre(**kw):
    args = dict(now=NOW, local_pre_authorize=True, local_list_enabled=True, cache_enabled=True,
                list_entry=None, cache_entry=None)
    args.update(kw)
    return pre_authorized(**args)


def test_r_auth_7_local_pre_authorize_usable_entry_starts_at_once() -> None:
    assert pre(list_entry=ACCEPTED) is ACCEPTED
    assert pre(cache_entry=ACCEPTED_UNTIL_LATER) is ACCEPTED_UNTIL_LATER
    assert pre(list_entry=ACCEPTED, cache_entry=BLOCKED) is ACCEPTED


def test_r_auth_7_local_pre_authorize_otherwise_asks_the_csms() -> None:
    assert pre(local_pre_authorize=False, list_entry=ACCEPTED, cache_entry=ACCEPTED) is None
    assert pre() is None
    for entry in NOT_USABLE:
        assert pre(list_entry=entry) is None
        assert pre(cache_entry=entry) is None
    # the list decides alone for an idTag it holds
    assert pre(list_entry=BLOCKED, cache_entry=ACCEPTED) is None
    # disabled stores are ignored
    assert pre(local_list_enabled=False, list_entry=ACCEPTED) is None
    assert pre(cache_enabled=False, cache_entry=ACCEPTED) is None
    assert pre(local_list_enabled=False, list_entry=BLOCKED, cache_entry=ACCEPTED) is ACCEPTED


# ------------------------------------------------ SendLocalList (R-AUTH 7)


def entry(id_tag: str, status: str | None = "Accepted", **info) -> dict:
    e: dict = {"idTag": id_tag}
    if status is not None:
        e["idTagInfo"] = {"status": status, **info}
    return e


def req(version: int, update_type: str, entries: list | None = None) -> dict:
    p: dict = {"listVersion": version, "updateType": update_type}
    if entries is not None:
        p["localAuthorizationList"] = entries
    return p


def plan(payload: dict, *, current: dict[str, str] | None = None, version: int = 0,
         enabled: bool = True, max_length: int = 100_000, max_send: int = 400):
    current = current or {}
    keys = {id_tag_key(k) for k in current}
    return plan_list_update(
        payload,
        current_version=version,
        current_size=len(current),
        contains=lambda t: id_tag_key(t) in keys,
        enabled=enabled,
        max_length=max_length,
        max_send=max_send,
    )


def test_r_auth_7_full_update_planned() -> None:
    p = req(3, "Full", [entry("A", expiryDate="2026-05-01T00:00:00Z", parentIdTag="P"),
                        entry("b", "Blocked")])
    u = plan(p, version=7, current={"X": "Accepted"})
    assert u == ListUpdate(
        version=3,
        full=True,
        upserts={"A": IdTagInfo("Accepted", datetime(2026, 5, 1, tzinfo=timezone.utc), "P"),
                 "b": IdTagInfo("Blocked")},
        deletes=frozenset(),
    )


def test_r_auth_7_full_update_may_lower_or_repeat_the_version() -> None:
    assert isinstance(plan(req(2, "Full", [entry("A")]), version=9), ListUpdate)
    assert isinstance(plan(req(9, "Full", [entry("A")]), version=9), ListUpdate)


@pytest.mark.parametrize("entries", [None, []])
def test_r_auth_7_full_update_without_entries_empties_the_list(entries) -> None:
    assert plan(req(4, "Full", entries), version=3, current={"A": "x"}) == ListUpdate(4, True, {},
                                                                                     frozenset())
    # version 0 is the empty list's version: allowed for exactly this case
    assert plan(req(0, "Full", entries), version=3) == ListUpdate(0, True, {}, frozenset())


def test_r_auth_7_differential_update_planned_entry_without_info_deletes() -> None:
    p = req(5, "Differential", [entry("A", "Blocked"), entry("B", None), entry("new")])
    u = plan(p, version=4, current={"A": "Accepted", "B": "Accepted"})
    assert u == ListUpdate(5, False, {"A": IdTagInfo("Blocked"), "new": ACCEPTED},
                           frozenset({"B"}))
    # an empty differential only moves the version on
    assert plan(req(6, "Differential"), version=5) == ListUpdate(6, False, {}, frozenset())


def test_r_auth_7_not_supported_when_local_list_disabled() -> None:
    assert plan(req(1, "Full", [entry("A")]), enabled=False) == "NotSupported"
    # disabled wins over every other check
    assert plan(req(-1, "Differential", [entry("A")] * 2), enabled=False) == "NotSupported"


@pytest.mark.parametrize("version", [1, 4, 5])
def test_r_auth_7_version_mismatch_for_stale_differential(version: int) -> None:
    assert plan(req(version, "Differential", [entry("A")]), version=5) == "VersionMismatch"


def test_r_auth_7_differential_first_version_on_empty_list() -> None:
    assert isinstance(plan(req(1, "Differential", [entry("A")]), version=0), ListUpdate)


@pytest.mark.parametrize(
    "payload",
    [
        req(-1, "Full", [entry("A")]),
        req(-5, "Differential", []),
        req(0, "Full", [entry("A")]),
        req(0, "Differential", []),
        req(0, "Differential", [entry("A")]),
    ],
)
def test_r_auth_7_failed_for_reserved_versions(payload: dict) -> None:
    assert plan(payload) == "Failed"


def test_r_auth_7_failed_for_too_many_entries_in_one_request() -> None:
    entries = [entry(f"T{i}") for i in range(401)]
    assert plan(req(1, "Full", entries)) == "Failed"
    assert plan(req(1, "Differential", entries)) == "Failed"
    assert isinstance(plan(req(1, "Full", entries[:400])), ListUpdate)
    assert plan(req(1, "Full", entries[:3]), max_send=2) == "Failed"


@pytest.mark.parametrize(
    "entries",
    [
        [entry("A"), entry("A", "Blocked")],
        [entry("abc"), entry("ABC")],  # idTags are case-insensitive
        [entry("A"), entry("a", None)],  # upsert and delete of one idTag
        [entry("A", None), entry("A", None)],
    ],
)
def test_r_auth_7_failed_for_duplicate_idtags(entries: list) -> None:
    update_type = "Full" if all("idTagInfo" in e for e in entries) else "Differential"
    assert plan(req(1, update_type, entries)) == "Failed"


def test_r_auth_7_failed_for_full_entry_without_idtaginfo() -> None:
    assert plan(req(1, "Full", [entry("A"), entry("B", None)])) == "Failed"


@pytest.mark.parametrize(
    "bad",
    [
        {"idTag": "A", "idTagInfo": {"status": "Accepted", "expiryDate": "not a date"}},
        {"idTag": "A", "idTagInfo": {"status": "Maybe"}},
        {"idTag": "A", "idTagInfo": {}},
        {"idTag": ""},
        {"idTagInfo": {"status": "Accepted"}},
        "A",
    ],
)
def test_r_auth_7_failed_for_unreadable_entries(bad) -> None:
    assert plan(req(1, "Differential", [entry("B"), bad])) == "Failed"


@pytest.mark.parametrize(
    "payload",
    [
        {"listVersion": 1},
        {"listVersion": 1, "updateType": "Partial"},
        {"listVersion": "1", "updateType": "Full"},
        {"listVersion": True, "updateType": "Full"},
        {"updateType": "Full"},
        {"listVersion": 1, "updateType": "Full", "localAuthorizationList": {"idTag": "A"}},
    ],
)
def test_r_auth_7_failed_for_malformed_requests(payload: dict) -> None:
    assert plan(payload) == "Failed"


def test_r_auth_7_failed_for_full_update_beyond_max_length() -> None:
    entries = [entry(f"T{i}") for i in range(11)]
    assert plan(req(1, "Full", entries), max_length=10) == "Failed"
    assert isinstance(plan(req(1, "Full", entries[:10]), max_length=10), ListUpdate)


def test_r_auth_7_failed_for_differential_growing_beyond_max_length() -> None:
    current = {f"T{i}": "Accepted" for i in range(8)}
    grow3 = [entry("N1"), entry("N2"), entry("N3")]
    assert plan(req(2, "Differential", grow3), current=current, version=1,
                max_length=10) == "Failed"
    # replacing existing ids (any case) does not grow the list
    replace = [entry("t0", "Blocked"), entry("T1"), entry("N1"), entry("N2")]
    assert isinstance(plan(req(2, "Differential", replace), current=current, version=1,
                           max_length=10), ListUpdate)
    # removals in the same request make room; removing absent ids does not
    assert isinstance(plan(req(2, "Differential", [*grow3, entry("T7", None)]),
                           current=current, version=1, max_length=10), ListUpdate)
    assert plan(req(2, "Differential", [*grow3, entry("gone", None)]),
                current=current, version=1, max_length=10) == "Failed"


def test_r_auth_7_check_order_failed_then_version_mismatch_then_capacity() -> None:
    # a malformed request is Failed even when its version is stale
    assert plan(req(1, "Differential", [entry("A"), entry("a")]), version=5) == "Failed"
    # a stale version is a VersionMismatch even when it would also overflow
    full = {f"T{i}": "Accepted" for i in range(10)}
    assert plan(req(5, "Differential", [entry("N")]), current=full, version=5,
                max_length=10) == "VersionMismatch"


TAGS = st.sampled_from(["a", "A", "b", "B", "c", "d", "e", "f", "g", "h"])


@settings(max_examples=300, deadline=None)
@given(
    current=st.sets(st.sampled_from(["a", "b", "c", "d", "e", "f"]), max_size=6),
    ops=st.dictionaries(TAGS, st.booleans(), max_size=8),
    max_length=st.integers(0, 8),
)
def test_r_auth_7_property_differential_capacity_check_matches_applying(
    current: set[str], ops: dict[str, bool], max_length: int
) -> None:
    """plan_list_update accepts a (well-formed, newer) differential exactly when
    applying it -- removals then upserts -- leaves at most max_length entries."""
    if len({id_tag_key(t) for t in ops}) != len(ops):
        ops = {id_tag_key(t): v for t, v in ops.items()}
    entries = [entry(t) if upsert else entry(t, None) for t, upsert in ops.items()]
    result = plan(req(2, "Differential", entries), current=dict.fromkeys(current, "Accepted"),
                  version=1, max_length=max_length)
    model = {id_tag_key(t) for t in current}
    model -= {id_tag_key(t) for t, upsert in ops.items() if not upsert}
    model |= {id_tag_key(t) for t, upsert in ops.items() if upsert}
    if len(model) <= max_length:
        assert isinstance(result, ListUpdate)
        assert {id_tag_key(t) for t in result.upserts} | {id_tag_key(t) for t in result.deletes} \
            == {id_tag_key(t) for t in ops}
    else:
        assert result == "Failed"


# ------------------------------------------------------------ cache policy


def test_r_auth_7_cache_policy_bound_and_eviction_count() -> None:
    assert AuthCachePolicy.MAX_ENTRIES == 10_000
    assert entries_to_evict(0, 10) == 0
    assert entries_to_evict(10, 10) == 0
    assert entries_to_evict(11, 10) == 1
    assert entries_to_evict(25, 0) == 25
    assert AuthCachePolicy.entries_to_evict(10_001, AuthCachePolicy.MAX_ENTRIES) == 1
    with pytest.raises(ValueError):
        entries_to_evict(5, -1)
    with pytest.raises(ValueError):
        entries_to_evict(-1, 5)


def test_id_tag_key_folds_ascii_only() -> None:
    assert id_tag_key("AbC123") == "abc123"
    assert id_tag_key("ÄB") == "Äb"  # like SQLite NOCASE
