"""Disk and database faults against the real daemon (issue 10 item 4; R-TX 4 "whatever is
killed when (... full disk)").

* Full disk during a charge: a small tmpfs is mounted on the daemon's state directory
  and filled. The charge goes on (the vendor's DTC 0x100009 "Abnormal SD card" is an
  alarm, not an error), MemoryExhaustion reaches the CSMS, the state is held in memory
  and written back, without a restart, once space is freed.
* Read-only state file system mid-charge: an ext4 image on a loop device with
  errors=remount-ro is forced read-only the way a failing SD card is (ext4's
  trigger_fs_error); the charge and its messages go on.
* Corrupt database: the daemon refuses to start (exit 3), naming the file and
  ``evsectl state recover``; the command salvages the rows and the daemon starts.

Mounting needs root (or a user+mount namespace for tmpfs); where neither works the
tests skip and say why. Every mount is undone at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import REPO, Daemon

from controller.csms import CentralSystem

DB = "evsectl.sqlite"
STORAGE_DTC = "0x100009"


# ---------------------------------------------------------------- mounts


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


class FsDaemon(Daemon):
    """The harness's daemon, started behind ``prefix`` (nsenter into a namespace) when set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prefix: list[str] = []

    async def start(self, wait_socket: bool = True) -> None:
        if not self.prefix:
            await super().start(wait_socket)
            return
        self.runs += 1
        with open(self.log_path, "ab") as log:  # noqa: ASYNC230 - as the harness does
            log.write(f"\n===== run {self.runs} (in a user+mount namespace) =====\n".encode())
            log.flush()
            env = {**os.environ, "EVSECTL_CONFIG": str(self.config), "PYTHONUNBUFFERED": "1"}
            self.proc = await asyncio.create_subprocess_exec(
                *self.prefix, sys.executable, "-m", "controller", "run", "--config", str(self.config),
                stdout=log, stderr=log, env=env, cwd=str(REPO),
            )
        if wait_socket:
            await self.wait_ready()


