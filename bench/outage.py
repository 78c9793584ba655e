#!/usr/bin/env python3
"""Long-outage harness (issue 10, R-TX 4): the CSMS unreachable for a simulated day during
transactions, then back; every message must arrive once, in order, at the right spacing.

    python bench/outage.py                       # 24 simulated hours, seed 1
    python bench/outage.py --hours 3 --seed 7 -v

Owns the outage scenarios and their checks. For each combination of
OfflineTxMsgQueueEnable {true, false} x CallMsgInOrder {true, false} it runs the real daemon
(``python -m controller run``, mock drivers, ``[rig] sim_clock = true``, EVlink Pro DC 180)
against one ``CentralSystem`` on 127.0.0.1 whose clock is the same simulated clock (its
BootNotification / Heartbeat currentTime follow the advanced time, so the daemon's wall
clock is never pulled back a day). With MeterValueSampleInterval 60 and
disconnectedMeterValueSampleInterval 900 it starts a transaction on each connector, runs a
while online, stops the CSMS for ``--hours`` simulated hours (the clock is advanced in 60 s
steps through the control socket, no real sleeping), stops one transaction, raises and
clears a tamper fault (a queued security event) and starts another transaction during
the outage, starts the CSMS again on the same port (which leaves the first MeterValues of
the replay unanswered once: it must come again), takes one sample, stops the CSMS again
for two steps (a flapping link), keeps sampling while the backlog replays, stops the
rest, and checks the CSMS's frame log (see ``Combo.check``).

A last scenario bounds the queue (``[queue] max_messages``) and fills it during two outages
with security events (non-transaction messages), MeterValues and Start/StopTransaction:
the oldest non-transaction messages must go first, then the oldest MeterValues, never a
Start/Stop; the queue never exceeds its bound and the database files stay under a stated
size (see ``DiskBound``). Exit status 0 when failures = 0.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import socket
import sqlite3
import sys
import tempfile
import textwrap
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# REPO first: bench/ (sys.path[0] when run as a script) has a drivers.py that must not
# shadow the drivers package
for p in (REPO / "tests" / "integration", REPO):
    if str(p) in sys.path:
        sys.path.remove(str(p))
    sys.path.insert(0, str(p))

from daemon_harness import Daemon

import controller.csms.server as csms_server
from controller.app import DB_NAME
from controller.core.timefmt import parse_rfc3339, rfc3339
from controller.csms import CentralSystem

BOX = "CP-TEST"
ONLINE_S = 60  # MeterValueSampleInterval
OFFLINE_S = 900  # disconnectedMeterValueSampleInterval (the guide's default)
STEP_S = 60  # the clock moves in steps of this many simulated seconds
HEARTBEAT_S = 600  # the interval our CSMS gives in the BootNotification answer
PRE_S = 600  # online before the outage
POST_S = 600  # online after it, while the backlog replays (with a flap)
FLAP_STEPS = 2  # the link flaps right after the outage: away again for this many steps
#: timestamps carry the real time that passes between two steps as well (a few ms, up
#: to a second or two around a reconnect); spacings are compared within this
TOL_S = 5.0
#: the daemon's [ocpp] response_timeout_s (real seconds): the unanswered MeterValues of the
#: replay costs this much real time per combination
RESPONSE_TIMEOUT_S = 2
TX_ACTIONS = ("StartTransaction", "MeterValues", "StopTransaction")
TAMPER_DTC = "0x10020C"  # Terminal door open: an error + TamperDetectionActivated
ENERGY = "Energy.Active.Import.Register"
DISK_BOUND = 200  # [queue] max_messages of the disk-bound scenario
DISK_STEP_S = 30  # its disconnectedMeterValueSampleInterval
#: stated bound of the disk-bound scenario's database: the main file within a base plus
#: 1 KiB per queued message allowed; the WAL within SQLite's auto-checkpoint (1000 pages
#: of 4 KiB) plus slack
DB_BASE_BYTES = 256 * 1024
DB_PER_MESSAGE_BYTES = 1024
WAL_MAX_BYTES = 4 * 1024 * 1024 + 256 * 1024


@dataclass
class Failure:
    scenario: str
    text: str

    def __str__(self) -> str:
        return f"{self.scenario}: {self.text}"


@dataclass
class ScenarioCounts:
    name: str
    transactions: int = 0
    messages: int = 0  # transaction messages + security events the CSMS got and we checked
    meter_values: int = 0
    offline_meter_values: int = 0
    frames: int = 0
    concurrent: int = 0  # online MeterValues that overtook the replaying backlog
    dropped: int = 0
    transaction_data: int = 0  # StopTransaction transactionData entries checked
    resent: int = 0  # identical re-sends: the CSMS left it unanswered or a link loss ate the answer
    failures: int = 0
    seconds: float = 0.0
    note: str = ""


@dataclass
class Result:
    hours: float
    seed: int
    scenarios: list[ScenarioCounts] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def transactions(self) -> int:
        return sum(s.transactions for s in self.scenarios)

    @property
    def messages_checked(self) -> int:
        return sum(s.messages for s in self.scenarios)

    def table(self) -> str:
        head = (f"{'scenario':<34} {'tx':>3} {'msgs':>5} {'MV':>5} {'MV offl':>7} {'frames':>6} "
                f"{'txData':>6} {'overtook':>8} {'resent':>6} {'dropped':>7} {'fail':>4} {'time s':>7}")
        rows = [head, "-" * len(head)]
        for s in self.scenarios:
            rows.append(f"{s.name:<34} {s.transactions:>3} {s.messages:>5} {s.meter_values:>5} "
                        f"{s.offline_meter_values:>7} {s.frames:>6} {s.transaction_data:>6} {s.concurrent:>8} "
                        f"{s.resent:>6} "
                        f"{s.dropped:>7} {s.failures:>4} {s.seconds:>7.1f}")
        legend = ("Queue: OfflineTxMsgQueueEnable; InOrder: CallMsgInOrder; tx: transactions; "
                  "msgs: transaction messages and security events checked; MV offl: MeterValues "
                  "taken while the CSMS was away; frames: frames checked for one CALL in flight; "
                  "txData: StopTransaction transactionData entries checked; "
                  "overtook: online MeterValues sent beside the replaying backlog "
                  "(OfflineTxMsgQueueEnable=false); resent: identical re-sends of a message left unanswered "
                  "or whose answer a link loss swallowed; "
                  "dropped: messages the queue bound dropped")
        rows += textwrap.wrap(legend, 100)
        notes = [f"  {s.name}: {s.note}" for s in self.scenarios if s.note]
        return "\n".join(rows + (["notes:", *notes] if notes else []))

    def summary(self) -> str:
        return (
            f"scenarios: {len(self.scenarios)}\n"
            f"simulated outage: {self.hours:g} h per combination\n"
            f"transactions: {self.transactions}\n"
            f"messages checked: {self.messages_checked}\n"
            f"failures: {len(self.failures)}\n"
            f"time: {self.seconds:.1f} s"
        )


# ------------------------------------------------------------------ shared helpers


class SimTime:
    """The simulated time shared by the bench, our CSMS and (through clock-advance) the daemon.

    The daemon's SimClock runs at real speed plus what was advanced; so does ``now()``.
    """

    def __init__(self) -> None:
        self.advanced = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.advanced)


@contextmanager
def csms_on_sim_time(sim: SimTime) -> Iterator[None]:
    """Our CSMS answers BootNotification / Heartbeat with the simulated time (restored after)."""
    original = csms_server.utc_now_text
    csms_server.utc_now_text = lambda: rfc3339(sim.now())
    try:
        yield
    finally:
        csms_server.utc_now_text = original


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ts(text: str) -> float:
    return parse_rfc3339(text).timestamp()


def energy_of(mv_payload: dict[str, Any]) -> int | None:
    for mv in mv_payload.get("meterValue", []):
        for sv in mv.get("sampledValue", []):
            if sv.get("measurand", ENERGY) == ENERGY:
                return int(float(sv["value"]))
    return None


def mv_context(mv_payload: dict[str, Any]) -> str | None:
    for mv in mv_payload.get("meterValue", []):
        for sv in mv.get("sampledValue", []):
            return str(sv.get("context", "Sample.Periodic"))
    return None


def mv_stamp(mv_payload: dict[str, Any]) -> str:
    return str(mv_payload["meterValue"][0]["timestamp"])


def event_stamp(action: str, payload: dict[str, Any]) -> str:
    return mv_stamp(payload) if action == "MeterValues" else str(payload["timestamp"])


class Outbox:
    """Read-only view of the daemon's on-disk queue (the WAL is read too)."""

    def __init__(self, state_dir: Path) -> None:
        self.db = state_dir / DB_NAME

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        if not self.db.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.Error:
            return []
        finally:
            conn.close()

    def meter_values(self) -> set[tuple[int, str]]:
        return {(int(json.loads(p)["connectorId"]), mv_stamp(json.loads(p)))
                for (p,) in self._rows("SELECT payload FROM outbox WHERE action = 'MeterValues'")}

    def rows(self) -> list[tuple[int, str, dict[str, Any]]]:
        return [(int(s), a, json.loads(p)) for s, a, p in self._rows("SELECT seq, action, payload FROM outbox ORDER BY seq")]

    def last_seq(self) -> int:
        rows = self._rows("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
        return int(rows[0][0]) if rows else 0

    def sizes(self) -> tuple[int, int]:
        def size(p: Path) -> int:
            try:
                return p.stat().st_size
            except FileNotFoundError:
                return 0
        return size(self.db), size(self.db.with_name(self.db.name + "-wal"))


# ------------------------------------------------------------------ one combination


@dataclass
class Tx:
    """One transaction as the bench drove it; ``samples`` = sim wall times a periodic sample was due."""

    name: str
    tag: str
    connector: int
    started_at: float  # sim wall (epoch s) when the bench started it
    started_online: bool
    next_due: float  # bench sim seconds
    samples: list[float] = field(default_factory=list)
    stopped_at: float | None = None
    stop_online: bool | None = None


class Scenario:
    """What every scenario shares: the daemon, the CSMS, the simulated clock, failures."""

    name = "scenario"

    def __init__(self, result: Result, tmp: Path, verbose: bool) -> None:
        self.result = result
        self.tmp = tmp
        self.verbose = verbose
        self.sim = SimTime()
        self.t = 0.0  # simulated seconds since the scenario began
        self.online = False
        self.counts = ScenarioCounts(self.name)
        self.port = free_port()
        self.links: list[tuple[float, float | None]] = []  # (up, down) sim wall epoch intervals

    def fail(self, text: str) -> None:
        self.result.failures.append(Failure(self.counts.name, text))
        self.counts.failures += 1
        if self.verbose:
            print(f"  FAIL {text}", flush=True)

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"  [{self.counts.name} t={self.t / 3600:6.2f} h] {text}", flush=True)

    def now(self) -> float:
        return self.sim.now().timestamp()

    def online_at(self, when: float) -> bool:
        return any(up <= when and (down is None or when < down) for up, down in self.links)

    async def link_up(self) -> None:
        await self.d.until(lambda s: s["link"] == "connected", timeout_s=30, what="boot accepted")
        self.online = True
        self.links.append((self.now(), None))

    async def outage(self) -> None:
        await self.csms.stop()
        await self.d.until(lambda s: s["link"] != "connected", timeout_s=30, what="link down")
        self.online = False
        up, _ = self.links[-1]
        self.links[-1] = (up, self.now())

    async def back(self) -> None:
        for attempt in range(50):  # the port is free again unless another process took it meanwhile
            try:
                await self.csms.start()
                break
            except OSError:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.2)
        await self.link_up()

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.sim.advanced += seconds
        self.d.advance(seconds)

    async def start_tx(self, name: str, tag: str, connector: int, interval: float) -> Tx:
        self.d.plug(connector)
        self.d.badge(tag)

        def started(s: dict[str, Any]) -> bool:
            c = s["connectors"][connector - 1]
            return c["id_tag"] == tag and c["status"] in ("Charging", "SuspendedEV", "SuspendedEVSE")
        await self.d.until(started, timeout_s=15, what=f"transaction {name} started on connector {connector}")
        return Tx(name, tag, connector, self.now(), self.online, self.t + interval)

    async def stop_tx(self, tx: Tx, how: str = "badge") -> None:
        if how == "badge":
            self.d.badge(tx.tag)
        else:
            self.d.unplug(tx.connector)
        await self.d.until(lambda s: s["connectors"][tx.connector - 1]["id_tag"] is None, timeout_s=15,
                           what=f"transaction {tx.name} stopped")
        tx.stopped_at, tx.stop_online = self.now(), self.online
        if how == "badge":
            self.d.unplug(tx.connector)
        await self.d.until(lambda s: s["connectors"][tx.connector - 1]["status"] == "Available",
                           timeout_s=15, what=f"connector {tx.connector} available")

    async def tamper(self, connector: int) -> None:
        """Open and close a door: a queued SecurityEventNotification (TamperDetectionActivated)."""
        self.d.fault(TAMPER_DTC, connector=connector)
        await self.d.until(lambda s: s["connectors"][connector - 1]["status"] == "Faulted", what="faulted")
        self.d.fault(TAMPER_DTC, clear=True, connector=connector)
        await self.d.until(lambda s: s["connectors"][connector - 1]["status"] == "Available", what="cleared")

    def in_flight_check(self) -> None:
        """OCPP-J: at most one CALL of the charge point waiting for its answer (CallMsgInOrder)."""
        outstanding: dict[str, datetime] = {}  # unique id -> when it was sent
        records: list[Any] = sorted([*self.csms.frames(BOX), *self.csms.events(BOX)], key=lambda r: r.seq)
        for rec in records:
            if not hasattr(rec, "direction"):
                if getattr(rec, "kind", "") in ("connect", "disconnect"):
                    outstanding.clear()
                continue
            msg = rec.json()
            if not isinstance(msg, list) or len(msg) < 3:
                continue
            self.counts.frames += 1
            if rec.direction == "in" and msg[0] == 2:
                for uid, sent in list(outstanding.items()):  # the charger gave up on it (time-out)
                    if (rec.time - sent).total_seconds() >= RESPONSE_TIMEOUT_S * 0.9:
                        del outstanding[uid]
                if outstanding:
                    self.fail(f"{msg[2]} sent while {len(outstanding)} CALL(s) of ours were unanswered "
                              f"(frame #{rec.seq})")
                outstanding[msg[1]] = rec.time
            elif rec.direction == "out" and msg[0] in (3, 4):
                outstanding.pop(msg[1], None)


