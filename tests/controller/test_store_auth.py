"""Tests of the authorization cache, local list and reservations in the state store.

Requirements covered: R-AUTH 7 (authorization cache and local list persisted,
case-insensitive idTags, atomic SendLocalList updates, LocalAuthListMaxLength
100000 at speed), R-RES (reservations persisted).
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.core.auth import AuthCachePolicy, IdTagInfo, ListUpdate, plan_list_update
from controller.store import Store, StoreError
from controller.store import sqlite as store_mod
from controller.store.sqlite import ReservationRow

ACC = {"status": "Accepted"}
FULL_INFO = {"status": "Accepted", "expiryDate": "2026-05-01T00:00:00.000Z",
             "parentIdTag": "FLEET1"}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "evsectl.db"


@pytest.fixture
def store(db_path: Path):
    s = Store.open(db_path)
    yield s
    s.close()


def raw(path: Path) -> sqlite3.Connection:
    """A second, independent connection: sees only what was committed."""
    return sqlite3.connect(str(path), isolation_level=None)


# ------------------------------------------------------------------ schema


def _auth_migration_index() -> int:
    return store_mod.MIGRATIONS.index(store_mod._MIGRATION_2)


def test_r_auth_7_schema_has_auth_tables(store: Store) -> None:
    assert store.schema_version == store_mod.SCHEMA_VERSION == len(store_mod.MIGRATIONS)
    assert store.schema_version >= _auth_migration_index() + 1
    tables = {r[0] for r in store._conn.execute("SELECT name FROM sqlite_master")}
    assert {"auth_cache", "local_list", "reservations", "auth_cache_lru"} <= tables
    plan = store._conn.execute(
        "EXPLAIN QUERY PLAN SELECT status FROM local_list WHERE id_tag = ?", ("x",)
    ).fetchall()
    assert "PRIMARY KEY" in str(plan) or "INDEX" in str(plan)


def test_r_auth_7_migration_from_previous_version_keeps_data(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = _auth_migration_index()
    with monkeypatch.context() as m:
        m.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:previous])
        s = Store.open(db_path)
        assert s.schema_version == previous
        s.set_keys({"LocalAuthListEnabled": "true"})
        s.set_availability(1, "Inoperative")
        tx = s.begin_transaction(1, "BADGE", 1000, "2026-04-16T08:00:00.000Z")
        s.enqueue("StartTransaction", {"connectorId": 1}, tx.local_id)
        s.close()
    s = Store.open(db_path)
    try:
        assert s.schema_version == store_mod.SCHEMA_VERSION
        assert s.keys() == {"LocalAuthListEnabled": "true"}
        assert s.availability() == {1: "Inoperative"}
        assert [t.id_tag for t in s.open_transactions()] == ["BADGE"]
        assert [r.action for r in s.pending()] == ["StartTransaction"]
        assert s.local_list_version() == 0
        assert s.local_list_size() == 0 and s.cache_size() == 0 and s.reservations() == []
        s.cache_put("A", ACC, "t")
        assert s.cache_get("a") == ACC
    finally:
        s.close()


# ------------------------------------------------------------------- cache


def test_r_auth_7_cache_roundtrip(store: Store) -> None:
    assert store.cache_get("A") is None
    store.cache_put("A", FULL_INFO, "2026-04-16T08:00:00.000Z")
    assert store.cache_get("A") == FULL_INFO
    store.cache_put("B", {"status": "Blocked"}, "2026-04-16T08:00:01.000Z")
    assert store.cache_get("B") == {"status": "Blocked"}
    assert store.cache_size() == 2
    # replace
    store.cache_put("A", {"status": "Invalid"}, "2026-04-16T08:00:02.000Z")
    assert store.cache_get("A") == {"status": "Invalid"}
    assert store.cache_size() == 2
    # IdTagInfo round trip through the store
    info = IdTagInfo.from_ocpp(FULL_INFO)
    store.cache_put("C", info.to_ocpp(), "t")
    assert IdTagInfo.from_ocpp(store.cache_get("C")) == info


def test_r_auth_7_cache_is_case_insensitive(store: Store) -> None:
    store.cache_put("04A2B3C4", ACC, "t1")
    assert store.cache_get("04a2b3c4") == ACC
    store.cache_put("04a2b3c4", {"status": "Blocked"}, "t2")
    assert store.cache_size() == 1
    assert store.cache_get("04A2B3C4") == {"status": "Blocked"}
    # the spelling given last is kept
    assert store._conn.execute("SELECT id_tag FROM auth_cache").fetchall() == [("04a2b3c4",)]
    assert store.cache_touch("04A2b3C4", "t3")
    assert store.cache_remove("04A2B3c4")
    assert store.cache_size() == 0
    assert not store.cache_remove("04A2B3C4")
    assert not store.cache_touch("04A2B3C4", "t4")


def test_r_auth_7_cache_clear(store: Store) -> None:
    for tag in "ABC":
        store.cache_put(tag, ACC, "t")
    assert store.cache_clear() == 3
    assert store.cache_size() == 0
    assert store.cache_clear() == 0


@pytest.mark.parametrize(
    "info",
    [{}, {"status": "accepted"}, {"status": "Accepted", "expiryDate": 5},
     {"status": "Accepted", "parentIdTag": 1}, "Accepted"],
)
def test_r_auth_7_cache_put_refuses_bad_info(store: Store, info) -> None:
    with pytest.raises((ValueError, TypeError)):
        store.cache_put("A", info, "t")
    with pytest.raises(TypeError):
        store.cache_put("", ACC, "t")
    assert store.cache_size() == 0


def test_r_auth_7_cache_lru_eviction_order(store: Store) -> None:
    # used_at goes backwards (clock set back by the CSMS): the order of use counts
    for i, tag in enumerate(["A", "B", "C", "D", "E"]):
        store.cache_put(tag, ACC, f"2026-04-16T08:00:0{9 - i}.000Z")
    store.cache_touch("a", "2000-01-01T00:00:00.000Z")  # A: most recent now
    store.cache_put("B", {"status": "Blocked"}, "2000-01-01T00:00:00.000Z")  # B: after A
    # least recent first: C, D, E, A, B
    assert store.cache_evict_lru(keep=10) == 0
    assert store.cache_evict_lru(keep=3) == 2
    assert {t for t in "ABCDE" if store.cache_get(t)} == {"E", "A", "B"}
    assert store.cache_evict_lru(keep=1) == 2
    assert {t for t in "ABCDE" if store.cache_get(t)} == {"B"}
    assert store.cache_evict_lru(keep=0) == 1
    assert store.cache_size() == 0
    with pytest.raises(ValueError):
        store.cache_evict_lru(keep=-1)


def test_r_auth_7_cache_bounded_by_policy(store: Store) -> None:
    with store.atomic():
        for i in range(50):
            store.cache_put(f"T{i}", ACC, "t")
    assert store.cache_evict_lru(keep=AuthCachePolicy.MAX_ENTRIES) == 0
    keep = 40
    assert store.cache_evict_lru(keep) == AuthCachePolicy.entries_to_evict(50, keep) == 10
    assert store.cache_get("T9") is None and store.cache_get("T10") == ACC


# -------------------------------------------------------------- local list


def test_r_auth_7_local_list_full_and_differential(store: Store) -> None:
    assert store.local_list_version() == 0
    store.local_list_apply(3, True, {"A": FULL_INFO, "B": ACC, "C": {"status": "Blocked"}}, [])
    assert store.local_list_version() == 3
    assert store.local_list_size() == 3
    assert store.local_list_get("a") == FULL_INFO
    assert store.local_list_contains("c") and not store.local_list_contains("D")
    store.local_list_apply(4, False, {"b": {"status": "Expired"}, "D": ACC}, ["C", "nope"])
    assert store.local_list_version() == 4
    assert store.local_list_size() == 3
    assert store.local_list_get("B") == {"status": "Expired"}
    assert store.local_list_get("C") is None
    # a full update replaces everything
    store.local_list_apply(1, True, {"Z": ACC}, ())
    assert store.local_list_version() == 1
    assert store.local_list_size() == 1 and store.local_list_get("A") is None
    # emptied
    store.local_list_apply(0, True, {}, ())
    assert store.local_list_version() == 0 and store.local_list_size() == 0


def test_r_auth_7_local_list_apply_refuses_bad_arguments(store: Store) -> None:
    store.local_list_apply(1, True, {"A": ACC})
    with pytest.raises(ValueError):
        store.local_list_apply(-1, True, {})
    with pytest.raises(ValueError):
        store.local_list_apply(2, True, {}, ["A"])
    with pytest.raises(ValueError):
        store.local_list_apply(2, False, {"B": {"status": "Nope"}})
    with pytest.raises(TypeError):
        store.local_list_apply("2", False, {})
    assert store.local_list_version() == 1 and store.local_list_get("A") == ACC


def _install_failure(store: Store, id_tag: str) -> None:
    """A trigger makes inserting ``id_tag`` fail half-way through an update."""
    store._conn.execute(
        "CREATE TEMP TRIGGER boom BEFORE INSERT ON local_list "
        f"WHEN NEW.id_tag = '{id_tag}' BEGIN SELECT RAISE(ABORT, 'forced failure'); END"
    )


@pytest.mark.parametrize("full", [True, False])
def test_r_auth_7_local_list_update_failure_leaves_old_list_whole(
    store: Store, db_path: Path, full: bool
) -> None:
    old = {f"OLD{i}": ACC for i in range(10)}
    store.local_list_apply(5, True, old)
    _install_failure(store, "NEW300")
    upserts = {f"NEW{i}": {"status": "Blocked"} for i in range(400)}
    deletes = [] if full else ["OLD1", "OLD2"]
    with pytest.raises(StoreError):
        store.local_list_apply(6, full, {"OLD0": {"status": "Blocked"}, **upserts}, deletes)
    for s in (store, None):
        conn = store._conn if s else raw(db_path)
        try:
            rows = dict(conn.execute("SELECT id_tag, status FROM local_list").fetchall())
            version = conn.execute(
                "SELECT value FROM meta WHERE name = 'local_list_version'"
            ).fetchone()[0]
        finally:
            if s is None:
                conn.close()
        assert rows == {k: "Accepted" for k in old}
        assert version == "5"
    assert store.local_list_version() == 5
    # the store still works afterwards
    store._conn.execute("DROP TRIGGER boom")
    store.local_list_apply(6, False, {"NEW300": ACC})
    assert store.local_list_size() == 11


class _FailingVersionWrite:
    """Connection proxy failing the last step of an update: the version write."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def execute(self, sql, params=()):
        if sql.startswith("INSERT INTO meta") and params and params[0] == "local_list_version":
            raise sqlite3.OperationalError("disk I/O error (simulated)")
        return self._conn.execute(sql, params)


