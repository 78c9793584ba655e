"""Storage faults of the state store (issue 10 item 4, R-TX 4).

A write the disk refuses (full, read-only, I/O error) does not fail the caller:
the store holds its state in memory from the last committed state on disk,
replays the interrupted block there, and writes everything back once the disk
takes it. Corruption is another matter: refused at open (see test_store.py and
test_store_recovery.py).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from controller.store import Store, StoreError
from controller.store import sqlite as store_mod

BIG = {"blob": "x" * 20000}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "evsectl.db"


class Disk:
    """Drives a store's disk: full (max_page_count on its file connection) or not."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.events: list[str | None] = []
        store.on_storage_fault(self.events.append)
        self.room: str | None = None
        store.disk_probe = lambda _size: self.room

    def fill(self) -> None:
        conn = self.store._disk
        assert conn is not None
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        self.room = "disk full (test)"

    def free(self) -> None:
        self.room = None


@pytest.fixture
def store(db_path: Path):
    s = Store.open(db_path)
    yield s
    s.close()


def on_disk(db_path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(str(db_path), isolation_level=None)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def actions(db_path: Path) -> list[str]:
    return [a for (a,) in on_disk(db_path, "SELECT action FROM outbox ORDER BY seq")]


def test_r_tx_4_full_disk_holds_state_in_memory_then_writes_it_back(store: Store, db_path: Path) -> None:
    disk = Disk(store)
    store.enqueue("StartTransaction", {"connectorId": 1})
    disk.fill()
    store.enqueue("MeterValues", BIG)  # does not raise: held in memory
    assert disk.events == ["disk full"] and store.storage_fault == "disk full"
    with store.atomic():
        store.enqueue("StopTransaction", {"meterStop": 1})
        store.enqueue("MeterValues", BIG)
    assert [r.action for r in store.pending()] == ["StartTransaction", "MeterValues", "StopTransaction", "MeterValues"]
    assert actions(db_path) == ["StartTransaction"]  # the file keeps its last consistent state
    assert not store.try_recover()  # still full
    disk.free()
    store.set_meta("x", "1")  # the next write finds room and writes everything back first
    assert disk.events == ["disk full", None] and store.storage_fault is None
    assert actions(db_path) == ["StartTransaction", "MeterValues", "StopTransaction", "MeterValues"]
    assert on_disk(db_path, "SELECT value FROM meta WHERE name = 'x'") == [("1",)]
    assert store._conn is store._disk  # on disk again
    store.enqueue("Heartbeat", {})
    assert actions(db_path)[-1] == "Heartbeat"


def test_r_tx_4_disk_full_in_the_middle_of_a_block_replays_the_block(store: Store, db_path: Path) -> None:
    disk = Disk(store)
    with store.atomic():
        rec = store.begin_transaction(1, "TAG", 100, "2026-01-01T00:00:00Z")
        disk.fill()
        row = store.enqueue("StartTransaction", {"connectorId": 1, "blob": BIG["blob"]}, rec.local_id)
    assert store.storage_fault == "disk full"
    assert [t.local_id for t in store.open_transactions()] == [rec.local_id]
    assert store.first_pending() == row and row.tx_local_id == rec.local_id
    assert on_disk(db_path, "SELECT count(*) FROM transactions") == [(0,)]
    # a failed block while in memory still leaves nothing of itself
    with pytest.raises(RuntimeError), store.atomic():
        store.end_transaction(rec.local_id, 150, "2026-01-01T00:01:00Z", "Local")
        raise RuntimeError
    assert store.transaction(rec.local_id).stopped_at is None
    disk.free()
    assert store.try_recover()
    assert on_disk(db_path, "SELECT local_id, stopped_at FROM transactions") == [(rec.local_id, None)]
    assert actions(db_path) == ["StartTransaction"]


def test_r_tx_4_inner_savepoint_rolled_back_before_the_fault_stays_rolled_back(store: Store) -> None:
    disk = Disk(store)
    with store.atomic():
        store.enqueue("A", {})
        with pytest.raises(ValueError), store.atomic():
            store.enqueue("B", {})
            raise ValueError
        disk.fill()
        store.enqueue("C", BIG)
    assert [r.action for r in store.pending()] == ["A", "C"]


class _CommitFails:
    """Connection proxy: COMMIT fails as on a full disk (SQLITE_FULL)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def execute(self, sql, params=()):
        if sql == "COMMIT":
            self._conn.execute("ROLLBACK")
            exc = sqlite3.OperationalError("database or disk is full")
            exc.sqlite_errorcode = 13
            raise exc
        return self._conn.execute(sql, params)


def test_r_tx_4_full_disk_at_commit_replays_the_whole_block(store: Store, db_path: Path) -> None:
    disk = Disk(store)
    disk.room = "full"
    real = store._conn
    store._conn = store._disk = _CommitFails(real)
    with store.atomic():
        rec = store.begin_transaction(2, "TAG", 7, "2026-01-01T00:00:00Z")
        store.enqueue("StartTransaction", {"connectorId": 2}, rec.local_id)
    assert disk.events == ["disk full"]
    assert store.first_pending().tx_local_id == rec.local_id
    assert on_disk(db_path, "SELECT count(*) FROM outbox") == [(0,)]
    store._disk = real
    disk.free()
    assert store.try_recover()
    assert actions(db_path) == ["StartTransaction"]


def test_r_tx_4_read_only_file_system_is_reported_as_such(store: Store) -> None:
    exc = sqlite3.OperationalError("attempt to write a readonly database")
    exc.sqlite_errorcode = 8
    assert store_mod._fault_reason(exc) == "read-only file system"
    exc = sqlite3.OperationalError("disk I/O error")
    exc.sqlite_errorcode = 778
    exc.sqlite_errorname = "SQLITE_IOERR_WRITE"
    assert store_mod._fault_reason(exc) == "storage I/O error (SQLITE_IOERR_WRITE)"


def test_r_tx_4_non_storage_errors_still_raise(store: Store) -> None:
    Disk(store)
    store.enqueue("A", {}, None)
    with pytest.raises(StoreError):
        store.enqueue("B", {}, 12345)  # foreign key: no such transaction
    assert store.storage_fault is None


def test_r_tx_4_failed_write_back_is_retried_later_not_on_every_write(
    store: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(store)
    disk.fill()
    store.enqueue("A", BIG)
    disk.free()
    calls = []

    def failing_prepare(path: Path) -> None:
        calls.append(path)
        raise StoreError("cannot create (test)")

    monkeypatch.setattr(store_mod, "_prepare_file", failing_prepare)
    assert not store.try_recover()
    store.enqueue("B", {})
    assert len(calls) == 1  # the next try waits WRITE_BACK_RETRY_S
    monkeypatch.undo()
    store._next_write_back = 0.0
    assert store.try_recover()
    assert actions(db_path) == ["A", "B"]


def test_r_tx_4_close_writes_back_when_the_disk_allows(db_path: Path) -> None:
    s = Store.open(db_path)
    disk = Disk(s)
    disk.fill()
    s.enqueue("A", BIG)
    disk.free()
    s.close()
    assert actions(db_path) == ["A"]


def test_r_tx_4_close_while_still_full_logs_what_is_lost(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = Store.open(db_path)
    disk = Disk(s)
    disk.fill()
    s.enqueue("A", BIG)
    s.close()
    assert actions(db_path) == []
    assert "could not be written back" in caplog.text and str(db_path) in caplog.text


def test_r_tx_4_empty_file_beside_a_wal_is_refused_as_truncated(db_path: Path) -> None:
    s = Store.open(db_path)
    s.enqueue("A", {})
    wal = db_path.with_name(db_path.name + "-wal")
    assert wal.stat().st_size > 0
    db_path.write_bytes(b"")  # truncated while the WAL still holds commits
    with pytest.raises(StoreError) as err:
        Store.open(db_path)
    s.close()
    assert "truncated" in str(err.value) and "evsectl state recover" in str(err.value)
    assert not err.value.transient


def test_r_tx_4_store_errors_say_whether_they_may_pass(db_path: Path) -> None:
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorcode = 13
    assert store_mod._error(db_path, exc, "x").transient
    exc = sqlite3.DatabaseError("file is not a database")
    exc.sqlite_errorcode = 26
    err = store_mod._error(db_path, exc, "x")
    assert not err.transient and "evsectl state recover" in str(err)


def test_r_tx_4_disk_never_back_state_saved_to_the_spill_and_taken_back_at_next_open(tmp_path: Path) -> None:
    db_path, spill = tmp_path / "state" / "evsectl.db", tmp_path / "run" / "evsectl.sqlite.held"
    s = Store.open(db_path, spill=spill)
    rec = s.begin_transaction(1, "TAG", 100, "2026-01-01T00:00:00Z")
    s.set_transaction_id(rec.local_id, 9)
    s.mark_running()
    disk = Disk(s)
    disk.fill()
    s.enqueue("MeterValues", BIG, rec.local_id)
    assert s.storage_fault == "disk full"
    s.end_transaction(rec.local_id, 150, "2026-01-01T00:01:00Z", "Local")
    s.mark_stopped()
    s.close()  # the disk is still full: the state goes to the spill
    assert spill.exists()
    assert on_disk(db_path, "SELECT stopped_at FROM transactions") == [(None,)]  # the stale file
    s = Store.open(db_path, spill=spill)
    try:
        assert not spill.exists()
        assert s.open_transactions() == [] and s.transaction(rec.local_id).meter_stop_wh == 150
        assert s.last_run_was_clean()  # no PowerLoss stop for a transaction already stopped
    finally:
        s.close()


def test_r_tx_4_spill_of_another_history_is_kept_aside_not_used(tmp_path: Path) -> None:
    db_path, spill = tmp_path / "state" / "evsectl.db", tmp_path / "run" / "evsectl.sqlite.held"
    s = Store.open(db_path, spill=spill)
    disk = Disk(s)
    disk.fill()
    s.enqueue("A", BIG)
    s.close()
    assert spill.exists()
    s = Store.open(db_path)  # opened without the spill: the file moves on (new opened_at)
    s.close()
    s = Store.open(db_path, spill=spill)
    try:
        assert s.count() == 0
        assert not spill.exists() and list(spill.parent.glob("evsectl.sqlite.held.ignored-*"))
    finally:
        s.close()


class _BeginFails(_CommitFails):
    """Connection proxy: taking the write lock fails as on a read-only medium (SQLITE_READONLY)."""

    def execute(self, sql, params=()):
        if sql == "BEGIN IMMEDIATE":
            exc = sqlite3.OperationalError("attempt to write a readonly database")
            exc.sqlite_errorcode = 8
            raise exc
        return self._conn.execute(sql, params)


def test_regression_disk_refusing_the_write_lock_does_not_begin_twice_in_memory(store: Store) -> None:
    """Found in review: after a failed BEGIN the memory database was begun twice
    ("cannot start a transaction within a transaction")."""
    disk = Disk(store)
    disk.room = "read-only"
    real = store._conn
    store._conn = store._disk = _BeginFails(real)
    store.enqueue("StartTransaction", {"connectorId": 1})
    assert disk.events == ["read-only file system"]
    assert [r.action for r in store.pending()] == ["StartTransaction"]
    store._disk = real
