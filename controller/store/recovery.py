"""Check and recover a damaged state database (``evsectl state check`` / ``state recover``).

The daemon refuses to start on a corrupt, truncated or newer database rather
than lose data (controller.store.sqlite). These are the operator's tools
(docs/recovery.md):

* :func:`check` reads the file without changing it (``PRAGMA integrity_check``,
  the schema version, the rows of every table) and says whether the daemon can
  start on it.
* :func:`recover` moves the file (and its -wal/-shm) aside under a timestamped
  name, never deleting anything, creates a fresh database at the current schema
  and copies into it every row that can still be read from the old one, table
  by table: first a full scan without indexes, then, past a damaged page, row by
  row by key, skipping the unreadable ranges. Rows the fresh schema refuses (a
  queued message whose transaction row was lost, ...) are counted, not copied.

Both run while the daemon is stopped (the CLI refuses ``recover`` while the
control socket answers).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .sqlite import MIGRATIONS, Store, StoreError

__all__ = ["CheckReport", "RecoverReport", "check", "recover"]

#: tables copied, parents before children (outbox rows refer to transactions)
TABLES = (
    "meta", "config_keys", "availability", "transactions", "outbox",
    "auth_cache", "local_list", "reservations", "charging_profiles",
)
#: how many integer keys past a damaged page the salvage probes when the highest
#: key cannot be read either
_MAX_STEPS = 1_000_000
#: keys probed one by one past a damaged page before the probe strides grow
_LINEAR_STEPS = 256


@dataclass
class CheckReport:
    path: Path
    ok: bool
    problems: list[str] = field(default_factory=list)
    schema_version: int | None = None
    rows: dict[str, int | str] = field(default_factory=dict)

    def text(self) -> str:
        lines = [f"state database {self.path}: {'OK' if self.ok else 'DAMAGED'}"]
        if self.schema_version is not None:
            lines.append(f"  schema version {self.schema_version} (this software: {len(MIGRATIONS)})")
        for name, count in self.rows.items():
            lines.append(f"  {name}: {count}")
        for problem in self.problems[:20]:
            lines.append(f"  problem: {problem}")
        if len(self.problems) > 20:
            lines.append(f"  ... and {len(self.problems) - 20} more problems")
        if not self.ok:
            lines.append("  the daemon refuses to start on it: stop the service and run "
                         "`evsectl state recover` (or restore the file from a backup)")
        return "\n".join(lines)


@dataclass
class RecoverReport:
    path: Path
    moved_to: list[Path]
    copied: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, list[str]] = field(default_factory=dict)
    note: str | None = None
    header_repaired: str | None = None

    @property
    def complete(self) -> bool:
        return not self.refused and not self.unreadable and self.note is None

    def text(self) -> str:
        lines = [f"state database {self.path}: recovered into a fresh database"]
        lines += [f"  the damaged file is kept as {p}" for p in self.moved_to]
        if self.header_repaired:
            lines.append(f"  file header repaired on the salvage copy: {self.header_repaired}")
        for name in TABLES:
            if name in self.copied or name in self.unreadable:
                extra = f", {self.refused[name]} refused by the schema" if self.refused.get(name) else ""
                lines.append(f"  {name}: {self.copied.get(name, 0)} rows copied{extra}")
                for why in self.unreadable.get(name, [])[:5]:
                    lines.append(f"    unreadable: {why}")
        if self.note:
            lines.append(f"  {self.note}")
        lines.append("  every readable row was kept" if self.complete else
                     "  some rows could not be read: compare with the CSMS (open transactions, local list "
                     "version) and restore from a backup if they matter")
        return "\n".join(lines)


def _connect_ro(path: Path) -> sqlite3.Connection:
    # read-only, but the WAL is read (its committed transactions are part of the data)
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)


def check(path: Path) -> CheckReport:
    """Read ``path`` without changing it; ``ok`` when the daemon would open it."""
    path = Path(path)
    report = CheckReport(path, ok=False)
    try:
        st = path.stat()
    except FileNotFoundError:
        report.problems.append("no such file (the daemon creates an empty database at its first start)")
        return report
    if st.st_size == 0:
        wal = path.with_name(path.name + "-wal")
        report.ok = not (wal.exists() and wal.stat().st_size > 0)
        if not report.ok:
            report.problems.append("the file is empty but its -wal file is not: truncated")
        return report
    try:
        conn = _connect_ro(path)
    except sqlite3.Error as exc:
        report.problems.append(f"cannot open: {exc}")
        return report
    try:
        try:
            report.schema_version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            report.problems += [str(r[0]) for r in conn.execute("PRAGMA integrity_check(100)")]
            if report.problems == ["ok"]:
                report.problems = []
        except sqlite3.Error as exc:
            report.problems.append(str(exc))
        if report.schema_version is not None and report.schema_version > len(MIGRATIONS):
            report.problems.append(f"schema version {report.schema_version} is newer than this software's "
                                   f"({len(MIGRATIONS)}): install the matching version, do not recover")
        for name in TABLES:
            try:
                report.rows[name] = int(conn.execute(f"SELECT count(*) FROM {name} NOT INDEXED").fetchone()[0])
            except sqlite3.Error as exc:
                report.rows[name] = f"unreadable ({exc})"
    finally:
        conn.close()
    report.ok = not report.problems
    return report


def recover(path: Path, now: datetime | None = None) -> RecoverReport:
    """Move ``path`` aside and salvage every readable row into a fresh database there.

    Raises StoreError when there is nothing to recover from or the database is
    newer than this software (recovering would drop what it does not know).
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"state database {path} does not exist: nothing to recover")
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}.{n}")
    version = _schema_version(path)
    if version is not None and version > len(MIGRATIONS):
        raise StoreError(
            f"state database {path} has schema version {version}, newer than this software "
            f"({len(MIGRATIONS)}): install the matching software version instead of recovering"
        )
    owner = path.stat()
    moved: list[Path] = []
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            dst = aside.with_name(aside.name + suffix)
            os.replace(src, dst)
            moved.append(dst)
    _fsync_dir(path.parent)
    report = RecoverReport(path, moved)
    # salvage from a copy: opening the damaged file may replay its WAL into it
    work = aside.with_name(aside.name + ".salvage")
    try:
        for suffix in ("", "-wal"):
            src = aside.with_name(aside.name + suffix)
            if src.exists():
                shutil.copyfile(src, work.with_name(work.name + suffix))
        fresh = Store.open(path)
        fresh.close()
        report.header_repaired = _repair_header(work, path)
        _salvage(work, path, report)
        _give_back(path, owner)
    finally:
        for suffix in ("", "-wal", "-shm"):
            try:
                work.with_name(work.name + suffix).unlink()
            except FileNotFoundError:
                pass
    return report


