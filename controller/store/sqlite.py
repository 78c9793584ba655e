"""The durable state of the charger: one SQLite database (stdlib ``sqlite3``).

This module owns everything the controller must not lose across a process kill,
a restart or a power cut:

* ``config_keys`` -- OCPP configuration keys changed over OCPP (ChangeConfiguration).
  They win over the defaults of the installer's TOML file (R-CONF 3, R-CONF 5).
  The key column is case-insensitive (R-CONF 1): writing ``heartbeatinterval``
  replaces ``HeartbeatInterval``. Alias spellings (AppEnabled/APPEEnabled, ...)
  are the configuration layer's business, not this one's.
* ``availability`` -- Operative/Inoperative per connector, connector 0 being the
  whole charger (R-OPS 5).
* ``meta`` -- small named values: store bookkeeping and the "running" flag used
  to detect that the previous run ended by a power loss or a kill (R-MODEL 3).
* ``transactions`` -- one row per local transaction, from the start (before the
  CSMS knows of it) to the moment it is fully delivered and forgotten (R-TX 1).
* ``outbox`` -- the queue of outgoing transaction-related messages
  (StartTransaction, MeterValues, StopTransaction, ...), in insertion order,
  delivered after reconnect and removed only once answered (R-TX 4).
* ``auth_cache`` -- the authorization cache: the last IdTagInfo received per
  idTag, with a use order for least-recently-used eviction (R-AUTH 7).
* ``local_list`` -- the local authorization list sent by SendLocalList; its
  version is the ``meta`` value ``local_list_version`` (R-AUTH 7).
* ``reservations`` -- reservations made by ReserveNow, until used, cancelled or
  expired (R-RES).

IdTags in ``auth_cache`` and ``local_list`` are stored as given and compared
case-insensitively (OCPP 1.6: IdToken is case-insensitive) through
``COLLATE NOCASE`` on the primary key, which folds ASCII letters only; lookups
use that index. Reservations keep their idTag as given: comparing it with a
presented badge is the core's business.

Durability rules (R-TX 4):

* WAL journal, ``synchronous=FULL``: every commit is on stable storage when the
  method that made it returns.
* Every write method commits before it returns, unless it runs inside
  ``with store.atomic():``, in which case the whole block commits at its end or
  not at all (e.g. ``end_transaction`` + ``enqueue(StopTransaction)``).
  Do not ``await`` inside an atomic block.
* A write that fails because of the storage (disk full, read-only file system,
  I/O error: SQLITE_FULL/READONLY/IOERR/CANTOPEN) does not fail the caller: the
  store switches to *held in memory*. The database as last committed on disk is
  copied into an in-memory database, the statements of the interrupted block are
  replayed there, and every later read and write uses it. The disk keeps its last
  consistent state. Before each later write (and from :meth:`Store.try_recover`,
  which the daemon calls periodically) the store checks the file system; once it
  is writable with room, the in-memory database is written back to the file in
  one step (SQLite's backup API) and the store works on disk again. Listeners
  registered with :meth:`Store.on_storage_fault` hear both transitions (the daemon
  reports MemoryExhaustion and the vendor DTC 0x100009 to the CSMS). What is held
  in memory is lost if the process ends before the disk comes back: see
  docs/recovery.md.
* Any other failed write raises :class:`StoreError` and leaves nothing of itself
  (or of its atomic block) in the database.
* Opening never recreates, truncates or "repairs" a database: a corrupt, newer,
  empty (truncated) or unwritable database raises :class:`StoreError` naming the
  path and what to do, and the daemon refuses to start rather than lose data.
  ``evsectl state check`` / ``evsectl state recover`` (controller.store.recovery)
  are the operator's tools.

Schema changes are appended to :data:`MIGRATIONS` (never edited once released);
``PRAGMA user_version`` holds the number of migrations applied, each applied in
its own transaction together with the version bump.

One connection, used from one thread at a time (an internal lock serialises
accidental use from an executor thread).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

__all__ = [
    "AVAILABILITY_VALUES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "OutboxRow",
    "ReservationRow",
    "Store",
    "StoreError",
    "TxRecord",
]


log = logging.getLogger(__name__)

#: the operator's commands named in every corruption message (docs/recovery.md)
RECOVERY_HINT = (
    "Stop the service, then run `evsectl state check` to see what is damaged and "
    "`evsectl state recover` to move the file aside (kept, with a timestamp) and "
    "salvage every readable row into a fresh database, or restore the file from a "
    "backup (docs/recovery.md)."
)
#: how long after a failed write-back the next one is tried (real seconds)
WRITE_BACK_RETRY_S = 30.0


class StoreError(Exception):
    """The state store cannot be opened or written; the message says what to do.

    ``transient`` is True when the cause may go away by itself (disk full,
    read-only or failing file system) and False when an operator must act
    (corrupt, truncated or newer database).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


AVAILABILITY_VALUES = frozenset({"Operative", "Inoperative"})

# --------------------------------------------------------------------------
# Schema migrations. Append only; the index + 1 is the schema version.
# Each entry is a list of SQL statements or a callable taking the connection.
# They run inside a transaction opened by the runner: no COMMIT, no
# executescript(), no PRAGMAs that cannot run inside a transaction.
# --------------------------------------------------------------------------

Migration = Sequence[str] | Callable[[sqlite3.Connection], None]

_MIGRATION_1: list[str] = [
    """
    CREATE TABLE meta (
        name  TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL CHECK (typeof(value) = 'text')
    )
    """,
    """
    CREATE TABLE config_keys (
        key   TEXT PRIMARY KEY NOT NULL COLLATE NOCASE,
        value TEXT NOT NULL CHECK (typeof(value) = 'text')
    )
    """,
    """
    CREATE TABLE availability (
        connector_id INTEGER PRIMARY KEY NOT NULL CHECK (connector_id >= 0),
        value        TEXT NOT NULL CHECK (value IN ('Operative', 'Inoperative'))
    )
    """,
    """
    CREATE TABLE transactions (
        local_id       INTEGER PRIMARY KEY AUTOINCREMENT,
        connector_id   INTEGER NOT NULL,
        id_tag         TEXT NOT NULL,
        meter_start_wh INTEGER NOT NULL,
        started_at     TEXT NOT NULL,
        transaction_id INTEGER,
        reservation_id INTEGER,
        last_meter_wh  INTEGER NOT NULL,
        last_meter_at  TEXT,
        stopped_at     TEXT,
        meter_stop_wh  INTEGER,
        stop_reason    TEXT,
        stop_id_tag    TEXT
    )
    """,
    "CREATE INDEX transactions_open ON transactions (stopped_at)",
    """
    CREATE TABLE outbox (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        action      TEXT NOT NULL,
        payload     TEXT NOT NULL,
        tx_local_id INTEGER REFERENCES transactions (local_id),
        attempts    INTEGER NOT NULL DEFAULT 0,
        created_at  TEXT NOT NULL
    )
    """,
    "CREATE INDEX outbox_tx ON outbox (tx_local_id)",
]