def test_r_auth_7_local_list_version_write_failure_rolls_back_entries(
    store: Store, db_path: Path
) -> None:
    store.local_list_apply(2, True, {"A": ACC})
    real = store._conn
    store._conn = _FailingVersionWrite(real)
    try:
        with pytest.raises(StoreError):
            store.local_list_apply(3, True, {"B": ACC, "C": ACC})
    finally:
        store._conn = real
    assert store.local_list_version() == 2
    assert store.local_list_get("A") == ACC and store.local_list_size() == 1
    conn = raw(db_path)
    try:
        assert conn.execute("SELECT id_tag FROM local_list").fetchall() == [("A",)]
    finally:
        conn.close()


def test_r_auth_7_local_list_apply_inside_atomic(store: Store) -> None:
    store.local_list_apply(1, True, {"A": ACC})
    with pytest.raises(RuntimeError), store.atomic():
        store.local_list_apply(2, False, {"B": ACC})
        store.cache_put("X", ACC, "t")
        raise RuntimeError("later step failed")
    assert store.local_list_version() == 1 and not store.local_list_contains("B")
    assert store.cache_get("X") is None
    with store.atomic():
        store.local_list_apply(2, False, {"B": ACC})
        store.cache_remove("B")
    assert store.local_list_version() == 2 and store.local_list_contains("b")