_MAGIC = b"SQLite format 3\x00"


def _readable_schema(path: Path) -> bool:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return True
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def _repair_header(work: Path, template_of: Path) -> str | None:
    """Fix the 100-byte header of the salvage copy so SQLite can walk what is left.

    A garbage header is replaced by the header of a fresh database of this
    software (page size probed); a truncated file gets its page count set to the
    pages it still has. Returns what was done, or None.
    """
    data = bytearray(work.read_bytes())
    if len(data) < 512:
        return None
    done = None
    if data[:16] != _MAGIC:
        header = bytearray(template_of.read_bytes()[:100])
        for size in (4096, 1024, 2048, 8192, 16384, 32768, 65536):
            trial = bytearray(data)
            trial[:100] = header
            trial[16:18] = struct.pack(">H", 1 if size == 65536 else size)
            trial[28:32] = struct.pack(">I", len(trial) // size)
            trial[32:40] = bytes(8)  # the freelist is unknown: its pages are left unused
            with tempfile.NamedTemporaryFile(dir=work.parent, prefix=".probe-", delete=False) as f:
                f.write(trial)
            probe = Path(f.name)
            try:
                ok = _readable_schema(probe)
            finally:
                for suffix in ("", "-wal", "-shm"):
                    probe.with_name(probe.name + suffix).unlink(missing_ok=True)
            if ok:
                data = trial
                done = f"garbage header replaced (page size {size})"
                break
        else:
            return None
    size = struct.unpack(">H", data[16:18])[0]
    size = 65536 if size == 1 else size
    pages = len(data) // size
    if struct.unpack(">I", data[28:32])[0] > pages:
        data[28:32] = struct.pack(">I", pages)
        done = (done + "; " if done else "") + f"page count set to the {pages} pages left (truncated file)"
    if done:
        work.write_bytes(bytes(data))
    return done


def _give_back(path: Path, owner: os.stat_result) -> None:
    """The fresh file belongs to whoever owned the damaged one (root runs the command,
    the service user runs the daemon)."""
    for suffix in ("", "-wal", "-shm"):
        target = path.with_name(path.name + suffix)
        try:
            st = target.stat()
        except FileNotFoundError:
            continue
        if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid) and hasattr(os, "chown"):
            os.chown(target, owner.st_uid, owner.st_gid)
        os.chmod(target, 0o600)