class Combo(Scenario):
    """One OfflineTxMsgQueueEnable x CallMsgInOrder combination through a long outage."""

    def __init__(self, result: Result, tmp: Path, verbose: bool, hours: float, rng: random.Random,
                 queue_enable: bool, in_order: bool) -> None:
        self.name = f"Queue={str(queue_enable).lower()} InOrder={str(in_order).lower()}"
        super().__init__(result, tmp, verbose)
        self.hours = hours
        self.rng = rng
        self.queue_enable = queue_enable
        self.in_order = in_order
        self.txs: list[Tx] = []
        self.running: list[Tx] = []
        self.expected_samples = 0
        self.seen_mv: set[tuple[int, str]] = set()
        self.mv_mark = 0
        self.outbox: Outbox
        self.reconnected_at = 0.0
        self.tamper_at: float | None = None

    # ------------------------------------------------------------ driving
    async def step(self, wait_s: float | None = None) -> None:
        """Advance one step; wait until every periodic sample due in it is taken (at most
        ``wait_s`` real seconds, without failing, when given)."""
        self.advance(STEP_S)
        due = [tx for tx in self.running if tx.next_due <= self.t + 1e-6]
        for tx in due:
            tx.samples.append(self.now())
            tx.next_due += ONLINE_S if self.online else OFFLINE_S
            self.expected_samples += 1
        if due and wait_s is None:
            await self.barrier(", ".join(tx.name for tx in due))
        elif due:
            end = time.monotonic() + wait_s
            while self.observed_samples() < self.expected_samples and time.monotonic() < end:
                await asyncio.sleep(0.003)

    def observed_samples(self) -> int:
        for frame in self.csms.frames(BOX, "in", since=self.mv_mark):
            msg = frame.json()
            if (isinstance(msg, list) and len(msg) == 4 and msg[0] == 2 and msg[2] == "MeterValues"
                    and mv_context(msg[3]) == "Sample.Periodic"):
                self.seen_mv.add((int(msg[3]["connectorId"]), mv_stamp(msg[3])))
            self.mv_mark = frame.seq
        return len(self.seen_mv | self.outbox.meter_values())

    async def barrier(self, what: str) -> None:
        end = time.monotonic() + 15
        while self.observed_samples() < self.expected_samples:
            if time.monotonic() > end:
                raise AssertionError(f"the periodic sample of {what} due at t={self.t:.0f} s never came "
                                     f"({self.observed_samples()} of {self.expected_samples} seen)")
            await asyncio.sleep(0.003)

    async def start(self, name: str, connector: int) -> Tx:
        tx = await self.start_tx(name, f"OUT{name}{self.rng.randrange(10_000):04d}", connector,
                                 ONLINE_S if self.online else OFFLINE_S)
        self.txs.append(tx)
        self.running.append(tx)
        self.say(f"{name} started on connector {connector} ({'online' if self.online else 'offline'})")
        return tx

    async def stop(self, tx: Tx, how: str) -> None:
        await self.stop_tx(tx, how)
        self.running.remove(tx)
        self.say(f"{tx.name} stopped by {how} ({'online' if self.online else 'offline'})")

    async def run(self) -> None:
        t0 = time.monotonic()
        keys = {
            "MeterValueSampleInterval": ONLINE_S, "disconnectedMeterValueSampleInterval": OFFLINE_S,
            "ClockAlignedDataInterval": 0, "OfflineTxMsgQueueEnable": self.queue_enable,
            "CallMsgInOrder": self.in_order,
            "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import",
            "StopTxnSampledData": ENERGY,  # transactionData: Begin, every periodic sample, End
        }
        with csms_on_sim_time(self.sim):
            async with CentralSystem("127.0.0.1", self.port, heartbeat_interval_s=HEARTBEAT_S,
                                     max_records=2_000_000) as csms:
                self.csms = csms
                self.d = Daemon(self.tmp, csms.url, keys=keys)
                self.d.config.write_text(self.d.config.read_text().replace(
                    "response_timeout_s = 5", f"response_timeout_s = {RESPONSE_TIMEOUT_S}"))
                self.outbox = Outbox(self.d.state_dir)
                try:
                    await self.d.start()
                    await self.link_up()
                    await self.drive()
                except AssertionError as e:
                    self.fail(f"harness step failed: {str(e).splitlines()[0]}")
                    self.fail("daemon log tail:\n    " + self.d.log_tail(15).replace("\n", "\n    "))
                finally:
                    if self.d.proc is not None and self.d.proc.returncode is None:
                        await self.d.stop()
                if not self.counts.failures:
                    self.check()
        self.counts.seconds = time.monotonic() - t0

    async def drive(self) -> None:
        outage_s = int(self.hours * 3600) // STEP_S * STEP_S
        a = await self.start("A", 1)
        b = await self.start("B", 2)
        for _ in range(PRE_S // STEP_S):
            await self.step()
        await self.outage()
        self.say("CSMS stopped")
        grid = max(1, outage_s // STEP_S)
        stop_b = self.rng.randint(grid // 5, max(grid // 5, 2 * grid // 5))
        tamper = stop_b + max(1, grid // 20)
        start_c = self.rng.randint(max(tamper + 1, grid // 2), max(tamper + 1, 7 * grid // 10))
        how_b = self.rng.choice(("badge", "unplug"))
        c: Tx | None = None
        for i in range(1, grid + 1):
            await self.step()
            if i == stop_b:
                await self.stop(b, how_b)
            elif i == tamper:
                await self.tamper(2)
                self.tamper_at = self.now()
            elif i == start_c:
                c = await self.start("C", 2)
        if c is None:  # very short outages
            c = await self.start("C", 2)
        self.reconnected_at = self.now()
        # hiccups during the replay: the CSMS leaves the first MeterValues unanswered (the
        # daemon must send it again); a sample is taken meanwhile (with the queue off it goes
        # beside the backlog, waiting for the link's one CALL in flight); then the link
        # flaps: the CSMS is away again for FLAP_STEPS steps
        self.csms.respond("MeterValues", no_reply=True, once=True)
        mark = self.csms.mark()
        await self.back()
        self.say("CSMS back")
        self.resume()
        await self.csms.wait_for("MeterValues", since=mark, timeout=15)  # the unanswered one is out
        # the sample must be safe before the link goes, wherever it waits (on disk, or for
        # the link); a daemon that keeps it only in memory gets half a second, then loses
        # it: the barrier after the flap fails
        await self.step(wait_s=0.5)
        await self.outage()
        self.say("CSMS away again (flap)")
        for _ in range(FLAP_STEPS):
            await self.step()
        await self.back()
        self.say("CSMS back again")
        self.resume()
        for _ in range(POST_S // STEP_S - 1 - FLAP_STEPS):
            await self.step()
        await self.stop(a, self.rng.choice(("badge", "unplug")))
        await self.stop(c, self.rng.choice(("badge", "unplug")))
        await self.drain()

    def resume(self) -> None:
        for tx in self.running:  # back online: the next sample comes within MeterValueSampleInterval
            tx.next_due = min(tx.next_due, self.t + ONLINE_S)

    async def drain(self) -> None:
        """Wait for the queue to empty; time goes on meanwhile (a retry is due in simulated time)."""
        end = time.monotonic() + 60
        while (queued := self.d.status()["queued_messages"]) > 0:
            if time.monotonic() > end:
                raise AssertionError(f"{queued} messages still queued a minute after the outage")
            await asyncio.sleep(0.25)
            if self.d.status()["queued_messages"] == queued:  # no progress: let time pass
                self.advance(10)

    # ------------------------------------------------------------ checks
    def check(self) -> None:
        csms = self.csms
        r = self.counts
        calls = self.without_resends(csms.calls(identity=BOX))
        tx_id: dict[str, int] = {}
        by_id: dict[int, Tx] = {}
        r.transactions = len(self.txs)
        # ---- StartTransaction: exactly once each, its transactionId kept
        for tx in self.txs:
            starts = [c for c in calls if c.action == "StartTransaction" and c.payload["idTag"] == tx.tag]
            r.messages += len(starts)
            if len(starts) != 1:
                self.fail(f"{tx.name}: {len(starts)} StartTransaction (expected exactly 1)")
                continue
            reply = csms.reply_to(starts[0])
            msg = reply.json() if reply is not None else None
            if not (msg and msg[0] == 3 and isinstance(msg[2].get("transactionId"), int)):
                self.fail(f"{tx.name}: StartTransaction not answered with a transactionId")
                continue
            tx_id[tx.name] = msg[2]["transactionId"]
            by_id[msg[2]["transactionId"]] = tx
            for alias in self.start_aliases.get(tx.tag, []):  # a re-sent start's answer
                by_id[alias] = tx
            if starts[0].payload["connectorId"] != tx.connector:
                self.fail(f"{tx.name}: started on connector {starts[0].payload['connectorId']}, not {tx.connector}")
            if abs(ts(starts[0].payload["timestamp"]) - tx.started_at) > TOL_S:
                self.fail(f"{tx.name}: StartTransaction timestamp {starts[0].payload['timestamp']} is not "
                          f"the time it started")
        # ---- StopTransaction: exactly once per transaction, with its id
        stops: dict[int, list[Any]] = defaultdict(list)
        for c in calls:
            if c.action == "StopTransaction":
                r.messages += 1
                stops[int(c.payload.get("transactionId", -1))].append(c)
        for i in stops:
            if i not in by_id:
                self.fail(f"StopTransaction for transactionId {i}, which no StartTransaction got")
        for tx in self.txs:
            if tx.name not in tx_id:
                continue
            got = [c for i, tx2 in by_id.items() if tx2 is tx for c in stops.get(i, [])]
            if len(got) != 1:
                self.fail(f"{tx.name}: {len(got)} StopTransaction (expected exactly 1)")
                continue
            if tx.stopped_at is not None and abs(ts(got[0].payload["timestamp"]) - tx.stopped_at) > TOL_S:
                self.fail(f"{tx.name}: StopTransaction timestamp {got[0].payload['timestamp']} is not "
                          f"the time it stopped")
        # ---- MeterValues: all belong to a transaction, none twice, spacing per link state
        series: dict[str, list[Any]] = defaultdict(list)
        for c in calls:
            if c.action != "MeterValues":
                continue
            r.messages += 1
            r.meter_values += 1
            i = c.payload.get("transactionId")
            tx = by_id.get(i) if isinstance(i, int) else None
            if tx is None:
                self.fail(f"MeterValues with transactionId {i!r}, which is no transaction of ours: "
                          f"{json.dumps(c.payload)[:160]}")
                continue
            if c.payload["connectorId"] != tx.connector:
                self.fail(f"{tx.name}: MeterValues on connector {c.payload['connectorId']}")
            series[tx.name].append(c)
            if not self.online_at(ts(mv_stamp(c.payload))):
                r.offline_meter_values += 1
        for tx in self.txs:
            self.check_series(tx, series.get(tx.name, []), calls, tx_id)
        self.check_order(calls, by_id)
        self.check_security_events(calls)
        self.check_statuses(calls)
        self.in_flight_check()

    def without_resends(self, calls: list[Any]) -> list[Any]:
        """The CALLs with identical re-sends of a queued message dropped, where the CSMS did not
        answer the earlier copy or a link loss came between the copies (its answer was lost:
        OCPP's at-least-once). Anything else that arrives twice stays, and the checks below
        fail on it."""
        lost = [e.seq for e in self.csms.events(BOX, "disconnect")]
        first: dict[tuple[Any, ...], Any] = {}
        out = []
        self.start_aliases: dict[str, list[int]] = defaultdict(list)
        for c in calls:
            if c.action not in (*TX_ACTIONS, "SecurityEventNotification"):
                out.append(c)
                continue
            body = {k: v for k, v in c.payload.items() if k != "transactionId"}
            key = (c.action, json.dumps(body, sort_keys=True))
            prev = first.get(key)
            if prev is None or (self.csms.reply_to(prev) is not None
                                and not any(prev.seq < d < c.seq for d in lost)):
                first[key] = c
                out.append(c)
                continue
            self.counts.resent += 1
            if c.action == "StartTransaction":
                reply = self.csms.reply_to(c)
                msg = reply.json() if reply is not None else None
                if msg and msg[0] == 3 and isinstance(msg[2].get("transactionId"), int):
                    self.start_aliases[c.payload["idTag"]].append(msg[2]["transactionId"])
        return out

    def check_series(self, tx: Tx, mvs: list[Any], calls: list[Any], tx_id: dict[str, int]) -> None:
        stamps = [ts(mv_stamp(m.payload)) for m in mvs if mv_context(m.payload) == "Sample.Periodic"]
        if len(set(stamps)) != len(stamps):
            self.fail(f"{tx.name}: {len(stamps) - len(set(stamps))} MeterValues delivered twice")
        ordered = sorted(set(stamps))
        # none missing, none extra: one per due sample the bench stepped over
        if len(ordered) != len(tx.samples):
            self.fail(f"{tx.name}: {len(ordered)} periodic MeterValues, {len(tx.samples)} expected")
        for got, want in zip(ordered, tx.samples):
            if abs(got - want) > TOL_S:
                self.fail(f"{tx.name}: a sample at {rfc3339(datetime.fromtimestamp(got, UTC))}, expected "
                          f"{rfc3339(datetime.fromtimestamp(want, UTC))}")
                break
        # the spacing the keys ask for, from the link state at each sample (model-free)
        points = [tx.started_at, *ordered]
        bad = 0
        for t1, t2 in itertools.pairwise(points):
            interval = ONLINE_S if self.online_at(t1) else OFFLINE_S
            want = t1 + interval
            ups = [up for up, _ in self.links if t1 < up < t2]
            if ups and interval == OFFLINE_S:
                want = min(want, ups[0] + ONLINE_S)  # back online: within MeterValueSampleInterval
            if abs(t2 - want) > TOL_S:
                bad += 1
                if bad > 3:
                    continue
                self.fail(f"{tx.name}: {t2 - t1:.0f} s between samples at "
                          f"{rfc3339(datetime.fromtimestamp(t1, UTC))} and "
                          f"{rfc3339(datetime.fromtimestamp(t2, UTC))} ({'online' if self.online_at(t1) else 'offline'}"
                          f", expected {want - t1:.0f} s)")
        if bad > 3:
            self.fail(f"{tx.name}: {bad - 3} more samples at the wrong spacing")
        if tx.stopped_at is not None and points:
            last = points[-1]
            interval = ONLINE_S if self.online_at(last) else OFFLINE_S
            if tx.stopped_at - last > interval + TOL_S:
                self.fail(f"{tx.name}: no sample in the last {tx.stopped_at - last:.0f} s before its stop")
        # energy: from meterStart up, never down, to meterStop
        if tx.name not in tx_id:
            return
        start = next(c for c in calls if c.action == "StartTransaction" and c.payload["idTag"] == tx.tag)
        stop = next((c for c in calls if c.action == "StopTransaction"
                     and c.payload.get("transactionId") == tx_id[tx.name]), None)
        energies = [(ts(mv_stamp(m.payload)), energy_of(m.payload)) for m in mvs]
        energies = [(t, e) for t, e in sorted(energies) if e is not None]
        lo = start.payload["meterStart"]
        for t, e in energies:
            if e < lo:
                self.fail(f"{tx.name}: energy {e} Wh at {t:.0f} below an earlier {lo} Wh")
                break
            lo = e
        if stop is not None and stop.payload["meterStop"] < lo:
            self.fail(f"{tx.name}: meterStop {stop.payload['meterStop']} < the last MeterValues {lo} Wh")
        if stop is not None:
            self.check_transaction_data(tx, stop.payload, start.payload, ordered)

    def check_transaction_data(self, tx: Tx, stop: dict[str, Any], start: dict[str, Any],
                               periodic: list[float]) -> None:
        """StopTxnSampledData (R-TX 3): Transaction.Begin, one entry per periodic sample (the
        same instants as the MeterValues, offline ones too), Transaction.End."""
        data = stop.get("transactionData") or []
        contexts = [str(e["sampledValue"][0].get("context")) for e in data if e.get("sampledValue")]
        if not contexts or contexts[0] != "Transaction.Begin" or contexts[-1] != "Transaction.End":
            self.fail(f"{tx.name}: transactionData contexts {contexts[:3]}...{contexts[-2:]} do not run "
                      f"from Transaction.Begin to Transaction.End")
            return
        begin, end = ts(data[0]["timestamp"]), ts(data[-1]["timestamp"])
        if abs(begin - ts(start["timestamp"])) > TOL_S or abs(end - ts(stop["timestamp"])) > TOL_S:
            self.fail(f"{tx.name}: transactionData Begin/End not at the start/stop")
        samples = [ts(e["timestamp"]) for e, c in zip(data, contexts) if c == "Sample.Periodic"]
        if len(samples) != len(periodic) or any(abs(a - b) > 1.0 for a, b in zip(samples, periodic)):
            self.fail(f"{tx.name}: transactionData has {len(samples)} periodic entries, the MeterValues "
                      f"{len(periodic)} (or at other times)")
        self.counts.transaction_data += len(data)

    def check_order(self, calls: list[Any], by_id: dict[int, Tx]) -> None:
        """OfflineTxMsgQueueEnable true: every transaction message in the order it arose (one
        queue). False (guide: 'the offline MV upload will be more efficient by concurrent
        with online MVs'): what was queued while offline (and every Start/Stop) is still
        delivered, in order; MeterValues taken online go out beside whatever is queued, so
        they may overtake it, or (when their call fails) come later in their turn."""
        tx_msgs = [(c, ts(event_stamp(c.action, c.payload))) for c in calls if c.action in TX_ACTIONS]
        back = self.reconnected_at

        def online_mv(c: Any, t: float) -> bool:
            return c.action == "MeterValues" and self.online_at(t)

        newest: tuple[Any, float] | None = None  # the newest message so far that must keep its place
        for c, t in tx_msgs:
            if newest is not None and t < newest[1] - 1.0:
                def what(c: Any, t: float) -> str:
                    born = "online" if self.online_at(t) else "offline"
                    return (f"{c.action} #{c.seq} (transaction {c.payload.get('transactionId', '-')}, "
                            f"{born} at {rfc3339(datetime.fromtimestamp(t, UTC))})")
                self.fail(f"transaction messages out of order: {what(c, t)} delivered after {what(*newest)}")
                break
            if (self.queue_enable or not online_mv(c, t)) and (newest is None or t > newest[1]):
                newest = (c, t)
        if self.queue_enable:
            return
        # (an online MeterValues whose StartTransaction was still queued has no transactionId
        # yet and queues behind the backlog; the next one may then overtake it: the "price
        # of strict order" of this mode, so online MeterValues are not checked for order)
        last_offline = max((c.seq for c, t in tx_msgs if not self.online_at(t)), default=0)
        self.counts.concurrent = sum(1 for c, t in tx_msgs if online_mv(c, t) and t > back and c.seq < last_offline)
        if self.counts.concurrent == 0:
            self.counts.note = ("no online MeterValues overtook the backlog in this run "
                                "(the replay finished before the first online sample)")

    def check_security_events(self, calls: list[Any]) -> None:
        events = [c for c in calls if c.action == "SecurityEventNotification"]
        self.counts.messages += len(events)
        keys = [(c.payload["type"], c.payload["timestamp"]) for c in events]
        if len(set(keys)) != len(keys):
            self.fail(f"{len(keys) - len(set(keys))} security events delivered twice")
        startups = [c for c in events if c.payload["type"] == "StartupOfTheDevice"]
        if len(startups) != 1:
            self.fail(f"{len(startups)} StartupOfTheDevice events (expected 1)")
        tampers = [c for c in events if c.payload["type"] == "TamperDetectionActivated"]
        if self.tamper_at is not None:
            if len(tampers) != 1:
                self.fail(f"{len(tampers)} TamperDetectionActivated delivered (expected the 1 raised offline)")
            elif abs(ts(tampers[0].payload["timestamp"]) - self.tamper_at) > TOL_S:
                self.fail("the offline TamperDetectionActivated carries the wrong timestamp")
            elif self.queue_enable:
                # one queue: between the transaction messages of its time
                seq = tampers[0].seq
                t = ts(tampers[0].payload["timestamp"])
                before = [c for c in calls if c.action in TX_ACTIONS and c.seq < seq]
                after = [c for c in calls if c.action in TX_ACTIONS and c.seq > seq]
                if any(ts(event_stamp(c.action, c.payload)) > t + 1 for c in before) or any(
                        ts(event_stamp(c.action, c.payload)) < t - 1 for c in after):
                    self.fail("the offline security event was not delivered in its place in the queue")

    def check_statuses(self, calls: list[Any]) -> None:
        """Back online, the CSMS learns every connector's current status (R-STATUS 1)."""
        back = next((c.seq for c in calls if c.action == "BootNotification"
                     and ts(csms_reply_time(self.csms, c)) >= self.reconnected_at - 1), None)
        if back is None:
            self.fail("no BootNotification after the outage")
            return
        after = [c for c in calls if c.action == "StatusNotification" and c.seq > back]
        for cid in (1, 2):
            first = next((c for c in after if c.payload["connectorId"] == cid), None)
            if first is None:
                self.fail(f"no StatusNotification for connector {cid} after the outage")
            elif first.payload["status"] not in ("Charging", "SuspendedEV", "SuspendedEVSE"):
                self.fail(f"connector {cid} reported {first.payload['status']} after the outage "
                          f"(a transaction runs on it)")


def csms_reply_time(csms: CentralSystem, call: Any) -> str:
    reply = csms.reply_to(call)
    msg = reply.json() if reply is not None else None
    if msg and msg[0] == 3 and isinstance(msg[2], dict) and "currentTime" in msg[2]:
        return str(msg[2]["currentTime"])
    return "1970-01-01T00:00:00Z"


# ------------------------------------------------------------------ the disk bound


@dataclass
class Queued:
    kind: str  # "SE" | "MV" | "Start" | "Stop"
    at: float  # sim wall epoch s
    tx: str | None = None

    @property
    def protected(self) -> bool:
        return self.kind in ("Start", "Stop")


class DiskBound(Scenario):
    """[queue] max_messages = DISK_BOUND; two outages fill it past the bound.

    Outage 1: MeterValues + Start/Stop stay within the bound, security events push it over:
    only the oldest security events may go. Outage 2: MeterValues alone pass the bound: every
    security event goes, then the oldest MeterValues; Start/Stop never. After each outage the
    messages the CSMS gets are compared one by one with the survivors of that policy.
    """

    name = f"disk bound ({DISK_BOUND} messages)"

    def __init__(self, result: Result, tmp: Path, verbose: bool, rng: random.Random) -> None:
        super().__init__(result, tmp, verbose)
        self.rng = rng
        self.model: list[Queued] = []
        self.enqueued = 0
        self.max_count = 0
        self.max_db = (0, 0)
        self.tx_no = 0
        self.base_db = 0
        self.running: str | None = None  # the idTag of the transaction on connector 1
        self.due = 0.0  # its next periodic sample (bench sim seconds)

    def enqueue(self, item: Queued) -> None:
        self.model.append(item)
        self.enqueued += 1
        while len(self.model) > DISK_BOUND:  # the policy under test, as the issue states it
            victim = next((q for q in self.model if q.kind == "SE"), None) or next(
                (q for q in self.model if not q.protected), None)
            if victim is None:
                break
            self.model.remove(victim)
            self.counts.dropped += 1

    async def settle(self) -> None:
        """Wait until the daemon has queued all the bench expects (AUTOINCREMENT seq)."""
        end = time.monotonic() + 15
        while self.outbox.last_seq() < self.base_seq + self.enqueued:
            if time.monotonic() > end:
                raise AssertionError(f"the daemon queued {self.outbox.last_seq() - self.base_seq} messages "
                                     f"during the outage, the bench expected {self.enqueued}")
            await asyncio.sleep(0.003)
        count = int(self.d.status()["queued_messages"])
        self.max_count = max(self.max_count, count)
        if count > DISK_BOUND:
            self.fail(f"{count} messages queued, more than the bound {DISK_BOUND}")
        db, wal = self.outbox.sizes()
        self.max_db = (max(self.max_db[0], db), max(self.max_db[1], wal))

    async def step(self) -> None:
        self.advance(DISK_STEP_S)
        if self.running is not None and self.due <= self.t + 1e-6:
            self.enqueue(Queued("MV", self.now(), self.running))
            self.due += DISK_STEP_S
        await self.settle()

    async def new_tx(self) -> None:
        self.tx_no += 1
        tag = f"DISK{self.tx_no:04d}"
        self.d.plug(1)
        self.d.badge(tag)
        await self.d.until(lambda s: s["connectors"][0]["id_tag"] == tag, what="started")
        self.running = tag
        self.due = self.t + (ONLINE_S if self.online else DISK_STEP_S)
        self.counts.transactions += 1
        if not self.online:
            self.enqueue(Queued("Start", self.now(), tag))

    async def end_tx(self) -> None:
        self.d.unplug(1)
        await self.d.until(lambda s: s["connectors"][0]["id_tag"] is None, what="stopped")
        self.running = None
        if not self.online:
            self.enqueue(Queued("Stop", self.now()))

    async def door(self) -> None:
        self.d.fault(TAMPER_DTC, connector=2)
        self.enqueue(Queued("SE", self.now()))
        await self.d.until(lambda s: s["connectors"][1]["status"] == "Faulted", what="faulted")
        self.d.fault(TAMPER_DTC, clear=True, connector=2)
        await self.settle()

    async def run(self) -> None:
        t0 = time.monotonic()
        keys = {"MeterValueSampleInterval": ONLINE_S, "disconnectedMeterValueSampleInterval": DISK_STEP_S,
                "ClockAlignedDataInterval": 0, "MeterValuesSampledData": ENERGY}
        extra = f"\n[queue]\nmax_messages = {DISK_BOUND}\n"
        with csms_on_sim_time(self.sim):
            async with CentralSystem("127.0.0.1", self.port, heartbeat_interval_s=HEARTBEAT_S,
                                     max_records=500_000) as csms:
                self.csms = csms
                self.d = Daemon(self.tmp, csms.url, keys=keys, extra=extra)
                self.outbox = Outbox(self.d.state_dir)
                try:
                    await self.d.start()
                    await self.link_up()
                    self.base_db = self.outbox.sizes()[0]
                    if not re.search(rf"message queue: \d+ queued on disk, bound {DISK_BOUND}\b",
                                     self.d.log_path.read_text(errors="replace")):
                        self.fail(f"the daemon did not take [queue] max_messages = {DISK_BOUND} (its log "
                                  f"says: {self.bound_line()}); controller/app.py must pass "
                                  f"settings.max_queued_messages to the Charger")
                        return
                    await self.drive()
                except AssertionError as e:
                    self.fail(f"harness step failed: {str(e).splitlines()[0]}")
                    self.fail("daemon log tail:\n    " + self.d.log_tail(15).replace("\n", "\n    "))
                finally:
                    if self.d.proc is not None and self.d.proc.returncode is None:
                        await self.d.stop()
                    self.counts.seconds = time.monotonic() - t0
                self.in_flight_check()
        db, wal = self.max_db
        limit = DB_BASE_BYTES + DB_PER_MESSAGE_BYTES * DISK_BOUND
        per_message = max(0, db - self.base_db) / DISK_BOUND
        self.counts.note = (f"queue at most {self.max_count} messages (bound {DISK_BOUND}); database file at most "
                            f"{db / 1024:.0f} KiB (stated bound {limit / 1024:.0f} KiB; {self.base_db / 1024:.0f} "
                            f"KiB before the outages, so about {per_message:.0f} bytes per queued message), WAL at "
                            f"most {wal / 1024:.0f} KiB (stated bound {WAL_MAX_BYTES / 1024:.0f} KiB)")
        if db > limit:
            self.fail(f"database file grew to {db} bytes, over the stated bound {limit}")
        if wal > WAL_MAX_BYTES:
            self.fail(f"WAL grew to {wal} bytes, over the stated bound {WAL_MAX_BYTES}")

    def bound_line(self) -> str:
        lines = [ln for ln in self.d.log_path.read_text(errors="replace").splitlines() if "message queue:" in ln]
        return lines[-1].strip() if lines else "nothing about its queue"

    async def drive(self) -> None:
        await self.new_tx()
        await self.csms.wait_for("StartTransaction", timeout=10)
        # ---- outage 1: security events push the queue over the bound
        await self.outage_begin()
        steps = DISK_BOUND * 2 // 3
        for i in range(steps):
            await self.step()
            if i == steps // 3:
                await self.end_tx()
                await self.new_tx()
            await self.door()
        await self.outage_end("outage 1")
        # ---- outage 2: MeterValues alone pass it (an early Start/Stop must survive)
        await self.outage_begin()
        for i in range(DISK_BOUND + DISK_BOUND // 2):
            await self.step()
            if i in (5, 12):
                await self.end_tx()
                await self.new_tx()
            if i % 10 == 0:
                await self.door()
        await self.end_tx()
        await self.outage_end("outage 2")

    async def outage_begin(self) -> None:
        await self.outage()
        self.model = []
        self.enqueued = 0
        self.base_seq = self.outbox.last_seq()
        self.mark = self.csms.mark()

    async def outage_end(self, what: str) -> None:
        await self.back()
        self.due = min(self.due, self.t + ONLINE_S)
        await self.d.until(lambda s: s["queued_messages"] == 0, timeout_s=60, what="queue delivered")
        got = [c for c in self.csms.calls(identity=BOX) if c.seq > self.mark
               and c.action in (*TX_ACTIONS, "SecurityEventNotification")]
        kinds = {"SecurityEventNotification": "SE", "MeterValues": "MV", "StartTransaction": "Start",
                 "StopTransaction": "Stop"}
        got_kinds = [kinds[c.action] for c in got]
        want_kinds = [q.kind for q in self.model]
        self.counts.messages += len(got)
        self.counts.meter_values += got_kinds.count("MV")
        self.counts.offline_meter_values += got_kinds.count("MV")
        mv_dropped = sum(1 for q in self.model if q.kind == "MV")
        self.say(f"{what}: {len(got)} delivered: { {k: got_kinds.count(k) for k in sorted(set(got_kinds))} }; "
                 f"policy keeps {len(self.model)} of {self.enqueued}, {mv_dropped} MeterValues")
        if got_kinds != want_kinds:
            first = next((i for i, (a, b) in enumerate(zip(got_kinds, want_kinds)) if a != b),
                         min(len(got_kinds), len(want_kinds)))
            self.fail(f"{what}: delivered {len(got)} messages ({got_kinds.count('SE')} SE, "
                      f"{got_kinds.count('MV')} MV, {got_kinds.count('Start')} Start, {got_kinds.count('Stop')} "
                      f"Stop), the bound's policy keeps {len(want_kinds)} ({want_kinds.count('SE')} SE, "
                      f"{want_kinds.count('MV')} MV, {want_kinds.count('Start')} Start, "
                      f"{want_kinds.count('Stop')} Stop); first difference at #{first}")
            return
        for c, q in zip(got, self.model):
            if abs(ts(event_stamp(c.action, c.payload)) - q.at) > TOL_S:
                self.fail(f"{what}: delivered {c.action} of {event_stamp(c.action, c.payload)} where the "
                          f"policy keeps the {q.kind} of {rfc3339(datetime.fromtimestamp(q.at, UTC))}")
                return


# ------------------------------------------------------------------ run


async def run(hours: float = 24.0, seed: int = 1, verbose: bool = False, disk: bool = True,
              combos: tuple[tuple[bool, bool], ...] = ((True, True), (True, False), (False, True), (False, False)),
              ) -> Result:
    t0 = time.monotonic()
    result = Result(hours, seed)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="outage-") as tmp:
        for n, (queue_enable, in_order) in enumerate(combos):
            work = Path(tmp) / f"combo{n}"
            work.mkdir()
            combo = Combo(result, work, verbose, hours, random.Random(rng.random()), queue_enable, in_order)
            if verbose:
                print(f"{combo.name}: {hours:g} h outage", flush=True)
            result.scenarios.append(combo.counts)
            await combo.run()
        if disk:
            work = Path(tmp) / "disk"
            work.mkdir()
            scenario = DiskBound(result, work, verbose, random.Random(rng.random()))
            if verbose:
                print(f"{scenario.name}", flush=True)
            result.scenarios.append(scenario.counts)
            await scenario.run()
    result.seconds = time.monotonic() - t0
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0, help="simulated outage length (default 24)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--no-disk", action="store_true", help="skip the disk-bound scenario")
    ap.add_argument("--verbose", "-v", action="store_true")
    args = ap.parse_args()
    if args.hours * 3600 < 10 * STEP_S:
        ap.error("--hours must be at least 10 steps of 60 s")
    result = asyncio.run(run(args.hours, args.seed, args.verbose, disk=not args.no_disk))
    print(f"outage run, {args.hours:g} simulated hours, seed {args.seed}, "
          f"MeterValueSampleInterval {ONLINE_S} s, disconnectedMeterValueSampleInterval {OFFLINE_S} s")
    print(result.table())
    print(result.summary())
    for f in result.failures[:50]:
        print(f"  FAIL {f}")
    return 0 if not result.failures else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