def test_r_auth_7_plan_and_apply_with_the_store(store: Store) -> None:
    """SendLocalList end to end through the pure planner and the store."""

    def send(payload: dict) -> str:
        result = plan_list_update(
            payload,
            current_version=store.local_list_version(),
            current_size=store.local_list_size(),
            contains=store.local_list_contains,
            enabled=True,
            max_length=5,
            max_send=3,
        )
        if isinstance(result, str):
            return result
        assert isinstance(result, ListUpdate)
        store.local_list_apply(
            result.version, result.full,
            {t: i.to_ocpp() for t, i in result.upserts.items()}, result.deletes,
        )
        return "Accepted"

    tags = lambda *ts, s="Accepted": [{"idTag": t, "idTagInfo": {"status": s}} for t in ts]
    assert send({"listVersion": 1, "updateType": "Full",
                 "localAuthorizationList": tags("A", "B", "C")}) == "Accepted"
    assert send({"listVersion": 2, "updateType": "Differential",
                 "localAuthorizationList": tags("D", "e")}) == "Accepted"
    assert send({"listVersion": 2, "updateType": "Differential",
                 "localAuthorizationList": tags("F")}) == "VersionMismatch"
    assert send({"listVersion": 3, "updateType": "Differential",
                 "localAuthorizationList": tags("F")}) == "Failed"  # 6 > 5
    assert send({"listVersion": 3, "updateType": "Differential",
                 "localAuthorizationList": [*tags("F", "a", s="Blocked"),
                                            {"idTag": "b"}]}) == "Accepted"
    assert store.local_list_version() == 3 and store.local_list_size() == 5
    assert store.local_list_get("A") == {"status": "Blocked"}
    assert not store.local_list_contains("B")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    updates=st.lists(
        st.tuples(
            st.booleans(),
            st.dictionaries(st.sampled_from(["a", "B", "c", "D", "e"]),
                            st.sampled_from(["Accepted", "Blocked", "Expired", "Invalid"]),
                            max_size=4),
            st.sets(st.sampled_from(["A", "b", "C", "d", "x"]), max_size=3),
        ),
        max_size=6,
    )
)
def test_r_auth_7_property_store_list_matches_model(updates) -> None:
    """Any sequence of Full/Differential updates leaves the store equal to a
    case-insensitive dict model (removals applied before upserts)."""
    with tempfile.TemporaryDirectory() as tmp:
        s = Store.open(Path(tmp) / "db")
        try:
            model: dict[str, str] = {}
            for version, (full, upserts, deletes) in enumerate(updates, start=1):
                if full:
                    model = {}
                    deletes = set()
                for t in deletes:
                    model.pop(t.lower(), None)
                for t, status in upserts.items():
                    model[t.lower()] = status
                s.local_list_apply(version, full, {t: {"status": v} for t, v in upserts.items()},
                                   deletes)
            stored = {
                t.lower(): v
                for t, v in s._conn.execute("SELECT id_tag, status FROM local_list")
            }
            assert stored == model
            assert s.local_list_version() == len(updates)
        finally:
            s.close()


