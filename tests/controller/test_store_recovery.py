"""``evsectl state check`` / ``evsectl state recover`` on truly damaged files (R-TX 4:
the daemon refuses a corrupt database rather than lose data; the operator's
command moves it aside and salvages every readable row)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller import cli
from controller.store import Store, StoreError, recovery

NOW = datetime(2026, 11, 26, 3, 0, 0, tzinfo=UTC)


def build(path: Path, outbox: int = 3000) -> dict[int, dict]:
    """A database with rows in every table; returns the outbox payloads by seq."""
    s = Store.open(path)
    s.set_keys({"HeartbeatInterval": "300", "AuthorizationKey": "00112233"})
    s.set_availability(2, "Inoperative")
    s.local_list_apply(7, True, {f"TAG{i:05d}": {"status": "Accepted"} for i in range(500)})
    rec = s.begin_transaction(1, "TAG00001", 1000, "2026-11-26T02:00:00Z")
    s.set_transaction_id(rec.local_id, 42)
    payloads = {}
    with s.atomic():
        for i in range(outbox):
            p = {"connectorId": 1, "i": i, "pad": "m" * 150}
            payloads[s.enqueue("MeterValues", p, rec.local_id).seq] = p
    s.mark_running()
    s.close()  # checkpointed: everything is in the main file
    assert not path.with_name(path.name + "-wal").exists()
    return payloads


def smash(path: Path, where: float, pages: int = 3) -> None:
    """Overwrite ``pages`` pages at a fraction of the file with garbage."""
    data = bytearray(path.read_bytes())
    page = 4096
    first = max(1, int(len(data) / page * where))
    for n in range(first, first + pages):
        data[n * page:(n + 1) * page] = (b"\xde\xad\xbe\xef" * 1024)
    path.write_bytes(bytes(data))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "evsectl.sqlite"


def test_r_tx_4_damaged_middle_pages_refused_then_recovered_row_by_row(db: Path) -> None:
    payloads = build(db)
    smash(db, 0.5)
    before = digest(db)
    with pytest.raises(StoreError) as err:
        Store.open(db)
    assert str(db) in str(err.value) and "evsectl state recover" in str(err.value)
    assert digest(db) == before  # refused, untouched

    report = recovery.check(db)
    assert not report.ok and report.problems
    assert "evsectl state recover" in report.text()

    result = recovery.recover(db, now=NOW)
    aside = db.with_name("evsectl.sqlite.corrupt-20261126T030000Z")
    assert result.moved_to[0] == aside and digest(aside) == before  # kept, byte for byte
    assert "outbox" in result.unreadable and not result.complete
    s = Store.open(db)  # the daemon starts on the recovered file
    try:
        rows = s.pending()
        assert 0.9 * len(payloads) < len(rows) < len(payloads)  # only the smashed pages' rows are gone
        assert all(r.payload == payloads[r.seq] for r in rows)  # what is kept is exact
        assert max(r.seq for r in rows) == max(payloads)  # the rows after the damage too
        assert s.keys() == {"HeartbeatInterval": "300", "AuthorizationKey": "00112233"}
        assert s.availability() == {2: "Inoperative"}
        assert s.local_list_version() == 7 and s.local_list_size() == 500
        assert [t.transaction_id for t in s.open_transactions()] == [42]
        assert not s.last_run_was_clean()  # the next start treats it as a power loss
        s.enqueue("StopTransaction", {"meterStop": 1}, s.open_transactions()[0].local_id)
        assert s.pending()[-1].seq > max(payloads)  # seq never reused
    finally:
        s.close()
    assert recovery.check(db).ok


def test_r_tx_4_garbage_header_is_rebuilt_and_every_row_salvaged(db: Path) -> None:
    payloads = build(db, outbox=10)
    data = bytearray(db.read_bytes())
    data[0:100] = b"G" * 100
    db.write_bytes(bytes(data))
    with pytest.raises(StoreError) as err:
        Store.open(db)
    assert "corrupt" in str(err.value)
    assert not recovery.check(db).ok
    result = recovery.recover(db, now=NOW)
    assert result.header_repaired and "garbage header replaced" in result.header_repaired
    assert result.moved_to[0].read_bytes()[:100] == b"G" * 100  # the kept file is as it was
    s = Store.open(db)
    try:
        assert {r.seq: r.payload for r in s.pending()} == payloads
        assert s.local_list_size() == 500 and s.keys()["HeartbeatInterval"] == "300"
    finally:
        s.close()


def test_r_tx_4_file_of_garbage_recovers_to_an_empty_database_and_keeps_the_file(db: Path) -> None:
    db.parent.mkdir()
    garbage = b"not a database " * 1000
    db.write_bytes(garbage)
    with pytest.raises(StoreError):
        Store.open(db)
    result = recovery.recover(db, now=NOW)
    assert result.note and "nothing could be read" in result.note
    assert result.moved_to[0].read_bytes() == garbage
    s = Store.open(db)
    assert s.count() == 0
    s.close()


def test_r_tx_4_truncated_file_refused_and_partly_recovered(db: Path) -> None:
    payloads = build(db)
    with db.open("r+b") as f:
        f.truncate(db.stat().st_size // 2)
    with pytest.raises(StoreError):
        Store.open(db)
    assert not recovery.check(db).ok
    recovery.recover(db, now=NOW)
    s = Store.open(db)
    try:
        rows = s.pending()
        assert rows and all(r.payload == payloads[r.seq] for r in rows)
    finally:
        s.close()


def test_r_tx_4_newer_schema_is_not_recovered(db: Path) -> None:
    build(db, outbox=1)
    conn = sqlite3.connect(str(db))
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError) as err:
        recovery.recover(db, now=NOW)
    assert "newer" in str(err.value)
    assert db.exists()


def test_r_tx_4_recover_twice_in_one_second_keeps_both_files(db: Path) -> None:
    build(db, outbox=1)
    first = recovery.recover(db, now=NOW).moved_to[0]
    second = recovery.recover(db, now=NOW).moved_to[0]
    assert first != second and first.exists() and second.exists()


def test_cli_state_check_and_recover(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build(db, outbox=2000)
    assert cli.main(["state", "check", "--db", str(db)]) == 0
    assert "OK" in capsys.readouterr().out
    smash(db, 0.6)
    assert cli.main(["state", "check", "--db", str(db)]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED" in out and "evsectl state recover" in out
    assert cli.main(["state", "recover", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "kept as" in out and "rows copied" in out
    assert cli.main(["state", "check", "--db", str(db)]) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_r_tx_4_recovered_file_belongs_to_the_owner_of_the_damaged_one(db: Path) -> None:
    build(db, outbox=5)
    os.chown(db, 65534, 65534)  # the service user owns it; root runs the command
    recovery.recover(db, now=NOW)
    st = db.stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534) and st.st_mode & 0o777 == 0o600