@contextlib.asynccontextmanager
async def small_tmpfs(d: FsDaemon, size: str = "3m") -> AsyncIterator[Path]:
    """A tmpfs of ``size`` on the daemon's state directory; yields the directory as this
    process sees it. As root: mounted here. Otherwise: in a user+mount namespace kept by
    a holder process (``unshare -rm``), the daemon started in it through nsenter, and the
    directory reached through /proc/<holder>/root."""
    path = d.state_dir
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and not os.environ.get("EVSECTL_TEST_USERNS"):  # set: the non-root way, as root
        done = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0750", "evsectl-test", str(path))
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        try:
            yield path
        finally:
            _run("umount", "-l", str(path))
        return
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        pytest.skip("not root, and unshare/nsenter (util-linux) are missing: no small file system to fill")
    holder = await asyncio.create_subprocess_exec(
        "unshare", "-rm", "--propagation", "private", "sh", "-c",
        f"mount -t tmpfs -o size={size},mode=0750 evsectl-test '{path}' && echo ready && exec sleep 3600",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stderr is not None
        try:
            line = await asyncio.wait_for(holder.stdout.readline(), 10)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            err = (await holder.stderr.read()).decode(errors="replace").strip() if holder.returncode is not None else ""
            pytest.skip("not root, and no user+mount namespace for a small tmpfs either "
                        f"(unshare -rm: {err or 'no answer'}; e.g. kernel.apparmor_restrict_unprivileged_userns=1)")
        d.prefix = ["nsenter", "-t", str(holder.pid), "-U", "-m", "--preserve-credentials"]
        yield Path(f"/proc/{holder.pid}/root{path}")
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()


@contextlib.contextmanager
def failing_ext4(path: Path, image: Path) -> Iterator[str]:
    """An ext4 file system (loop device, errors=remount-ro) on ``path``; yields its
    /sys/fs/ext4 name, whose trigger_fs_error makes it read-only like a failing SD card."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("a loop-mounted ext4 needs root")
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 is not installed (e2fsprogs)")
    with open(image, "wb") as f:
        f.truncate(16 * 1024 * 1024)
    made = _run("mkfs.ext4", "-q", "-F", str(image))
    if made.returncode:
        pytest.skip(f"mkfs.ext4 failed: {made.stderr.strip()}")
    done = _run("mount", "-o", "loop,errors=remount-ro", str(image), str(path))
    if done.returncode:
        pytest.skip(f"cannot loop-mount an ext4 image here: {done.stderr.strip()}")
    try:
        device = _run("findmnt", "-n", "-o", "SOURCE", str(path)).stdout.strip()
        name = os.path.basename(device)
        if not Path(f"/sys/fs/ext4/{name}/trigger_fs_error").exists():
            pytest.skip("this kernel has no ext4 trigger_fs_error to fail the file system")
        yield name
    finally:
        _run("umount", "-l", str(path))


def remount(path: Path, image: Path) -> None:
    """What an operator does with a file system forced read-only: unmount, fsck, mount."""
    assert _run("umount", str(path)).returncode == 0
    fsck = _run("e2fsck", "-f", "-y", str(image))
    assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr  # 1: errors corrected
    assert _run("mount", "-o", "loop,errors=remount-ro", str(image), str(path)).returncode == 0


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte; returns the filler file."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            block = b"\0" * chunk
            while True:
                try:
                    if f.write(block) < chunk:
                        break
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    return filler


def read_db(d: FsDaemon, sql: str) -> list[tuple[Any, ...]]:
    """``on_disk`` of the daemon's database, seen from the daemon's mount namespace
    (SQLite resolves /proc/<pid>/root to the host's root, so it runs in there)."""
    if not d.prefix:
        return on_disk(d.state_dir / DB, sql)
    script = ("import json, sqlite3, sys; c = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True); "
              "print(json.dumps(c.execute(sys.argv[2]).fetchall()))")
    done = subprocess.run([*d.prefix, sys.executable, "-c", script, str(d.state_dir / DB), sql],
                          capture_output=True, text=True, check=True)
    return [tuple(row) for row in json.loads(done.stdout)]


def on_disk(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """What a second process reads from the database file (committed state only)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# ---------------------------------------------------------------- daemon


@pytest.fixture
async def csms() -> AsyncIterator[CentralSystem]:
    async with CentralSystem("127.0.0.1", 0) as c:
        yield c


@contextlib.asynccontextmanager
async def running(d: Daemon) -> AsyncIterator[Daemon]:
    try:
        yield d
    finally:
        if d.proc is not None and d.proc.returncode is None:
            d.proc.kill()
            await d.proc.wait()


async def booted(d: Daemon) -> None:
    await d.start()
    await d.until(lambda s: s["link"] == "connected", timeout_s=20, what="boot")


def is_storage_status(r: Any, code: str) -> bool:
    p = r.payload
    return p["connectorId"] == 0 and (p.get("vendorErrorCode") == STORAGE_DTC) == (code != "NoError") \
        and p["errorCode"] == code


def energy(record: Any) -> int:
    return int(next(v["value"] for v in record.payload["meterValue"][0]["sampledValue"]
                    if v.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"))


# ---------------------------------------------------------------- full disk


async def test_r_tx_4_full_disk_mid_charge_charge_goes_on_memory_exhaustion_reported_recovers_without_restart(
    tmp_path: Path, csms: CentralSystem
) -> None:
    d = FsDaemon(tmp_path, csms.url)
    async with small_tmpfs(d) as state, running(d):
        await booted(d)
        d.plug(1)
        d.badge("TAG")
        start = await csms.wait_for("StartTransaction")
        await d.until(lambda s: s["connectors"][0]["transaction_id"] == 1, what="tx id")
        mark = csms.mark()
        filler = fill(state)
        d.advance(60)  # a MeterValues sample: the first write the disk refuses
        event = await csms.wait_for("SecurityEventNotification", since=mark,
                                    predicate=lambda r: r.payload["type"] == "MemoryExhaustion")
        assert "disk full" in event.payload["techInfo"]
        status = await csms.wait_for("StatusNotification", since=mark,
                                     predicate=lambda r: is_storage_status(r, "InternalError"))
        assert status.payload["status"] == "Available"  # an alarm: the station stays in service
        assert d.status()["storage_fault"] == "disk full"  # evsectl status --json
        first = await csms.wait_for("MeterValues", since=mark)
        d.advance(60)
        second = await csms.wait_for("MeterValues", since=first.seq)
        assert d.connector(1)["status"] == "Charging"
        assert start.payload["meterStart"] <= energy(first) <= energy(second)
        log = d.log_path.read_text(errors="replace")
        assert "disk full" in log and "held in memory" in log and str(d.state_dir / DB) in log
        # the file keeps the state of the moment the disk filled up
        assert read_db(d, "SELECT transaction_id, stopped_at FROM transactions") == [(1, None)]

        filler.unlink()  # space is back: the next write puts everything on disk
        freed = csms.mark()
        d.advance(60)
        await csms.wait_for("StatusNotification", since=freed, predicate=lambda r: is_storage_status(r, "NoError"))
        assert d.status()["storage_fault"] is None
        third = await csms.wait_for("MeterValues", since=freed)
        await d.until(lambda s: s["queued_messages"] == 0, what="all delivered")
        d.badge("TAG")
        stop = await csms.wait_for("StopTransaction", since=mark)
        meter = (await d.until(lambda s: s["connectors"][0]["transaction_id"] is None and s, what="stopped"))
        assert stop.payload["transactionId"] == 1
        assert stop.payload["meterStop"] == meter["connectors"][0]["meter_wh"] >= energy(third)
        await d.until(lambda s: s["queued_messages"] == 0, what="stop delivered")
        assert read_db(d, "SELECT count(*) FROM outbox") == [(0,)]
        assert await d.stop() == 0

        # a restart sends nothing twice: the disk has the whole story
        again = csms.mark()
        await booted(d)
        await csms.wait_for("BootNotification", since=again)
        await asyncio.sleep(0.5)
        assert len(csms.calls("StartTransaction")) == 1 and len(csms.calls("StopTransaction")) == 1


async def test_r_tx_4_full_disk_while_offline_state_held_in_memory_written_back_then_survives_kill_9(
    tmp_path: Path, csms: CentralSystem
) -> None:
    d = FsDaemon(tmp_path, csms.url)
    async with small_tmpfs(d) as state, running(d):
        await booted(d)
        port = csms.port
        await csms.stop()
        await d.until(lambda s: s["link"] != "connected", what="link down")
        filler = fill(state)
        d.plug(1)
        d.badge("OFFLINE1")  # AllowOfflineTxForUnknownId: starts offline
        await d.until(lambda s: s["connectors"][0]["status"] == "Charging", what="offline start")
        d.advance(900)  # disconnectedMeterValueSampleInterval
        await d.until(lambda s: s["queued_messages"] >= 3, what="Start, MemoryExhaustion, MeterValues queued")
        d.badge("OFFLINE1")
        stopped = await d.until(lambda s: s["connectors"][0]["status"] != "Charging" and s, what="offline stop")
        meter_stop = stopped["connectors"][0]["meter_wh"]
        queued = stopped["queued_messages"]
        assert read_db(d, "SELECT count(*) FROM outbox WHERE action = 'StopTransaction'") == [(0,)]
        filler.unlink()
        # written back with no write to carry it (the daemon's storage probe)
        for _ in range(100):
            actions = [a for (a,) in read_db(d, "SELECT action FROM outbox ORDER BY seq")]
            if "StopTransaction" in actions:
                break
            await asyncio.sleep(0.05)
        assert len(actions) == queued  # everything held in memory is on disk now
        tx_actions = [a for a in actions if a != "SecurityEventNotification"]
        assert tx_actions[0] == "StartTransaction" and tx_actions[-1] == "StopTransaction" and "MeterValues" in tx_actions
        await d.kill9()  # nothing left only in memory
        async with CentralSystem("127.0.0.1", port) as back:
            d.rewrite(back.url)
            await d.start()
            stop = await back.wait_for("StopTransaction", timeout=20)
            calls = [r for r in back.calls() if r.action in
                     ("StartTransaction", "MeterValues", "StopTransaction", "SecurityEventNotification")]
            kinds = [r.action if r.action != "SecurityEventNotification" else r.payload["type"] for r in calls]
            assert next(k for k in kinds if k in ("StartTransaction", "MeterValues", "StopTransaction")) == "StartTransaction"
            assert "MemoryExhaustion" in kinds
            assert kinds.count("StartTransaction") == 1 and kinds.count("StopTransaction") == 1
            assert "MeterValues" in kinds
            assert stop.payload["meterStop"] == meter_stop and stop.payload["reason"] == "Local"
            await d.until(lambda s: s["queued_messages"] == 0, what="delivered")


async def test_r_tx_4_full_disk_at_start_exits_75_so_systemd_restarts_then_starts_once_freed(
    tmp_path: Path, csms: CentralSystem
) -> None:
    d = FsDaemon(tmp_path, csms.url)
    async with small_tmpfs(d) as state, running(d):
        filler = fill(state)
        await d.start(wait_socket=False)
        assert await d.wait_exit() == 75  # EX_TEMPFAIL: may pass by itself, unlike a corrupt file (3)
        assert "disk full" in d.log_path.read_text(errors="replace")
        filler.unlink()
        await booted(d)


# ---------------------------------------------------------------- read-only


async def test_r_tx_4_state_file_system_turns_read_only_mid_charge_charge_and_messages_go_on(
    tmp_path: Path, csms: CentralSystem
) -> None:
    d = Daemon(tmp_path, csms.url)
    with failing_ext4(d.state_dir, tmp_path / "state.img") as fs:
        async with running(d):
            await booted(d)
            d.plug(1)
            d.badge("TAG")
            start = await csms.wait_for("StartTransaction")
            await d.until(lambda s: s["connectors"][0]["transaction_id"] == 1, what="tx id")
            mark = csms.mark()
            Path(f"/sys/fs/ext4/{fs}/trigger_fs_error").write_text("evsectl test: SD card failing\n")
            d.advance(60)
            event = await csms.wait_for("SecurityEventNotification", since=mark,
                                        predicate=lambda r: r.payload["type"] == "MemoryExhaustion")
            assert event.payload["techInfo"].startswith("state database: read-only file system")
            await csms.wait_for("StatusNotification", since=mark,
                                predicate=lambda r: is_storage_status(r, "InternalError"))
            values = await csms.wait_for("MeterValues", since=mark)
            d.advance(60)
            await csms.wait_for("MeterValues", since=values.seq)
            assert d.connector(1)["status"] == "Charging"
            d.badge("TAG")
            stop = await csms.wait_for("StopTransaction", since=mark)
            after = await d.until(lambda s: s["connectors"][0]["transaction_id"] is None and s, what="stopped")
            assert stop.payload["meterStop"] == after["connectors"][0]["meter_wh"] >= start.payload["meterStart"]
            await d.until(lambda s: s["queued_messages"] == 0, what="delivered live")
            assert d.proc is not None and d.proc.returncode is None  # never crashed
            log = d.log_path.read_text(errors="replace")
            assert "held in memory" in log

            # The file system stays read-only (ext4 needs an fsck): at exit the state held in
            # memory goes to the runtime directory, and the next start takes it back.
            assert await d.stop() == 0
            spill = d.socket.parent / "evsectl.sqlite.held"
            assert spill.exists()
            assert on_disk(d.state_dir / DB, "SELECT stopped_at FROM transactions") == [(None,)]  # stale
            remount(d.state_dir, tmp_path / "state.img")
            mark = csms.mark()
            await booted(d)
            await csms.wait_for("BootNotification", since=mark)
            await asyncio.sleep(0.5)
            assert not spill.exists()
            assert len(csms.calls("StopTransaction")) == 1  # no second stop (PowerLoss) from the stale file
            assert on_disk(d.state_dir / DB, "SELECT count(*) FROM transactions WHERE stopped_at IS NULL") == [(0,)]


# ---------------------------------------------------------------- corruption


async def _evsectl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller", *args, cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _smash_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = 4096
    middle = len(data) // page // 2
    data[middle * page:(middle + 2) * page] = b"\xa5" * (2 * page)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["pages", "header", "truncated"])
async def test_r_tx_4_corrupt_database_refused_with_the_recovery_command_then_recovered(
    tmp_path: Path, csms: CentralSystem, damage: str
) -> None:
    d = Daemon(tmp_path, csms.url, keys={"HeartbeatInterval": 300})
    async with running(d):
        await booted(d)
        d.plug(1)
        d.badge("TAG")
        await csms.wait_for("StartTransaction")
        await d.until(lambda s: s["connectors"][0]["transaction_id"] == 1, what="tx id")
        await d.until(lambda s: s["queued_messages"] == 0, what="delivered")
        assert await d.stop() == 0  # StopTransaction (Reboot) delivered, the file checkpointed
    db = d.state_dir / DB
    # rows in many pages, so that damage in the middle hits some and spares others
    conn = sqlite3.connect(str(db), isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO local_list (id_tag, status) VALUES (?, 'Accepted')",
                     [(f"T{i:06d}",) for i in range(3000)])
    conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('local_list_version', '3')")
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    if damage == "pages":
        _smash_middle(db)
    elif damage == "header":
        with db.open("r+b") as f:
            f.write(b"garbage" * 14)
    else:
        with db.open("r+b") as f:
            f.truncate(db.stat().st_size * 2 // 3)
    damaged = db.read_bytes()

    code, _out, err = await _evsectl("run", "--config", str(d.config))
    assert code == 3, err  # an operator must act: RestartPreventExitStatus=3 stops systemd looping
    assert str(db) in err and "corrupt" in err and "evsectl state recover" in err, err
    assert db.read_bytes() == damaged  # never recreated, never "repaired" behind the operator's back

    code, out, _err = await _evsectl("state", "check", "--config", str(d.config))
    assert code == 1 and "DAMAGED" in out
    code, out, err = await _evsectl("state", "recover", "--config", str(d.config))
    assert code == 0, err
    kept = sorted(d.state_dir.glob(f"{DB}.corrupt-*"))
    assert kept and kept[0].read_bytes() == damaged, out
    code, out, _err = await _evsectl("state", "check", "--config", str(d.config))
    assert code == 0, out
    assert on_disk(db, "SELECT value FROM meta WHERE name = 'local_list_version'") == [("3",)]
    kept_tags = on_disk(db, "SELECT count(*) FROM local_list")[0][0]
    assert (kept_tags == 3000) if damage == "header" else (0 < kept_tags <= 3000)

    async with running(d):
        mark = csms.mark()
        await booted(d)
        await csms.wait_for("BootNotification", since=mark)
        await asyncio.sleep(0.3)
        assert len(csms.calls("StartTransaction")) == 1 and len(csms.calls("StopTransaction")) == 1


async def test_r_tx_4_state_recover_refused_while_the_daemon_runs(tmp_path: Path, csms: CentralSystem) -> None:
    d = Daemon(tmp_path, csms.url)
    async with running(d):
        await booted(d)
        code, _out, err = await _evsectl("state", "recover", "--config", str(d.config))
        assert code == 1 and "running" in err
        assert (d.state_dir / DB).exists() and not list(d.state_dir.glob(f"{DB}.corrupt-*"))