def test_r_auth_7_local_list_100000_entries_load_and_lookup_fast(store: Store) -> None:
    """LocalAuthListMaxLength 100000 loaded by 250 SendLocalList of 400
    (SendLocalListMaxLength): well under 3 s; a lookup at most 0.2 ms."""
    started = time.perf_counter()
    for version in range(1, 251):
        upserts = {f"{version:03d}{i:04d}ABCDEF": ACC for i in range(400)}
        store.local_list_apply(version, False, upserts, ())
    elapsed = time.perf_counter() - started
    assert store.local_list_size() == 100_000
    assert store.local_list_version() == 250
    assert elapsed < 3.0, f"loading 100000 ids took {elapsed:.2f} s"

    rng = random.Random(7)
    probes = [f"{rng.randint(1, 250):03d}{rng.randint(0, 399):04d}abcdef" for _ in range(2000)]
    probes += [f"X{i}" for i in range(500)]  # absent ids
    started = time.perf_counter()
    found = sum(store.local_list_get(p) is not None for p in probes)
    per_lookup = (time.perf_counter() - started) / len(probes)
    assert found == 2000
    assert per_lookup <= 0.2e-3, f"lookup took {per_lookup * 1e3:.3f} ms"
    started = time.perf_counter()
    assert all(store.local_list_contains(p) for p in probes[:2000])
    assert (time.perf_counter() - started) / 2000 <= 0.2e-3