def _schema_version(path: Path) -> int | None:
    try:
        conn = _connect_ro(path)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def _salvage(source: Path, target: Path, report: RecoverReport) -> None:
    try:
        old = sqlite3.connect(str(source), isolation_level=None)
        old.execute("PRAGMA user_version").fetchone()
        old_tables = {r[0] for r in old.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        report.note = f"nothing could be read from the damaged file ({exc}); the fresh database is empty"
        return
    new = sqlite3.connect(str(target), isolation_level=None)
    try:
        new.execute("PRAGMA foreign_keys = ON")
        new.execute("PRAGMA synchronous = FULL")
        for name in TABLES:
            if name not in old_tables:
                report.unreadable.setdefault(name, []).append("the table is missing from the damaged file")
                continue
            try:
                old_cols = [r[1] for r in old.execute(f"PRAGMA table_info({name})")]
            except sqlite3.Error as exc:
                report.unreadable.setdefault(name, []).append(str(exc))
                continue
            new_cols = [r[1] for r in new.execute(f"PRAGMA table_info({name})")]
            cols = [c for c in new_cols if c in old_cols]
            key = _key_of(old, name)
            rows = list(_readable_rows(old, name, cols, key, report))
            marks = ", ".join("?" * len(cols))
            new.execute("BEGIN IMMEDIATE")
            copied = refused = 0
            for row in rows:
                try:
                    new.execute(
                        f"INSERT OR REPLACE INTO {name} ({', '.join(cols)}) VALUES ({marks})", row
                    )
                    copied += 1
                except sqlite3.IntegrityError:
                    refused += 1
            new.execute("COMMIT")
            report.copied[name] = copied
            if refused:
                report.refused[name] = refused
        # AUTOINCREMENT counters: never hand out an id the old database used
        if "sqlite_sequence" in old_tables:
            try:
                seqs = old.execute("SELECT name, seq FROM sqlite_sequence").fetchall()
            except sqlite3.Error:
                seqs = []
            new.execute("BEGIN IMMEDIATE")
            for name, seq in seqs:
                if name in TABLES:
                    new.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (seq, name))
                    new.execute("INSERT INTO sqlite_sequence (name, seq) SELECT ?, ? WHERE NOT EXISTS "
                                "(SELECT 1 FROM sqlite_sequence WHERE name = ?)", (name, seq, name))
            new.execute("COMMIT")
        problems = [r[0] for r in new.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:  # pragma: no cover - a fresh file written by SQLite itself
            raise StoreError(f"the recovered database {target} fails its check: {problems[:3]}")
    finally:
        new.close()
        old.close()


def _key_of(conn: sqlite3.Connection, table: str) -> str:
    """The column rows are walked by: the rowid, or the primary key of a WITHOUT ROWID table."""
    try:
        conn.execute(f"SELECT rowid FROM {table} LIMIT 0")
        return "rowid"
    except sqlite3.Error:
        pk = [r[1] for r in conn.execute(f"PRAGMA table_info({table})") if r[5]]
        return pk[0]


def _readable_rows(
    conn: sqlite3.Connection, table: str, cols: list[str], key: str, report: RecoverReport
) -> Iterator[tuple[Any, ...]]:
    """Every row that can be read, in key order; a damaged page costs only its rows."""
    select = f"SELECT {key}, {', '.join(cols)} FROM {table} NOT INDEXED"
    last: Any = None
    try:
        for row in conn.execute(f"{select} ORDER BY {key}"):
            last = row[0]
            yield row[1:]
        return
    except sqlite3.Error as exc:
        report.unreadable.setdefault(table, []).append(f"full scan stopped after key {last!r}: {exc}")
    if _is_text_key(conn, table, key):
        return  # text keys cannot be stepped over: the rest of this table is lost
    # integer keys: seek to the next readable key, one key at a time past the damage
    try:
        top = conn.execute(f"SELECT max({key}) FROM {table}").fetchone()[0]
    except sqlite3.Error:
        top = None
    limit = (int(top) if top is not None else (last or 0) + _MAX_STEPS) + 1
    probe = last if last is not None else -(1 << 62)
    misses = 0
    while probe < limit:
        try:
            row = conn.execute(f"{select} WHERE {key} > ? ORDER BY {key} LIMIT 1", (probe,)).fetchone()
        except sqlite3.Error:
            # one key at a time over a damaged page (a few dozen rows), then faster
            misses += 1
            step = 1 if misses <= _LINEAR_STEPS else 1 << min(misses - _LINEAR_STEPS, 40)
            probe = max(probe, -1) + step
            continue
        if row is None:
            return
        misses = 0
        probe = row[0]
        yield row[1:]
    report.unreadable[table].append(f"rows after key {probe!r} could not be reached")


def _is_text_key(conn: sqlite3.Connection, table: str, key: str) -> bool:
    if key == "rowid":
        return False
    types = {r[1]: str(r[2]).upper() for r in conn.execute(f"PRAGMA table_info({table})")}
    return "INT" not in types.get(key, "INT")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