# Authorization cache, local authorization list, reservations (R-AUTH 7, R-RES).
# WITHOUT ROWID: the tables are looked up by idTag only, so the primary-key
# b-tree is the table (one b-tree search per lookup, no rowid indirection).
_AUTH_STATUS_CHECK = "status IN ('Accepted', 'Blocked', 'Expired', 'Invalid', 'ConcurrentTx')"

_MIGRATION_2: list[str] = [
    f"""
    CREATE TABLE auth_cache (
        id_tag        TEXT PRIMARY KEY NOT NULL COLLATE NOCASE
                      CHECK (typeof(id_tag) = 'text' AND length(id_tag) > 0),
        status        TEXT NOT NULL CHECK ({_AUTH_STATUS_CHECK}),
        expiry        TEXT CHECK (expiry IS NULL OR typeof(expiry) = 'text'),
        parent_id_tag TEXT CHECK (parent_id_tag IS NULL OR typeof(parent_id_tag) = 'text'),
        used_at       TEXT NOT NULL,
        use_seq       INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    "CREATE INDEX auth_cache_lru ON auth_cache (use_seq)",
    f"""
    CREATE TABLE local_list (
        id_tag        TEXT PRIMARY KEY NOT NULL COLLATE NOCASE
                      CHECK (typeof(id_tag) = 'text' AND length(id_tag) > 0),
        status        TEXT NOT NULL CHECK ({_AUTH_STATUS_CHECK}),
        expiry        TEXT CHECK (expiry IS NULL OR typeof(expiry) = 'text'),
        parent_id_tag TEXT CHECK (parent_id_tag IS NULL OR typeof(parent_id_tag) = 'text')
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE reservations (
        reservation_id INTEGER PRIMARY KEY NOT NULL,
        connector_id   INTEGER NOT NULL CHECK (connector_id >= 0),
        id_tag         TEXT NOT NULL,
        parent_id_tag  TEXT,
        expiry         TEXT NOT NULL
    )
    """,
]

# Installed charging profiles (R-SC 2): the SetChargingProfile.req profile as
# received (camelCase JSON), with the columns ClearChargingProfile filters on.
_MIGRATION_3: list[str] = [
    """
    CREATE TABLE charging_profiles (
        profile_id    INTEGER PRIMARY KEY NOT NULL,
        connector_id  INTEGER NOT NULL CHECK (connector_id >= 0),
        purpose       TEXT NOT NULL,
        stack_level   INTEGER NOT NULL CHECK (stack_level >= 0),
        profile       TEXT NOT NULL
    )
    """,
]

MIGRATIONS: list[Migration] = [
    _MIGRATION_1,
    _MIGRATION_2,
    _MIGRATION_3,
]

SCHEMA_VERSION = len(MIGRATIONS)

# meta names used by the store itself
_META_RUNNING = "running"
_META_OPENED_AT = "store_opened_at"
_META_STARTED_AT = "run_started_at"
_META_STOPPED_AT = "run_stopped_at"
_META_LOCAL_LIST_VERSION = "local_list_version"

_AUTH_STATUSES = frozenset({"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"})

# primary SQLite result codes (sqlite3 exceptions carry sqlite_errorcode)
_SQLITE_PERM = 3
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26
#: failures of the medium, not of the data: the store holds its state in memory
_STORAGE_FAULTS = frozenset({_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN})


@dataclass(frozen=True, slots=True)
class TxRecord:
    """One local transaction. Times are RFC 3339 strings as given by the caller."""

    local_id: int
    connector_id: int
    id_tag: str
    meter_start_wh: int
    started_at: str
    transaction_id: int | None
    reservation_id: int | None
    last_meter_wh: int
    last_meter_at: str | None
    stopped_at: str | None
    meter_stop_wh: int | None
    stop_reason: str | None
    stop_id_tag: str | None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One queued outgoing message; ``seq`` grows strictly and is never reused."""

    seq: int
    action: str
    payload: dict[str, Any]
    tx_local_id: int | None
    attempts: int
    created_at: str


_TX_COLUMNS = (
    "local_id, connector_id, id_tag, meter_start_wh, started_at, transaction_id, "
    "reservation_id, last_meter_wh, last_meter_at, stopped_at, meter_stop_wh, "
    "stop_reason, stop_id_tag"
)
_OUTBOX_COLUMNS = "seq, action, payload, tx_local_id, attempts, created_at"


@dataclass(frozen=True, slots=True)
class ReservationRow:
    """One reservation (ReserveNow). ``expiry`` is the RFC 3339 string as received."""

    reservation_id: int
    connector_id: int
    id_tag: str
    parent_id_tag: str | None
    expiry: str


_RESERVATION_COLUMNS = "reservation_id, connector_id, id_tag, parent_id_tag, expiry"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _primary_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _explain(path: Path, exc: BaseException, doing: str) -> str:
    """A message for the operator: what failed, on which file, what to do."""
    code = _primary_code(exc)
    if code in (_SQLITE_NOTADB, _SQLITE_CORRUPT):
        return (
            f"state database {path} is corrupt ({exc}) while {doing}. "
            f"evsectl refuses to start rather than lose data. {RECOVERY_HINT}"
        )
    if code == _SQLITE_FULL:
        return (
            f"state database {path}: disk full while {doing} ({exc}). "
            "Free space on the state file system."
        )
    if code in (_SQLITE_READONLY, _SQLITE_PERM, _SQLITE_CANTOPEN):
        return (
            f"state database {path} is not writable ({exc}) while {doing}. "
            "The service user must be able to read and write the file, its -wal/-shm "
            "files and its directory, on a file system mounted read-write."
        )
    if code == _SQLITE_IOERR:
        return (
            f"state database {path}: I/O error ({exc}) while {doing}. "
            "Check the storage medium (SD card) and the kernel log."
        )
    return f"state database {path}: {exc} while {doing}."


class Store:
    """The charger's durable state. Create with :meth:`Store.open`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        # Use Store.open(); this only wires an already prepared connection.
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._lock = threading.RLock()
        self._depth = 0
        self._previous_run_clean = True
        # storage faults (see the module docstring): the file's connection, the
        # in-memory database while the disk cannot be written, the statements of
        # the open outermost block (replayed into memory if the disk fails mid-block)
        self._disk: sqlite3.Connection | None = conn
        self._memory: sqlite3.Connection | None = None
        self._fault: str | None = None
        self._fault_since: str | None = None
        self._block: list[tuple[bool, str, Any]] = []
        self._next_write_back = 0.0
        self._listeners: list[Callable[[str | None], None]] = []
        self._spill: Path | None = None
        #: (room needed in bytes) -> why the disk cannot take the write-back, or None
        self.disk_probe: Callable[[int], str | None] = self._probe_disk

    # ------------------------------------------------------------------ open

    @classmethod
    def open(cls, path: Path, spill: Path | None = None) -> Store:
        """Open (creating if missing) the state database at ``path``.

        ``spill``: where :meth:`close` saves the state held in memory when the
        disk never came back (a file on another file system, e.g. the runtime
        directory); a spill left there by the previous run of this same database
        is adopted here, before anything else reads the state.

        Raises :class:`StoreError` if the database is corrupt, newer than this
        code, or cannot be written; never recreates or repairs an existing file.
        """
        path = Path(path)
        _prepare_file(path)
        try:
            if path.stat().st_size == 0 and _has_data_beside(path):
                raise StoreError(
                    f"state database {path} is empty but its -wal file is not: the file was "
                    f"truncated. evsectl refuses to start rather than lose data. {RECOVERY_HINT}"
                )
        except OSError:
            pass
        try:
            conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except sqlite3.Error as exc:
            raise _error(path, exc, "opening") from exc
        store = cls(conn, path)
        store._spill = None if spill is None else Path(spill)
        try:
            store._setup()
        except BaseException:
            conn.close()
            store._conn = None
            raise
        return store

    def _setup(self) -> None:
        conn = self._connection()
        path = self._path
        doing = "checking the database"
        try:
            # The first statement that reads the file: "file is not a database" here.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                shown = "; ".join(str(p) for p in problems[:5])
                raise StoreError(
                    f"state database {path} is corrupt (quick_check: {shown}). "
                    f"evsectl refuses to start rather than lose data. {RECOVERY_HINT}"
                )
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"state database {path} has schema version {version}, newer than "
                    f"this software supports ({len(MIGRATIONS)}); was the software "
                    "downgraded? Install the matching software version or restore a "
                    "backup made by this version."
                )
            if version < 0:
                raise StoreError(
                    f"state database {path} has an invalid schema version {version}; "
                    "restore it from a backup or move it aside."
                )
            doing = "configuring the connection"
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"state database {path}: cannot switch to WAL journal (got {mode!r}); "
                    "the file and its directory must be writable on a local file system."
                )
            conn.execute("PRAGMA synchronous = FULL")
            if conn.execute("PRAGMA synchronous").fetchone()[0] != 2:
                raise StoreError(f"state database {path}: synchronous=FULL was not accepted")
            if conn.execute("PRAGMA foreign_keys").fetchone()[0] != 1:
                raise StoreError(f"state database {path}: foreign keys cannot be enabled")

            for number in range(version + 1, len(MIGRATIONS) + 1):
                doing = f"migrating the schema to version {number}"
                try:
                    self._apply_migration(number, MIGRATIONS[number - 1])
                except (sqlite3.Error, StoreError):
                    raise
                except Exception as exc:
                    raise StoreError(
                        f"state database {path}: migration to schema version {number} "
                        f"failed ({exc!r}); the database was left at version {number - 1}."
                    ) from exc

            doing = "adopting the state the previous run held in memory"
            self._adopt_spill()

            # Prove the database is writable now rather than at the first
            # StartTransaction; read the previous run's flag in the same step.
            doing = "writing a test row"
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT value FROM meta WHERE name = ?", (_META_RUNNING,)
                ).fetchone()
                self._previous_run_clean = row is None or row[0] != "1"
                conn.execute(
                    "INSERT INTO meta (name, value) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (_META_OPENED_AT, _utc_now()),
                )
                conn.execute("COMMIT")
            except BaseException:
                _rollback_quietly(conn)
                raise
        except sqlite3.Error as exc:
            raise _error(path, exc, doing) from exc

    def _apply_migration(self, number: int, migration: Migration) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if callable(migration):
                migration(conn)
            else:
                for statement in migration:
                    conn.execute(statement)
            # user_version lives in the database header: it commits with the rest.
            conn.execute(f"PRAGMA user_version = {int(number)}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback_quietly(conn)
            raise

    def close(self) -> None:
        """Close the connection (idempotent). Later calls raise StoreError.

        State held in memory after a storage fault is written back first if the
        disk allows it now; otherwise it is lost, and the log says so.
        """
        with self._lock:
            if self._conn is not None and self._depth:
                _rollback_quietly(self._conn)
                self._depth = 0
            if self._memory is not None:
                self._next_write_back = 0.0
                if not self.try_recover() and not self._save_spill():
                    log.error(
                        "state database %s: the state held in memory since %s (%s) could not be "
                        "written back and is lost from disk; the file keeps the state of that "
                        "moment. See docs/recovery.md.", self._path, self._fault_since, self._fault,
                    )
            conns = {id(c): c for c in (self._conn, self._disk, self._memory) if c is not None}
            self._conn = self._disk = self._memory = None
            for conn in conns.values():
                try:
                    conn.close()
                except sqlite3.Error:
                    pass

    # ------------------------------------------------------- storage faults

    def on_storage_fault(self, listener: Callable[[str | None], None]) -> None:
        """Call ``listener(reason)`` when writes go to memory, ``listener(None)`` when
        they reach the disk again. It runs inside the write that caused it: it must
        only schedule work, never use the store."""
        self._listeners.append(listener)

    @property
    def storage_fault(self) -> str | None:
        """Why the state is held in memory ("disk full", ...), or None when on disk."""
        return self._fault

    def try_recover(self) -> bool:
        """Write the state held in memory back to the file if the disk allows it now.

        True when the store is on disk (again). Cheap while the disk is still full
        or read-only (one statvfs); a failed write-back is retried after
        :data:`WRITE_BACK_RETRY_S`. Never inside an atomic block.
        """
        with self._lock:
            memory = self._memory
            if memory is None:
                return True
            if self._depth or time.monotonic() < self._next_write_back:
                return False
            try:
                size = memory.execute("PRAGMA page_count").fetchone()[0] * memory.execute(
                    "PRAGMA page_size").fetchone()[0]
            except sqlite3.Error:  # pragma: no cover - memory cannot fail this way
                return False
            why = self.disk_probe(size)
            if why is not None:
                return False
            disk = None
            try:
                old, self._disk = self._disk, None
                if old is not None:
                    try:
                        old.close()
                    except sqlite3.Error:
                        pass
                _prepare_file(self._path)
                disk = sqlite3.connect(
                    str(self._path), isolation_level=None, check_same_thread=False, timeout=5.0
                )
                disk.execute("PRAGMA busy_timeout = 5000")
                disk.execute("PRAGMA journal_mode = WAL")
                disk.execute("PRAGMA synchronous = FULL")
                disk.execute("PRAGMA foreign_keys = ON")
                memory.backup(disk)  # one transaction on the file: all of it or nothing
                if disk.execute("PRAGMA user_version").fetchone()[0] != len(MIGRATIONS):
                    raise sqlite3.DatabaseError("the written-back copy has the wrong schema version")
            except (sqlite3.Error, StoreError, OSError) as exc:
                self._disk = disk
                self._next_write_back = time.monotonic() + WRITE_BACK_RETRY_S
                log.warning("state database %s: writing the state held in memory back failed (%s); "
                            "retrying in %.0f s", self._path, exc, WRITE_BACK_RETRY_S)
                return False
            was = self._fault
            self._disk = self._conn = disk
            self._memory = None
            self._fault = self._fault_since = None
            memory.close()
            log.warning("state database %s: written back to disk (held in memory after: %s); "
                        "storage fault over", self._path, was)
            self._tell(None)
            return True

    def _save_spill(self) -> bool:
        """Save the state held in memory to the spill file (at close, the disk still failing)."""
        memory, spill = self._memory, self._spill
        if memory is None or spill is None:
            return False
        tmp = spill.with_name(spill.name + ".tmp")
        try:
            spill.parent.mkdir(parents=True, exist_ok=True)
            tmp.unlink(missing_ok=True)
            out = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                memory.backup(out)
            finally:
                out.close()
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, 0o600)
            os.replace(tmp, spill)
        except (OSError, sqlite3.Error) as exc:
            log.error("state database %s: cannot save the state held in memory to %s either (%s)",
                      self._path, spill, exc)
            return False
        log.error(
            "state database %s: the disk still refuses writes (%s); the state held in memory since %s "
            "is saved to %s and taken back at the next start, if that file is still there "
            "(it is lost at a reboot when it lives in /run). See docs/recovery.md.",
            self._path, self._fault, self._fault_since, spill,
        )
        return True

    def _adopt_spill(self) -> None:
        """Take back a spill of this database's previous run (see :meth:`open`)."""
        spill = self._spill
        if spill is None or not spill.exists():
            return
        conn = self._connection()
        try:
            held = sqlite3.connect(f"file:{spill}?mode=ro", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            log.error("state database %s: spill %s cannot be opened (%s); ignored", self._path, spill, exc)
            return
        try:
            query = "SELECT value FROM meta WHERE name = ?"
            try:
                ok = [r[0] for r in held.execute("PRAGMA quick_check")] == ["ok"] and held.execute(
                    "PRAGMA user_version").fetchone()[0] == conn.execute("PRAGMA user_version").fetchone()[0]
                theirs = held.execute(query, (_META_OPENED_AT,)).fetchone()
            except sqlite3.Error:
                ok, theirs = False, None
            ours = conn.execute(query, (_META_OPENED_AT,)).fetchone()
            if not (ok and theirs is not None and theirs == ours):
                # not a descendant of this file (restored from a backup since?): keep both, use the file
                aside = spill.with_name(f"{spill.name}.ignored-{_utc_now().replace(':', '')}")
                os.replace(spill, aside)
                log.error("state database %s: the spill %s does not continue this file; kept as %s, "
                          "not used", self._path, spill, aside)
                return
            held.backup(conn)
        finally:
            held.close()
        spill.unlink()
        log.warning("state database %s: took back the state the previous run held in memory (%s)",
                    self._path, spill)

    def _probe_disk(self, size: int) -> str | None:
        """Why the state directory cannot take ``size`` bytes now, or None."""
        try:
            st = os.statvfs(self._path.parent)
        except OSError as exc:
            return f"cannot examine {self._path.parent}: {exc}"
        if st.f_flag & os.ST_RDONLY:
            return "read-only file system"
        try:
            current = self._path.stat().st_size
        except OSError:
            current = 0
        # the backup goes through the WAL, then the checkpoint may grow the file
        need = size + max(0, size - current) + 256 * 1024
        if st.f_bavail * st.f_frsize < need:
            return f"{st.f_bavail * st.f_frsize} bytes free, {need} needed"
        return None

    def _degrade(self, exc: sqlite3.Error, *, in_block: bool) -> bool:
        """The disk failed a write: continue in memory from its last committed state.

        Replays the statements of the open block (``in_block``) so the caller's
        block goes on as if nothing happened. False if the disk cannot even be read.
        """
        disk = self._disk
        if disk is None or self._memory is not None or _primary_code(exc) not in _STORAGE_FAULTS:
            return False
        _rollback_quietly(disk)
        memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        try:
            disk.backup(memory)
            memory.execute("PRAGMA foreign_keys = ON")
            if in_block:
                memory.execute("BEGIN IMMEDIATE")
                for many, sql, params in self._block:
                    (memory.executemany if many else memory.execute)(sql, params)
        except sqlite3.Error as copy_exc:
            memory.close()
            log.error("state database %s: %s, and the last committed state cannot be read "
                      "into memory either (%s)", self._path, exc, copy_exc)
            return False
        self._memory = self._conn = memory
        self._fault = _fault_reason(exc, self._path.parent)
        self._fault_since = _utc_now()
        self._next_write_back = 0.0
        log.error(
            "state database %s: %s (%s): the charger keeps running and holds its state in "
            "memory (the file keeps the state of this moment); it is written back as soon as "
            "the file system takes it. Free space / fix the storage.", self._path, self._fault, exc,
        )
        self._tell(self._fault)
        return True

    def _tell(self, reason: str | None) -> None:
        for listener in self._listeners:
            try:
                listener(reason)
            except Exception:  # a listener must not break a write
                log.exception("storage fault listener failed")

    def _exec(self, many: bool, sql: str, params: Any) -> sqlite3.Cursor:
        """One statement of a write block, recorded for a replay into memory."""
        conn = self._connection()
        if many:
            params = list(params)
        if self._memory is None:
            self._block.append((many, sql, params))
        try:
            return conn.executemany(sql, params) if many else conn.execute(sql, params)
        except sqlite3.Error as exc:
            if self._memory is not None:
                raise
            self._block.pop()
            if not self._degrade(exc, in_block=True):
                raise
            conn = self._connection()
            return conn.executemany(sql, params) if many else conn.execute(sql, params)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def schema_version(self) -> int:
        with self._read() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    # ---------------------------------------------------------- transactions

    @contextmanager
    def atomic(self) -> Iterator[Store]:
        """Group writes: all of the block commits at its end, or none of it.

        Nested blocks are savepoints: an exception leaving an inner block undoes
        that block only; nothing is committed before the outermost block ends.
        """
        with self._lock:
            depth = self._depth
            savepoint = f"evsectl_sp{depth}"
            if depth == 0:
                if self._memory is not None:
                    self.try_recover()
                self._block = []
                try:
                    try:
                        self._connection().execute("BEGIN IMMEDIATE")
                    except sqlite3.Error as exc:
                        if not self._degrade(exc, in_block=False):
                            raise
                        self._connection().execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise _error(self._path, exc, "starting a write") from exc
            else:
                try:
                    self._exec(False, f"SAVEPOINT {savepoint}", ())
                except sqlite3.Error as exc:
                    raise _error(self._path, exc, "starting a write") from exc
            self._depth = depth + 1
            try:
                yield self
            except BaseException:
                self._depth = depth
                if depth == 0:
                    _rollback_quietly(self._connection())
                    self._block = []
                else:
                    try:
                        self._exec(False, f"ROLLBACK TO {savepoint}", ())
                        self._exec(False, f"RELEASE {savepoint}", ())
                    except sqlite3.Error:
                        pass
                raise
            self._depth = depth
            conn = self._connection()
            if not conn.in_transaction:
                raise StoreError(
                    f"state database {self._path}: the atomic block was rolled back by "
                    "an earlier error; nothing of it was saved"
                )
            if depth:
                try:
                    self._exec(False, f"RELEASE {savepoint}", ())
                except sqlite3.Error as exc:
                    raise _error(self._path, exc, "committing") from exc
                return
            try:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    if not self._degrade(exc, in_block=True):
                        raise
                    self._connection().execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback_quietly(self._connection())
                raise _error(self._path, exc, "committing") from exc
            finally:
                self._block = []

    @contextmanager
    def _write(self, doing: str) -> Iterator[_Writer]:
        with self.atomic():
            conn = self._connection()
            if not conn.in_transaction:
                # SQLite rolls a transaction back by itself after some errors
                # (full disk, I/O); writing on would autocommit piecemeal.
                raise StoreError(
                    f"state database {self._path}: the enclosing atomic block was "
                    f"rolled back by an earlier error; not {doing}"
                )
            try:
                yield _Writer(self)
            except sqlite3.Error as exc:
                raise _error(self._path, exc, doing) from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise _error(self._path, exc, "reading") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"state database {self._path} is closed")
        return self._conn

    # ------------------------------------------------------------ config keys

    def keys(self) -> dict[str, str]:
        """All configuration keys stored (set over OCPP), key -> value."""
        with self._read() as conn:
            return {k: v for k, v in conn.execute("SELECT key, value FROM config_keys")}

    def set_keys(self, changes: Mapping[str, str]) -> None:
        """Upsert keys in one transaction. Keys are case-insensitive."""
        items = list(changes.items())
        for key, value in items:
            if not isinstance(key, str) or not key:
                raise TypeError(f"configuration key must be a non-empty str, got {key!r}")
            if not isinstance(value, str):
                raise TypeError(f"value of {key} must be str, got {type(value).__name__}")
        with self._write("saving configuration keys") as conn:
            conn.executemany(
                "INSERT INTO config_keys (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET key = excluded.key, value = excluded.value",
                items,
            )

    # ----------------------------------------------------------- availability

    def availability(self) -> dict[int, str]:
        """Connector id (0 = whole charger) -> "Operative" / "Inoperative"."""
        with self._read() as conn:
            return {
                int(c): v
                for c, v in conn.execute("SELECT connector_id, value FROM availability")
            }

    def set_availability(self, connector_id: int, value: str) -> None:
        if value not in AVAILABILITY_VALUES:
            raise ValueError(f"availability must be Operative or Inoperative, got {value!r}")
        connector_id = _as_int(connector_id, "connector_id")
        if connector_id < 0:
            raise ValueError(f"connector_id must be >= 0, got {connector_id}")
        with self._write("saving availability") as conn:
            conn.execute(
                "INSERT INTO availability (connector_id, value) VALUES (?, ?) "
                "ON CONFLICT (connector_id) DO UPDATE SET value = excluded.value",
                (connector_id, value),
            )

    # ------------------------------------------------------------------- meta

    def get_meta(self, name: str) -> str | None:
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
            return None if row is None else row[0]

    def set_meta(self, name: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"meta value must be str, got {type(value).__name__}")
        with self._write(f"saving meta {name}") as conn:
            conn.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    def mark_running(self) -> None:
        """Call once the daemon runs; cleared by :meth:`mark_stopped` at a clean stop."""
        with self.atomic():
            self.set_meta(_META_RUNNING, "1")
            self.set_meta(_META_STARTED_AT, _utc_now())

    def mark_stopped(self) -> None:
        """Call at a clean shutdown, after the last state has been written."""
        with self.atomic():
            self.set_meta(_META_RUNNING, "0")
            self.set_meta(_META_STOPPED_AT, _utc_now())

    def last_run_was_clean(self) -> bool:
        """Whether the run before this open ended with :meth:`mark_stopped`.

        False after a power loss or kill while running. Decided when the store
        was opened, so it does not change when this run calls mark_running().
        True for a new database.
        """
        return self._previous_run_clean

    # ----------------------------------------------------------- transactions

    def begin_transaction(
        self,
        connector_id: int,
        id_tag: str,
        meter_start_wh: int,
        started_at: str,
        reservation_id: int | None = None,
    ) -> TxRecord:
        """Record a new local transaction (before the CSMS gives its id)."""
        connector_id = _as_int(connector_id, "connector_id")
        meter_start_wh = _as_int(meter_start_wh, "meter_start_wh")
        reservation_id = _as_opt_int(reservation_id, "reservation_id")
        _check_str(id_tag, "id_tag")
        _check_str(started_at, "started_at")
        with self._write("recording a transaction start") as conn:
            cur = conn.execute(
                "INSERT INTO transactions (connector_id, id_tag, meter_start_wh, started_at, "
                "reservation_id, last_meter_wh) VALUES (?, ?, ?, ?, ?, ?)",
                (connector_id, id_tag, meter_start_wh, started_at, reservation_id, meter_start_wh),
            )
            local_id = int(cur.lastrowid)
        return TxRecord(
            local_id=local_id,
            connector_id=connector_id,
            id_tag=id_tag,
            meter_start_wh=meter_start_wh,
            started_at=started_at,
            transaction_id=None,
            reservation_id=reservation_id,
            last_meter_wh=meter_start_wh,
            last_meter_at=None,
            stopped_at=None,
            meter_stop_wh=None,
            stop_reason=None,
            stop_id_tag=None,
        )

    def set_transaction_id(self, local_id: int, transaction_id: int) -> None:
        """Store the transactionId the CSMS gave in StartTransaction.conf."""
        transaction_id = _as_int(transaction_id, "transaction_id")
        with self._write("saving a transaction id") as conn:
            cur = conn.execute(
                "UPDATE transactions SET transaction_id = ? WHERE local_id = ?",
                (transaction_id, local_id),
            )
            if cur.rowcount != 1:
                raise StoreError(f"no transaction with local id {local_id}")

    def update_meter(self, local_id: int, wh: int, at: str) -> bool:
        """Remember the latest meter reading of a running transaction.

        Returns False (and changes nothing) if the transaction is already
        stopped; raises StoreError for an unknown local id.
        """
        wh = _as_int(wh, "wh")
        _check_str(at, "at")
        with self._write("saving a meter reading") as conn:
            cur = conn.execute(
                "UPDATE transactions SET last_meter_wh = ?, last_meter_at = ? "
                "WHERE local_id = ? AND stopped_at IS NULL",
                (wh, at, local_id),
            )
            if cur.rowcount == 1:
                return True
            self._require_tx(conn, local_id)
            return False

    def end_transaction(
        self,
        local_id: int,
        meter_stop_wh: int,
        stopped_at: str,
        reason: str,
        stop_id_tag: str | None = None,
    ) -> None:
        """Mark a transaction stopped. A stop is final: ending it twice raises."""
        meter_stop_wh = _as_int(meter_stop_wh, "meter_stop_wh")
        _check_str(stopped_at, "stopped_at")
        _check_str(reason, "reason")
        if stop_id_tag is not None:
            _check_str(stop_id_tag, "stop_id_tag")
        with self._write("recording a transaction stop") as conn:
            cur = conn.execute(
                "UPDATE transactions SET stopped_at = ?, meter_stop_wh = ?, stop_reason = ?, "
                "stop_id_tag = ?, last_meter_wh = ?, last_meter_at = ? "
                "WHERE local_id = ? AND stopped_at IS NULL",
                (stopped_at, meter_stop_wh, reason, stop_id_tag, meter_stop_wh, stopped_at,
                 local_id),
            )
            if cur.rowcount != 1:
                self._require_tx(conn, local_id)
                raise StoreError(f"transaction with local id {local_id} is already stopped")

    def open_transactions(self) -> list[TxRecord]:
        """Transactions not stopped yet, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_TX_COLUMNS} FROM transactions WHERE stopped_at IS NULL "
                "ORDER BY local_id"
            ).fetchall()
        return [TxRecord(*row) for row in rows]

    def transaction(self, local_id: int) -> TxRecord | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_TX_COLUMNS} FROM transactions WHERE local_id = ?", (local_id,)
            ).fetchone()
        return None if row is None else TxRecord(*row)

    def forget_transaction(self, local_id: int) -> bool:
        """Delete a fully delivered transaction.

        Deletes only if it is stopped and no outbox row refers to it; returns
        True if a row was deleted, False otherwise (unknown, open or still queued).
        """
        with self._write("deleting a transaction") as conn:
            cur = conn.execute(
                "DELETE FROM transactions WHERE local_id = ? AND stopped_at IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM outbox WHERE tx_local_id = ?)",
                (local_id, local_id),
            )
            return cur.rowcount == 1

    @staticmethod
    def _require_tx(conn: _Writer, local_id: int) -> None:
        row = conn.execute("SELECT 1 FROM transactions WHERE local_id = ?", (local_id,))
        if row.fetchone() is None:
            raise StoreError(f"no transaction with local id {local_id}")

    # ----------------------------------------------------------------- outbox

    def enqueue(
        self, action: str, payload: dict[str, Any], tx_local_id: int | None = None
    ) -> OutboxRow:
        """Append a message to the outbox; it is on disk when this returns.

        ``payload`` must be JSON-serialisable (TypeError/ValueError otherwise).
        """
        _check_str(action, "action")
        if not isinstance(payload, dict):
            raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
        tx_local_id = _as_opt_int(tx_local_id, "tx_local_id")
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        created_at = _utc_now()
        with self._write(f"queueing {action}") as conn:
            cur = conn.execute(
                "INSERT INTO outbox (action, payload, tx_local_id, attempts, created_at) "
                "VALUES (?, ?, ?, 0, ?)",
                (action, text, tx_local_id, created_at),
            )
            seq = int(cur.lastrowid)
        return OutboxRow(seq, action, json.loads(text), tx_local_id, 0, created_at)

    def pending(self, limit: int | None = None) -> list[OutboxRow]:
        """Queued messages in sequence (= insertion) order."""
        sql = f"SELECT {_OUTBOX_COLUMNS} FROM outbox ORDER BY seq"
        params: tuple[int, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (max(0, int(limit)),)
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_outbox_row(row) for row in rows]

    def first_pending(self) -> OutboxRow | None:
        rows = self.pending(limit=1)
        return rows[0] if rows else None

    def record_attempt(self, seq: int) -> int:
        """Count one more delivery attempt; returns the new count."""
        with self._write("counting a delivery attempt") as conn:
            cur = conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))
            if cur.rowcount != 1:
                raise StoreError(f"no outbox message with seq {seq}")
            row = conn.execute("SELECT attempts FROM outbox WHERE seq = ?", (seq,)).fetchone()
            return int(row[0])

    def remove(self, seq: int) -> bool:
        """Remove a delivered (or abandoned) message; False if it was not queued."""
        with self._write("removing a delivered message") as conn:
            return conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount == 1

    def count(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def trim_outbox(self, keep: int, protected: tuple[str, ...] = ("StartTransaction", "StopTransaction")) -> int:
        """Bound the queue to ``keep`` rows: drop the oldest messages that are not part of a
        transaction first, then the oldest other unprotected ones; ``protected`` actions
        are never dropped. Returns how many were dropped."""
        dropped = 0
        with self._write("trimming the message queue") as conn:
            excess = int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0]) - keep
            marks = ",".join("?" * len(protected))
            for where in ("tx_local_id IS NULL", "tx_local_id IS NOT NULL"):
                if excess - dropped <= 0:
                    break
                dropped += conn.execute(
                    f"DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE {where} "
                    f"AND action NOT IN ({marks}) ORDER BY seq LIMIT ?)",
                    (*protected, excess - dropped),
                ).rowcount
        return dropped

    # ---------------------------------------------------- authorization cache
    # IdTagInfo travels as the OCPP camelCase dict: {"status", "expiryDate"?,
    # "parentIdTag"?}; expiryDate is kept as the string given. The LRU order is
    # the order of cache_put/cache_touch calls (use_seq), not of the used_at
    # timestamps: the wall clock may jump when it is set from the CSMS.

    def cache_get(self, id_tag: str) -> dict[str, Any] | None:
        """The cached idTagInfo of ``id_tag`` (any case), or None."""
        _check_str(id_tag, "id_tag")
        with self._read() as conn:
            row = conn.execute(
                "SELECT status, expiry, parent_id_tag FROM auth_cache WHERE id_tag = ?",
                (id_tag,),
            ).fetchone()
        return None if row is None else _info_dict(row)

    def cache_put(self, id_tag: str, info: Mapping[str, Any], used_at: str) -> None:
        """Insert or replace the entry of ``id_tag``; it becomes the most recently used.

        The idTag is stored with the spelling given last.
        """
        _check_id_tag(id_tag)
        status, expiry, parent = _info_row(info)
        _check_str(used_at, "used_at")
        with self._write("saving an authorization cache entry") as conn:
            conn.execute(
                "INSERT INTO auth_cache (id_tag, status, expiry, parent_id_tag, used_at, use_seq) "
                "VALUES (?, ?, ?, ?, ?, (SELECT coalesce(max(use_seq), 0) + 1 FROM auth_cache)) "
                "ON CONFLICT (id_tag) DO UPDATE SET id_tag = excluded.id_tag, "
                "status = excluded.status, expiry = excluded.expiry, "
                "parent_id_tag = excluded.parent_id_tag, used_at = excluded.used_at, "
                "use_seq = excluded.use_seq",
                (id_tag, status, expiry, parent, used_at),
            )

    def cache_touch(self, id_tag: str, used_at: str) -> bool:
        """Mark an entry as just used; False (nothing written) if it is not cached."""
        _check_str(id_tag, "id_tag")
        _check_str(used_at, "used_at")
        with self._write("marking an authorization cache entry used") as conn:
            cur = conn.execute(
                "UPDATE auth_cache SET used_at = ?, "
                "use_seq = (SELECT coalesce(max(use_seq), 0) + 1 FROM auth_cache) "
                "WHERE id_tag = ?",
                (used_at, id_tag),
            )
            return cur.rowcount == 1

    def cache_remove(self, id_tag: str) -> bool:
        """Remove one entry; False if it was not cached."""
        _check_str(id_tag, "id_tag")
        with self._write("removing an authorization cache entry") as conn:
            return conn.execute(
                "DELETE FROM auth_cache WHERE id_tag = ?", (id_tag,)
            ).rowcount == 1

    def cache_clear(self) -> int:
        """ClearCache: remove every entry; returns how many there were."""
        with self._write("clearing the authorization cache") as conn:
            return int(conn.execute("DELETE FROM auth_cache").rowcount)

    def cache_size(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT count(*) FROM auth_cache").fetchone()[0])

    def cache_evict_lru(self, keep: int) -> int:
        """Remove the least recently used entries beyond the ``keep`` most recent ones.

        Returns the number removed.
        """
        keep = _as_int(keep, "keep")
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        with self._write("evicting authorization cache entries") as conn:
            cur = conn.execute(
                "DELETE FROM auth_cache WHERE id_tag IN (SELECT id_tag FROM auth_cache "
                "ORDER BY use_seq DESC LIMIT -1 OFFSET ?)",
                (keep,),
            )
            return int(cur.rowcount)

    # --------------------------------------------------- local authorization list

    def local_list_version(self) -> int:
        """The version of the local list; 0 when none was ever stored."""
        value = self.get_meta(_META_LOCAL_LIST_VERSION)
        return 0 if value is None else int(value)

    def local_list_get(self, id_tag: str) -> dict[str, Any] | None:
        """The idTagInfo of ``id_tag`` (any case) in the local list, or None."""
        _check_str(id_tag, "id_tag")
        with self._read() as conn:
            row = conn.execute(
                "SELECT status, expiry, parent_id_tag FROM local_list WHERE id_tag = ?",
                (id_tag,),
            ).fetchone()
        return None if row is None else _info_dict(row)

    def local_list_contains(self, id_tag: str) -> bool:
        _check_str(id_tag, "id_tag")
        with self._read() as conn:
            return conn.execute(
                "SELECT 1 FROM local_list WHERE id_tag = ?", (id_tag,)
            ).fetchone() is not None

    def local_list_size(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT count(*) FROM local_list").fetchone()[0])

    def local_list_apply(
        self,
        version: int,
        full: bool,
        upserts: Mapping[str, Mapping[str, Any]],
        deletes: Iterable[str] = (),
    ) -> None:
        """Apply a (checked) SendLocalList update and set the list version, atomically.

        ``full``: the list becomes exactly ``upserts`` (``deletes`` must be
        empty). Otherwise insert or replace ``upserts`` and remove ``deletes``
        (absent ids are ignored). Either all of it and the new version are
        stored, or (on any error) the old list and version stay whole. Whether
        the update is allowed (versions, sizes) is decided before, by
        ``controller.core.auth.plan_list_update``.
        """
        version = _as_int(version, "version")
        if version < 0:
            raise ValueError(f"version must be >= 0, got {version}")
        rows = []
        for id_tag, info in upserts.items():
            _check_id_tag(id_tag)
            rows.append((id_tag, *_info_row(info)))
        removed = [(id_tag,) for id_tag in deletes]
        for (id_tag,) in removed:
            _check_str(id_tag, "id_tag")
        if full and removed:
            raise ValueError("a full update has no deletes")
        with self._write("updating the local authorization list") as conn:
            if full:
                conn.execute("DELETE FROM local_list")
            else:
                conn.executemany("DELETE FROM local_list WHERE id_tag = ?", removed)
            conn.executemany(
                "INSERT INTO local_list (id_tag, status, expiry, parent_id_tag) "
                "VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id_tag) DO UPDATE SET id_tag = excluded.id_tag, "
                "status = excluded.status, expiry = excluded.expiry, "
                "parent_id_tag = excluded.parent_id_tag",
                rows,
            )
            conn.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (_META_LOCAL_LIST_VERSION, str(version)),
            )

    # ----------------------------------------------------------- reservations

    def reservations(self) -> list[ReservationRow]:
        """All stored reservations, by reservation id."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_RESERVATION_COLUMNS} FROM reservations ORDER BY reservation_id"
            ).fetchall()
        return [ReservationRow(*row) for row in rows]

    def put_reservation(self, row: ReservationRow) -> None:
        """Insert a reservation, or replace the one with the same reservation id.

        ``row`` is a ReservationRow or any object with the same attributes."""
        _as_int(row.reservation_id, "reservation_id")
        if _as_int(row.connector_id, "connector_id") < 0:
            raise ValueError(f"connector_id must be >= 0, got {row.connector_id}")
        _check_str(row.id_tag, "id_tag")
        if row.parent_id_tag is not None:
            _check_str(row.parent_id_tag, "parent_id_tag")
        _check_str(row.expiry, "expiry")
        with self._write("saving a reservation") as conn:
            conn.execute(
                f"INSERT INTO reservations ({_RESERVATION_COLUMNS}) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (reservation_id) DO UPDATE SET connector_id = excluded.connector_id, "
                "id_tag = excluded.id_tag, parent_id_tag = excluded.parent_id_tag, "
                "expiry = excluded.expiry",
                (row.reservation_id, row.connector_id, row.id_tag, row.parent_id_tag, row.expiry),
            )

    def remove_reservation(self, reservation_id: int) -> bool:
        """Remove a reservation; False if there was none with that id."""
        reservation_id = _as_int(reservation_id, "reservation_id")
        with self._write("removing a reservation") as conn:
            return conn.execute(
                "DELETE FROM reservations WHERE reservation_id = ?", (reservation_id,)
            ).rowcount == 1

    # ----------------------------------------------------------- charging profiles

    def charging_profiles(self) -> list[tuple[int, dict[str, Any]]]:
        """(connector id, profile as received) of every installed profile, by profile id."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT connector_id, profile FROM charging_profiles ORDER BY profile_id"
            ).fetchall()
        return [(cid, json.loads(text)) for cid, text in rows]

    def replace_charging_profiles(self, remove_ids: Iterable[int], put: Iterable[tuple[int, dict[str, Any]]]) -> None:
        """Remove some profiles and install others, in one transaction."""
        rows = [
            (
                _as_int(p["chargingProfileId"], "chargingProfileId"), _as_int(cid, "connector_id"),
                str(p["chargingProfilePurpose"]), _as_int(p["stackLevel"], "stackLevel"),
                json.dumps(p, separators=(",", ":"), allow_nan=False),
            )
            for cid, p in put
        ]
        with self._write("saving charging profiles") as conn:
            conn.executemany(
                "DELETE FROM charging_profiles WHERE profile_id = ?", [(_as_int(i, "profile_id"),) for i in remove_ids]
            )
            conn.executemany(
                "INSERT OR REPLACE INTO charging_profiles "
                "(profile_id, connector_id, purpose, stack_level, profile) VALUES (?, ?, ?, ?, ?)",
                rows,
            )


# ---------------------------------------------------------------------------


class _Writer:
    """What a write block sees of the connection: statements recorded for a replay."""

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self._store._exec(False, sql, params)

    def executemany(self, sql: str, params: Iterable[Any]) -> sqlite3.Cursor:
        return self._store._exec(True, sql, params)


def _error(path: Path, exc: BaseException, doing: str) -> StoreError:
    return StoreError(_explain(path, exc, doing), transient=_primary_code(exc) in _STORAGE_FAULTS | {_SQLITE_PERM})


def _fault_reason(exc: BaseException, directory: Path | None = None) -> str:
    """What the operator is told; an I/O error is told apart by writing a probe file."""
    code = _primary_code(exc)
    text = str(exc)
    if code == _SQLITE_FULL:
        return "disk full"
    if code == _SQLITE_READONLY or "read-only" in text:
        return "read-only file system"
    if directory is not None:
        probe = directory / ".evsectl-write-probe"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"x" * 4096)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as probe_exc:
            if probe_exc.errno == errno.EROFS:
                return "read-only file system"
            if probe_exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return "disk full"
    return f"storage I/O error ({getattr(exc, 'sqlite_errorname', None) or text})"


def _has_data_beside(path: Path) -> bool:
    try:
        return path.with_name(path.name + "-wal").stat().st_size > 0
    except OSError:
        return False


def _outbox_row(row: tuple[Any, ...]) -> OutboxRow:
    seq, action, payload, tx_local_id, attempts, created_at = row
    return OutboxRow(seq, action, json.loads(payload), tx_local_id, attempts, created_at)


def _info_row(info: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """(status, expiry, parent_id_tag) of an OCPP idTagInfo dict; ValueError/TypeError if bad."""
    if not isinstance(info, Mapping):
        raise TypeError(f"idTagInfo must be a mapping, got {type(info).__name__}")
    status = info.get("status")
    if status not in _AUTH_STATUSES:
        raise ValueError(f"idTagInfo status must be one of {sorted(_AUTH_STATUSES)}, got {status!r}")
    expiry = info.get("expiryDate")
    if expiry is not None:
        _check_str(expiry, "expiryDate")
    parent = info.get("parentIdTag")
    if parent is not None:
        _check_str(parent, "parentIdTag")
    return status, expiry, parent


def _info_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    status, expiry, parent = row
    info: dict[str, Any] = {"status": status}
    if expiry is not None:
        info["expiryDate"] = expiry
    if parent is not None:
        info["parentIdTag"] = parent
    return info


def _check_id_tag(value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(f"id_tag must be a non-empty str, got {value!r}")


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be int, got {value!r}")
    return value


def _as_opt_int(value: Any, name: str) -> int | None:
    return None if value is None else _as_int(value, name)


def _check_str(value: Any, name: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, got {value!r}")


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def _prepare_file(path: Path) -> None:
    """Create the directory (0o750) and an empty database file (0o600) if missing.

    The file may hold secrets (AuthorizationKey), so it is readable by the
    service user alone; SQLite gives its -wal/-shm files the same mode.
    """
    parent = path.parent
    try:
        if not parent.exists():
            parent.mkdir(mode=0o750, parents=True)
            os.chmod(parent, 0o750)  # exact mode, whatever the umask
        elif not parent.is_dir():
            raise StoreError(
                f"state database {path}: {parent} is not a directory; fix the state "
                "directory setting (or the file system) before starting evsectl."
            )
    except StoreError:
        raise
    except OSError as exc:
        raise StoreError(
            f"state database {path}: cannot create its directory {parent} ({exc}); "
            "check the state directory setting and its permissions.", transient=_medium_errno(exc)
        ) from exc

    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise StoreError(f"state database {path}: cannot examine it ({exc}).", transient=_medium_errno(exc)) from exc
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(
                f"state database {path} exists but is not a regular file; move it aside."
            )
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        # Make the new directory entry durable before SQLite writes into the file.
        dfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except FileExistsError:
        return  # created concurrently; SQLite's own checks apply
    except OSError as exc:
        raise StoreError(
            f"state database {path} cannot be created ({exc}): the service user must be "
            f"able to write the directory {parent}, on a file system mounted read-write.",
            transient=_medium_errno(exc),
        ) from exc


def _medium_errno(exc: OSError) -> bool:
    """A failure of the storage medium (may pass), not of the settings."""
    return exc.errno in (errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT)
