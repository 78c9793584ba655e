"""Tests of the durable state store (controller.store.sqlite).

Requirements covered: R-TX 4 (transaction messages queued on disk, in order,
never lost), R-OPS 5 (availability persisted), R-CONF 3/5 (keys changed over
OCPP persist across restart), R-MODEL 3 (power-loss detection).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from controller.store import OutboxRow, Store, StoreError, TxRecord
from controller.store import sqlite as store_mod

REPO_ROOT = Path(__file__).resolve().parents[2]


def _permissions_bypassed() -> bool:
    """True when file modes do not stop this process from writing (root with
    CAP_DAC_OVERRIDE): the chmod-based cases then prove nothing and are skipped.
    Root with that capability dropped (setpriv --bounding-set -dac_override)
    runs them."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        return False
    try:
        status = Path("/proc/self/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("CapEff:"))
        cap_eff = int(line.split()[1], 16)
    except (OSError, StopIteration, ValueError):
        return True
    CAP_DAC_OVERRIDE = 1
    return bool(cap_eff & (1 << CAP_DAC_OVERRIDE))


PERMISSIONS_BYPASSED = _permissions_bypassed()
SKIP_REASON = "root with CAP_DAC_OVERRIDE writes through file and directory modes"


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


# ------------------------------------------------------------------ open


def test_r_tx_4_wal_and_synchronous_full_are_set(store: Store, db_path: Path) -> None:
    conn = store._conn
    assert conn is not None
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    # WAL is persistent: another connection sees it too
    other = raw(db_path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_r_sec_5_directory_and_file_modes(db_path: Path) -> None:
    s = Store.open(db_path)
    s.close()
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o750
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_r_tx_4_migrates_from_version_0(db_path: Path) -> None:
    db_path.parent.mkdir()
    conn = raw(db_path)
    conn.execute("PRAGMA user_version")  # an empty, valid database at version 0
    conn.close()
    s = Store.open(db_path)
    try:
        assert s.schema_version == store_mod.SCHEMA_VERSION == len(store_mod.MIGRATIONS)
        tables = {
            r[0]
            for r in s._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        assert {"meta", "config_keys", "availability", "transactions", "outbox"} <= tables
    finally:
        s.close()


def test_r_conf_5_reopen_is_idempotent_and_keeps_data(db_path: Path) -> None:
    s = Store.open(db_path)
    s.set_keys({"HeartbeatInterval": "300"})
    s.enqueue("StartTransaction", {"connectorId": 1})
    s.close()
    for _ in range(2):
        s = Store.open(db_path)
        assert s.schema_version == store_mod.SCHEMA_VERSION
        assert s.keys() == {"HeartbeatInterval": "300"}
        assert [r.action for r in s.pending()] == ["StartTransaction"]
        s.close()


def test_r_tx_4_later_migration_applied_on_reopen(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.open(db_path).close()
    extra = ["CREATE TABLE extra (x INTEGER)", "INSERT INTO extra VALUES (42)"]
    monkeypatch.setattr(store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS, extra])
    s = Store.open(db_path)
    try:
        assert s.schema_version == len(store_mod.MIGRATIONS)
        assert s._conn.execute("SELECT x FROM extra").fetchall() == [(42,)]
    finally:
        s.close()
    s = Store.open(db_path)  # not applied twice
    try:
        assert s._conn.execute("SELECT x FROM extra").fetchall() == [(42,)]
    finally:
        s.close()


def test_r_tx_4_failing_migration_rolls_back_whole_step(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.open(db_path).close()
    version = store_mod.SCHEMA_VERSION

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x INTEGER)")
        conn.execute("SELECT * FROM no_such_table")

    monkeypatch.setattr(store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS, broken])
    with pytest.raises(StoreError) as err:
        Store.open(db_path)
    assert str(db_path) in str(err.value)
    conn = raw(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version
        assert conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'half_done'"
        ).fetchone()[0] == 0
    finally:
        conn.close()


def test_r_tx_4_newer_database_is_refused_untouched(db_path: Path) -> None:
    Store.open(db_path).close()
    conn = raw(db_path)
    conn.execute(f"PRAGMA user_version = {store_mod.SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StoreError) as err:
        Store.open(db_path)
    msg = str(err.value)
    assert str(db_path) in msg and "newer" in msg
    conn = raw(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store_mod.SCHEMA_VERSION + 5
    finally:
        conn.close()


def test_r_tx_4_garbage_file_is_refused_not_recreated(db_path: Path) -> None:
    db_path.parent.mkdir()
    garbage = bytes(range(256)) * 64
    db_path.write_bytes(garbage)
    with pytest.raises(StoreError) as err:
        Store.open(db_path)
    msg = str(err.value)
    assert str(db_path) in msg
    assert "corrupt" in msg and "backup" in msg
    assert db_path.read_bytes() == garbage


def test_r_tx_4_damaged_pages_are_refused(db_path: Path) -> None:
    s = Store.open(db_path)
    s.set_keys({f"Key{i}": "x" * 200 for i in range(200)})  # several pages
    s.close()
    data = bytearray(db_path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[2 * page : 4 * page] = b"\xa5" * (2 * page)  # clobber pages 3 and 4
    db_path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as err:
        Store.open(db_path)
    assert str(db_path) in str(err.value)
    assert "corrupt" in str(err.value)
    assert db_path.read_bytes() == bytes(data)


def test_r_tx_4_parent_is_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    path = blocker / "evsectl.db"
    with pytest.raises(StoreError) as err:
        Store.open(path)
    assert str(path) in str(err.value)
    path = blocker / "deeper" / "evsectl.db"
    with pytest.raises(StoreError) as err:
        Store.open(path)
    assert str(path) in str(err.value)


def test_r_tx_4_path_is_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "evsectl.db"
    path.mkdir()
    with pytest.raises(StoreError) as err:
        Store.open(path)
    assert str(path) in str(err.value)


@pytest.mark.skipif(PERMISSIONS_BYPASSED, reason=SKIP_REASON)
def test_r_tx_4_read_only_file_is_refused(db_path: Path) -> None:
    s = Store.open(db_path)
    s.set_keys({"A": "1"})
    s.close()
    db_path.chmod(0o444)
    try:
        with pytest.raises(StoreError) as err:
            Store.open(db_path)
        assert str(db_path) in str(err.value)
        assert "writable" in str(err.value)
    finally:
        db_path.chmod(0o600)


@pytest.mark.skipif(PERMISSIONS_BYPASSED, reason=SKIP_REASON)
def test_r_tx_4_unwritable_directory_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir()
    db_path.parent.chmod(0o555)
    try:
        with pytest.raises(StoreError) as err:
            Store.open(db_path)
        assert str(db_path) in str(err.value)
    finally:
        db_path.parent.chmod(0o750)


@pytest.mark.skipif(PERMISSIONS_BYPASSED, reason=SKIP_REASON)
def test_r_tx_4_existing_db_in_unwritable_directory_is_refused(db_path: Path) -> None:
    s = Store.open(db_path)
    s.set_keys({"A": "1"})
    s.close()
    db_path.parent.chmod(0o555)
    try:
        with pytest.raises(StoreError) as err:
            Store.open(db_path)
        assert str(db_path) in str(err.value)
    finally:
        db_path.parent.chmod(0o750)


def test_closed_store_raises(db_path: Path) -> None:
    s = Store.open(db_path)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError):
        s.keys()
    with pytest.raises(StoreError):
        s.enqueue("StopTransaction", {})


# ------------------------------------------------------------- key / value


def test_r_conf_3_keys_roundtrip(db_path: Path) -> None:
    s = Store.open(db_path)
    assert s.keys() == {}
    s.set_keys({"HeartbeatInterval": "300", "DefaultIdTag": "SIMTAG"})
    s.set_keys({"HeartbeatInterval": "60"})
    assert s.keys() == {"HeartbeatInterval": "60", "DefaultIdTag": "SIMTAG"}
    s.close()
    s = Store.open(db_path)
    try:
        assert s.keys() == {"HeartbeatInterval": "60", "DefaultIdTag": "SIMTAG"}
    finally:
        s.close()


def test_r_conf_1_keys_are_case_insensitive(store: Store) -> None:
    store.set_keys({"HeartbeatInterval": "300"})
    store.set_keys({"heartbeatinterval": "30"})
    assert store.keys() == {"heartbeatinterval": "30"}


def test_r_conf_3_set_keys_is_one_transaction(store: Store) -> None:
    store.set_keys({"A": "1"})
    with pytest.raises(TypeError):
        store.set_keys({"B": "2", "C": 3})  # type: ignore[dict-item]
    assert store.keys() == {"A": "1"}


def test_r_ops_5_availability_roundtrip(db_path: Path) -> None:
    s = Store.open(db_path)
    assert s.availability() == {}
    s.set_availability(0, "Operative")
    s.set_availability(1, "Inoperative")
    s.set_availability(2, "Inoperative")
    s.set_availability(2, "Operative")
    with pytest.raises(ValueError):
        s.set_availability(1, "Broken")
    s.close()
    s = Store.open(db_path)
    try:
        assert s.availability() == {0: "Operative", 1: "Inoperative", 2: "Operative"}
    finally:
        s.close()


def test_meta_roundtrip(store: Store) -> None:
    assert store.get_meta("x") is None
    store.set_meta("x", "1")
    store.set_meta("x", "2")
    assert store.get_meta("x") == "2"


def test_r_model_3_power_loss_detection(db_path: Path) -> None:
    s = Store.open(db_path)
    assert s.last_run_was_clean()  # new database: nothing to recover
    s.mark_running()
    s.close()  # no mark_stopped: as after a power cut
    s = Store.open(db_path)
    assert not s.last_run_was_clean()
    s.mark_running()
    assert not s.last_run_was_clean()  # decided at open
    s.mark_stopped()
    s.close()
    s = Store.open(db_path)
    try:
        assert s.last_run_was_clean()
    finally:
        s.close()


# ------------------------------------------------------------ transactions


def test_r_tx_1_transaction_lifecycle(db_path: Path) -> None:
    s = Store.open(db_path)
    tx = s.begin_transaction(1, "TAG1", 1000, "2025-01-01T10:00:00Z", reservation_id=7)
    assert isinstance(tx, TxRecord)
    assert tx.transaction_id is None and tx.stopped_at is None
    assert tx.last_meter_wh == 1000 and tx.reservation_id == 7
    tx2 = s.begin_transaction(2, "TAG2", 5, "2025-01-01T10:01:00Z")
    assert tx2.local_id > tx.local_id
    assert s.transaction(tx.local_id) == tx
    assert [t.local_id for t in s.open_transactions()] == [tx.local_id, tx2.local_id]

    s.set_transaction_id(tx.local_id, 4242)
    assert s.update_meter(tx.local_id, 1500, "2025-01-01T10:05:00Z")
    s.close()

    s = Store.open(db_path)  # everything survived
    got = s.transaction(tx.local_id)
    assert got is not None
    assert (got.transaction_id, got.last_meter_wh, got.last_meter_at) == (
        4242,
        1500,
        "2025-01-01T10:05:00Z",
    )
    s.end_transaction(tx.local_id, 2000, "2025-01-01T10:10:00Z", "Local", stop_id_tag="TAG1")
    got = s.transaction(tx.local_id)
    assert got is not None
    assert (got.stopped_at, got.meter_stop_wh, got.stop_reason, got.stop_id_tag) == (
        "2025-01-01T10:10:00Z",
        2000,
        "Local",
        "TAG1",
    )
    assert [t.local_id for t in s.open_transactions()] == [tx2.local_id]

    # a stop is final
    with pytest.raises(StoreError):
        s.end_transaction(tx.local_id, 3000, "2025-01-01T11:00:00Z", "Other")
    assert s.transaction(tx.local_id).meter_stop_wh == 2000  # type: ignore[union-attr]
    assert not s.update_meter(tx.local_id, 9999, "2025-01-01T11:00:00Z")
    assert s.transaction(tx.local_id).last_meter_wh == 2000  # type: ignore[union-attr]

    with pytest.raises(StoreError):
        s.set_transaction_id(999, 1)
    with pytest.raises(StoreError):
        s.update_meter(999, 1, "2025-01-01T11:00:00Z")
    with pytest.raises(StoreError):
        s.end_transaction(999, 1, "2025-01-01T11:00:00Z", "Local")
    s.close()


def test_r_tx_4_forget_only_when_fully_delivered(store: Store) -> None:
    tx = store.begin_transaction(1, "TAG", 0, "2025-01-01T10:00:00Z")
    start = store.enqueue("StartTransaction", {"connectorId": 1}, tx_local_id=tx.local_id)
    assert not store.forget_transaction(tx.local_id)  # still open
    with store.atomic():
        store.end_transaction(tx.local_id, 10, "2025-01-01T10:10:00Z", "Local")
        stop = store.enqueue("StopTransaction", {"meterStop": 10}, tx_local_id=tx.local_id)
    assert not store.forget_transaction(tx.local_id)  # messages still queued
    store.remove(start.seq)
    assert not store.forget_transaction(tx.local_id)
    store.remove(stop.seq)
    assert store.forget_transaction(tx.local_id)
    assert store.transaction(tx.local_id) is None
    assert not store.forget_transaction(tx.local_id)
    # local ids are never reused
    assert store.begin_transaction(1, "TAG", 0, "2025-01-01T11:00:00Z").local_id > tx.local_id


def test_r_tx_4_outbox_row_must_reference_existing_transaction(store: Store) -> None:
    with pytest.raises(StoreError):
        store.enqueue("StopTransaction", {}, tx_local_id=12345)
    assert store.count() == 0


# ------------------------------------------------------------------ outbox


def test_r_tx_4_outbox_order_attempts_removal(db_path: Path) -> None:
    s = Store.open(db_path)
    assert s.first_pending() is None and s.count() == 0
    rows = [s.enqueue("MeterValues", {"n": i, "name": "é"}) for i in range(5)]
    assert all(isinstance(r, OutboxRow) for r in rows)
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert rows[0].attempts == 0 and rows[0].tx_local_id is None
    assert rows[0].created_at.endswith("Z")

    assert s.record_attempt(rows[0].seq) == 1
    assert s.record_attempt(rows[0].seq) == 2
    with pytest.raises(StoreError):
        s.record_attempt(99999)
    s.close()

    s = Store.open(db_path)
    pending = s.pending()
    assert [r.payload["n"] for r in pending] == [0, 1, 2, 3, 4]
    assert pending[0].payload == {"n": 0, "name": "é"}
    assert pending[0].attempts == 2 and pending[1].attempts == 0
    assert [r.seq for r in s.pending(limit=2)] == [rows[0].seq, rows[1].seq]
    assert s.first_pending() == pending[0]
    assert s.count() == 5

    assert s.remove(rows[0].seq)
    assert not s.remove(rows[0].seq)
    assert s.remove(rows[2].seq)
    assert [r.payload["n"] for r in s.pending()] == [1, 3, 4]
    assert s.first_pending().payload["n"] == 1  # type: ignore[union-attr]
    new = s.enqueue("StopTransaction", {"n": 5})
    assert new.seq > rows[-1].seq
    assert [r.payload["n"] for r in s.pending()] == [1, 3, 4, 5]
    assert s.count() == 4
    s.close()


def test_r_tx_4_unserialisable_payload_is_rejected(store: Store) -> None:
    with pytest.raises((TypeError, ValueError)):
        store.enqueue("MeterValues", {"x": object()})
    with pytest.raises(ValueError):
        store.enqueue("MeterValues", {"x": float("nan")})
    assert store.count() == 0


# ------------------------------------------------------------------ atomic


def test_r_tx_4_atomic_rollback_on_exception(db_path: Path) -> None:
    s = Store.open(db_path)
    tx = s.begin_transaction(1, "TAG", 100, "2025-01-01T10:00:00Z")
    with pytest.raises(RuntimeError), s.atomic():
        s.end_transaction(tx.local_id, 200, "2025-01-01T10:10:00Z", "Local")
        s.enqueue("StopTransaction", {"meterStop": 200}, tx_local_id=tx.local_id)
        s.set_keys({"X": "1"})
        raise RuntimeError("boom")
    assert s.count() == 0
    assert s.keys() == {}
    assert s.transaction(tx.local_id).stopped_at is None  # type: ignore[union-attr]
    s.close()
    s = Store.open(db_path)
    try:
        assert s.count() == 0 and s.keys() == {}
        assert [t.local_id for t in s.open_transactions()] == [tx.local_id]
    finally:
        s.close()


def test_r_tx_4_nothing_committed_before_atomic_block_ends(store: Store, db_path: Path) -> None:
    other = raw(db_path)
    try:
        with store.atomic():
            store.enqueue("StopTransaction", {"a": 1})
            with store.atomic():  # nested: must not commit on its own
                store.enqueue("StopTransaction", {"a": 2})
            store.set_keys({"K": "v"})
            assert other.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
            assert other.execute("SELECT count(*) FROM config_keys").fetchone()[0] == 0
        assert other.execute("SELECT count(*) FROM outbox").fetchone()[0] == 2
        assert other.execute("SELECT count(*) FROM config_keys").fetchone()[0] == 1
    finally:
        other.close()


def test_r_tx_4_failed_inner_block_only_undoes_itself(store: Store) -> None:
    with store.atomic():
        store.enqueue("StopTransaction", {"a": 1})
        with pytest.raises(RuntimeError), store.atomic():
            store.enqueue("StopTransaction", {"a": 2})
            raise RuntimeError("inner")
        store.enqueue("StopTransaction", {"a": 3})
    assert [r.payload["a"] for r in store.pending()] == [1, 3]


def test_r_tx_4_single_write_commits_immediately(store: Store, db_path: Path) -> None:
    store.enqueue("StartTransaction", {"connectorId": 1})
    other = raw(db_path)
    try:
        assert other.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1
    finally:
        other.close()


# Full disk, read-only file system, I/O errors: tests/controller/test_store_faults.py


# -------------------------------------------------------------- kill -9


def _run_and_kill(db_path: Path, body: str) -> None:
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from controller.store.sqlite import Store
        store = Store.open(Path({str(db_path)!r}))
        """
    ) + textwrap.dedent(body) + "\nos.kill(os.getpid(), signal.SIGKILL)\n"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=str(REPO_ROOT),
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


def test_r_tx_4_outbox_survives_kill(db_path: Path) -> None:
    _run_and_kill(
        db_path,
        """
        store.mark_running()
        store.set_keys({"MeterValueSampleInterval": "30"})
        store.set_availability(2, "Inoperative")
        tx = store.begin_transaction(1, "TAG", 1000, "2025-01-01T10:00:00Z")
        store.enqueue("StartTransaction", {"idTag": "TAG"}, tx_local_id=tx.local_id)
        store.update_meter(tx.local_id, 1234, "2025-01-01T10:01:00Z")
        with store.atomic():
            store.end_transaction(tx.local_id, 1300, "2025-01-01T10:02:00Z", "Local")
            store.enqueue("StopTransaction", {"meterStop": 1300}, tx_local_id=tx.local_id)
        # killed in the middle of an atomic block: none of it may persist
        with store.atomic():
            store.enqueue("MeterValues", {"lost": True})
            store.set_keys({"MeterValueSampleInterval": "999"})
            os.kill(os.getpid(), signal.SIGKILL)
        """,
    )
    s = Store.open(db_path)
    try:
        assert not s.last_run_was_clean()
        assert s.keys() == {"MeterValueSampleInterval": "30"}
        assert s.availability() == {2: "Inoperative"}
        assert [(r.action, r.payload) for r in s.pending()] == [
            ("StartTransaction", {"idTag": "TAG"}),
            ("StopTransaction", {"meterStop": 1300}),
        ]
        (tx,) = [s.transaction(r.tx_local_id) for r in s.pending()[:1]]  # type: ignore[arg-type]
        assert tx is not None
        assert (tx.stopped_at, tx.meter_stop_wh, tx.stop_reason) == (
            "2025-01-01T10:02:00Z",
            1300,
            "Local",
        )
        assert s.open_transactions() == []
    finally:
        s.close()


def test_r_model_3_open_transaction_survives_kill(db_path: Path) -> None:
    _run_and_kill(
        db_path,
        """
        store.mark_running()
        tx = store.begin_transaction(2, "TAG", 50, "2025-01-01T10:00:00Z")
        store.set_transaction_id(tx.local_id, 77)
        store.update_meter(tx.local_id, 80, "2025-01-01T10:03:00Z")
        """,
    )
    s = Store.open(db_path)
    try:
        assert not s.last_run_was_clean()
        (tx,) = s.open_transactions()
        assert (tx.connector_id, tx.transaction_id, tx.last_meter_wh, tx.last_meter_at) == (
            2,
            77,
            80,
            "2025-01-01T10:03:00Z",
        )
    finally:
        s.close()


def test_r_tx_4_queue_bound_drops_non_transaction_then_meter_values_never_start_stop(tmp_path):
    store = Store.open(tmp_path / "q.sqlite")
    tx = store.begin_transaction(1, "T", 0, "2026-01-01T00:00:00.000Z")
    store.enqueue("StartTransaction", {"n": 0}, tx.local_id)
    for i in range(3):
        store.enqueue("SecurityEventNotification", {"n": i})
        store.enqueue("MeterValues", {"n": i}, tx.local_id)
    store.enqueue("StopTransaction", {"n": 9}, tx.local_id)
    assert store.trim_outbox(keep=4) == 4
    assert [(r.action, r.payload["n"]) for r in store.pending()] == [
        ("StartTransaction", 0), ("MeterValues", 1), ("MeterValues", 2), ("StopTransaction", 9),
    ]
    assert store.trim_outbox(keep=0) == 2  # Start and Stop stay whatever the bound
    assert [r.action for r in store.pending()] == ["StartTransaction", "StopTransaction"]
    store.close()