# ------------------------------------------------------------ reservations


def test_r_res_reservation_roundtrip_replace_remove(store: Store) -> None:
    assert store.reservations() == []
    r2 = ReservationRow(2, 1, "BADGE", None, "2026-04-16T09:00:00.000Z")
    r1 = ReservationRow(1, 0, "Other", "PARENT", "2026-04-16T10:00:00.000Z")
    store.put_reservation(r2)
    store.put_reservation(r1)
    assert store.reservations() == [r1, r2]
    r2b = ReservationRow(2, 2, "BADGE2", "P", "2026-04-16T11:00:00.000Z")
    store.put_reservation(r2b)  # same id: replaced
    assert store.reservations() == [r1, r2b]
    assert store.remove_reservation(1)
    assert not store.remove_reservation(1)
    assert store.reservations() == [r2b]


@pytest.mark.parametrize(
    "row",
    [
        ReservationRow(1, -1, "A", None, "t"),
        ReservationRow(True, 1, "A", None, "t"),
        ReservationRow(1, 1, None, None, "t"),
        ReservationRow(1, 1, "A", 3, "t"),
        ReservationRow(1, 1, "A", None, None),
    ],
)
def test_r_res_put_reservation_refuses_bad_rows(store: Store, row: ReservationRow) -> None:
    with pytest.raises((TypeError, ValueError)):
        store.put_reservation(row)
    assert store.reservations() == []


def test_r_res_reservation_inside_atomic_rolls_back(store: Store) -> None:
    with pytest.raises(RuntimeError), store.atomic():
        store.put_reservation(ReservationRow(7, 1, "A", None, "t"))
        raise RuntimeError
    assert store.reservations() == []


# ------------------------------------------------------------- persistence


def test_r_auth_7_r_res_persisted_across_reopen(db_path: Path) -> None:
    s = Store.open(db_path)
    s.cache_put("Cached", FULL_INFO, "2026-04-16T08:00:00.000Z")
    s.cache_put("Old", ACC, "2026-04-16T07:00:00.000Z")
    s.cache_touch("cached", "2026-04-16T08:05:00.000Z")
    s.local_list_apply(12, True, {"Listed": {"status": "Blocked"}})
    res = ReservationRow(42, 2, "Resv", "Parent", "2026-04-16T12:00:00.000Z")
    s.put_reservation(res)
    s.close()
    for _ in range(2):
        s = Store.open(db_path)
        try:
            assert s.cache_get("CACHED") == FULL_INFO
            assert s.local_list_version() == 12
            assert s.local_list_get("listed") == {"status": "Blocked"}
            assert s.reservations() == [res]
        finally:
            s.close()
    s = Store.open(db_path)
    try:
        # the LRU order survives too: Old was used least recently
        assert s.cache_evict_lru(keep=1) == 1
        assert s.cache_get("Old") is None and s.cache_get("Cached") is not None
    finally:
        s.close()
