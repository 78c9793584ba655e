#!/usr/bin/env python3
"""Power-cut harness (issue 10, R-TX 4, R-MODEL 3): SIGKILL the real daemon at seeded random
points of full transaction life cycles and check, from what our CSMS recorded, that nothing
was lost, started twice or torn.

    python bench/powercut.py                     # 500 cycles, seed 1
    python bench/powercut.py --cycles 30 --seed 7 --verbose

One daemon (``python -m controller run``, mock drivers, sim clock, EVlink Pro DC 180 by
default) keeps its state directory for the whole run; one ``CentralSystem`` on 127.0.0.1
records every frame. Each cycle picks a kill window, drives the rig (plug / badge / clock)
or the CSMS (ChangeConfiguration, SendLocalList, SetChargingProfile) into it, kills the
daemon with SIGKILL, snapshots its SQLite state read-only, restarts it, waits until its
queue is empty and reads the config / local list / composite schedule back. At the end the
whole CSMS log is checked (see ``check_transactions``). Exit status 0 when failures = 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
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

from controller.app import DB_NAME
from controller.csms import CentralSystem
from controller.csms.server import CallErrorReceived, NotConnectedError

BOX = "CP-TEST"
SAMPLE_S = 10  # MeterValueSampleInterval (sim seconds)
PROFILE_ID = 7
SCENARIOS = (
    "authorize",        # kill while the Authorize is in flight
    "start_queued",     # kill between StartTransaction queued and its answer stored
    "meter_values",     # kill around a MeterValues
    "stop",             # kill while the StopTransaction is queued / in flight
    "change_configuration",
    "send_local_list",
    "set_charging_profile",
)
ENERGY = "Energy.Active.Import.Register"
CONFIG_CHOICES = {
    "MeterValuesSampledData": (
        "Energy.Active.Import.Register,Power.Active.Import",
        "Energy.Active.Import.Register,Power.Active.Import,SoC,Current.Import",
    ),
    "ConnectionTimeOut": ("120", "90"),
}


@dataclass
class Failure:
    cycle: int
    scenario: str
    text: str

    def __str__(self) -> str:
        return f"cycle {self.cycle} ({self.scenario}): {self.text}"


@dataclass
class Result:
    cycles: int = 0
    kills: int = 0
    messages_checked: int = 0
    transactions: int = 0
    resent_starts: int = 0
    resent_stops: int = 0
    readbacks: int = 0
    failures: list[Failure] = field(default_factory=list)
    per_scenario: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    on_disk_at_kill: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: float = 0.0

    def summary(self) -> str:
        mix = ", ".join(f"{k} {v}" for k, v in sorted(self.per_scenario.items()))
        on_disk = ", ".join(f"{k} {v}" for k, v in sorted(self.on_disk_at_kill.items())) or "none"
        return (
            f"cycles: {self.cycles}\nkills: {self.kills}\n"
            f"transactions: {self.transactions} (StartTransaction re-sent after a kill: "
            f"{self.resent_starts}, StopTransaction re-sent: {self.resent_stops})\n"
            f"messages checked: {self.messages_checked}\n"
            f"read-backs checked (config / local list / composite): {self.readbacks}\n"
            f"scenarios: {mix}\n"
            f"kills that caught a message queued on disk: {on_disk}\nfailures: {len(self.failures)}\n"
            f"time: {self.seconds:.1f} s"
        )


def energy_of(meter_values_payload: dict[str, Any]) -> list[tuple[str, int]]:
    out = []
    for mv in meter_values_payload.get("meterValue", []):
        for sv in mv.get("sampledValue", []):
            if sv.get("measurand", "Energy.Active.Import.Register") == ENERGY:
                out.append((mv["timestamp"], int(float(sv["value"]))))
    return out


def snapshot(state_dir: Path) -> dict[str, Any]:
    """What the killed daemon had on disk (read-only; the WAL is read too)."""
    db = state_dir / DB_NAME
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        def rows(sql: str) -> list[tuple[Any, ...]]:
            try:
                return conn.execute(sql).fetchall()
            except sqlite3.Error:
                return []
        return {
            "outbox": [(a, json.loads(p)) for a, p in rows("SELECT action, payload FROM outbox ORDER BY seq")],
            "transactions": rows(
                "SELECT local_id, connector_id, id_tag, meter_start_wh, started_at, transaction_id, "
                "stopped_at FROM transactions"),
            "keys": dict(rows("SELECT key, value FROM config_keys")),
            "list_size": (rows("SELECT count(*) FROM local_list") or [(None,)])[0][0],
            "list_version": int((rows("SELECT value FROM meta WHERE name = 'local_list_version'")
                                 or [(0,)])[0][0]),
            "profiles": [json.loads(p) for (p,) in rows("SELECT profile FROM charging_profiles")],
        }
    finally:
        conn.close()


class PowerCut:
    def __init__(self, cycles: int, seed: int, verbose: bool = False, model: str = "EVlink Pro DC 180"):
        self.cycles = cycles
        self.rng = random.Random(seed)
        self.verbose = verbose
        self.model = model
        self.result = Result()
        self.cycle = 0
        self.scenario = ""
        self.cycle_marks: list[tuple[int, int, str]] = []  # (cycle, first seq, scenario)
        self.expect_started: list[tuple[int, str, tuple[Any, ...]]] = []  # snapshot tx rows
        self.snap_outbox: list[tuple[int, str, str, dict[str, Any]]] = []
        self.config = {k: v[0] for k, v in CONFIG_CHOICES.items()}
        self.list_version = 0
        self.list_size = 0
        self.profile_limit: float | None = None
        self.tag_no = 0

    # -------------------------------------------------------------- helpers

    def fail(self, text: str) -> None:
        self.result.failures.append(Failure(self.cycle, self.scenario, text))
        if self.verbose:
            print(f"  FAIL {text}", flush=True)

    async def jitter(self, hi_ms: float) -> None:
        d = self.rng.uniform(0, hi_ms) / 1000
        if d:
            await asyncio.sleep(d)

    def conn1(self) -> dict[str, Any]:
        return self.d.connector(1)

    def after_kill(self) -> dict[str, Any]:
        self.result.kills += 1
        snap = snapshot(self.d.state_dir)
        for row in snap.get("transactions", []):
            self.expect_started.append((self.cycle, self.scenario, row))
        for action in {a for a, _ in snap.get("outbox", [])}:
            self.result.on_disk_at_kill[action] += 1
        for action, payload in snap.get("outbox", []):
            self.snap_outbox.append((self.cycle, self.scenario, action, payload))
        return snap

    async def kill_and_restart(self) -> dict[str, Any]:
        if self.d.proc is not None and self.d.proc.returncode is None:
            await self.d.kill9()
        snap = self.after_kill()
        await self.d.start()
        await self.d.until(lambda s: s["link"] == "connected", timeout_s=20, what="reconnected")
        await self.d.until(
            lambda s: s["queued_messages"] == 0 and all(c["transaction_id"] is None for c in s["connectors"]),
            timeout_s=20, what="queue drained, transactions closed after restart")
        return snap

    async def idle(self) -> None:
        """No transaction, connector 1 unplugged, nothing queued."""
        st = self.d.status()
        c = st["connectors"][0]
        if c["transaction_id"] is not None:
            self.d.badge(c["id_tag"])
            await self.d.until(lambda s: s["connectors"][0]["transaction_id"] is None, what="stopped")
        if self.conn1()["plugged"]:
            self.d.unplug(1)
        await self.d.until(lambda s: s["queued_messages"] == 0
                           and s["connectors"][0]["status"] == "Available", what="idle")

    async def charging(self) -> str:
        self.tag_no += 1
        tag = f"PC{self.tag_no:05d}"
        mark = self.csms.mark()
        self.d.plug(1)
        self.d.badge(tag)
        await self.csms.wait_for("StartTransaction", since=mark, timeout=10)
        await self.d.until(lambda s: s["connectors"][0]["transaction_id"] is not None
                           and s["connectors"][0]["status"] == "Charging", what="charging")
        return tag

    # -------------------------------------------------------------- scenarios

    async def sc_authorize(self) -> None:
        self.tag_no += 1
        mark = self.csms.mark()
        self.d.plug(1)
        self.d.badge(f"PC{self.tag_no:05d}")
        how = self.rng.choice(("now", "jitter", "seen"))
        if how == "jitter":
            await self.jitter(40)
        elif how == "seen":
            await self.csms.wait_for("Authorize", since=mark)
            await self.jitter(5)
        await self.kill_and_restart()

    async def sc_start_queued(self) -> None:
        self.tag_no += 1
        mark = self.csms.mark()
        how = self.rng.choice(("no_reply", "after_authorize", "seen"))
        if how == "no_reply":
            self.csms.respond("StartTransaction", no_reply=True, once=True)
        self.d.plug(1)
        self.d.badge(f"PC{self.tag_no:05d}")
        if how == "after_authorize":
            auth = await self.csms.wait_for("Authorize", since=mark)
            while self.csms.reply_to(auth) is None:
                await asyncio.sleep(0.0005)
            await self.jitter(15)
        else:
            await self.csms.wait_for("StartTransaction", since=mark)
            await self.jitter(8 if how == "seen" else 30)
        await self.kill_and_restart()
        self.csms.clear_responses("StartTransaction")

    async def sc_meter_values(self) -> None:
        await self.charging()
        for _ in range(self.rng.randint(0, 2)):
            mark = self.csms.mark()
            self.d.advance(SAMPLE_S)
            await self.csms.wait_for("MeterValues", since=mark)
        mark = self.csms.mark()
        how = self.rng.choice(("now", "jitter", "seen", "no_reply"))
        if how == "no_reply":
            self.csms.respond("MeterValues", no_reply=True, once=True)
        self.d.advance(SAMPLE_S)
        if how == "jitter":
            await self.jitter(20)
        elif how in ("seen", "no_reply"):
            await self.csms.wait_for("MeterValues", since=mark)
            await self.jitter(5)
        await self.kill_and_restart()
        self.csms.clear_responses("MeterValues")

    async def sc_stop(self) -> None:
        tag = await self.charging()
        if self.rng.random() < 0.5:
            mark = self.csms.mark()
            self.d.advance(SAMPLE_S)
            await self.csms.wait_for("MeterValues", since=mark)
        mark = self.csms.mark()
        how = self.rng.choice(("now", "jitter", "seen", "no_reply"))
        if how == "no_reply":
            self.csms.respond("StopTransaction", no_reply=True, once=True)
        if self.rng.random() < 0.5:
            self.d.badge(tag)
        else:
            self.d.unplug(1)  # StopTransactionOnEVSideDisconnect (default true)
        if how == "jitter":
            await self.jitter(20)
        elif how in ("seen", "no_reply"):
            await self.csms.wait_for("StopTransaction", since=mark)
            await self.jitter(5)
        await self.kill_and_restart()
        self.csms.clear_responses("StopTransaction")

    async def sc_power_fail(self) -> None:
        """StarCharge: the power-fail signal (hold-up time), then the power goes: sometimes
        after the daemon's own clean exit, sometimes before it sent the StopTransaction."""
        await self.charging()
        if self.rng.random() < 0.5:
            mark = self.csms.mark()
            self.d.advance(SAMPLE_S)
            await self.csms.wait_for("MeterValues", since=mark)
        how = self.rng.choice(("exit", "now", "jitter", "jitter"))
        self.d.rig(cmd="power-fail")
        if how == "exit":
            try:
                await self.d.wait_exit(10)
            except TimeoutError:
                self.fail("the daemon did not exit within 10 s of the power-fail signal")
        elif how == "jitter":
            await self.jitter(30)
        await self.kill_and_restart()

    async def _call_then_kill(self, action: str, payload: dict[str, Any], max_delay_ms: float
                              ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Send a CALL, kill after a random delay; returns (snapshot, answer if it came first)."""
        task = asyncio.create_task(self.csms.call(BOX, action, payload, timeout=10))
        if self.rng.random() < 0.3:
            await asyncio.sleep(0)  # the frame is (being) written
        else:
            await self.jitter(max_delay_ms)
        answer = task.result() if task.done() and not task.exception() else None
        await self.d.kill9()
        try:
            await task
        except (NotConnectedError, TimeoutError, CallErrorReceived):
            pass
        if answer is None and task.done() and not task.cancelled() and task.exception() is None:
            answer = task.result()  # answered while the kill was on its way: still counts
        snap = self.after_kill()
        await self.d.start()
        await self.d.until(lambda s: s["link"] == "connected", timeout_s=20, what="reconnected")
        await self.d.until(lambda s: s["queued_messages"] == 0 and all(
            c["transaction_id"] is None for c in s["connectors"]), timeout_s=20, what="drained")
        return snap, answer

    async def maybe_charging(self) -> None:
        if self.rng.random() < 0.4:
            await self.charging()

    async def sc_change_configuration(self) -> None:
        await self.maybe_charging()
        key = self.rng.choice(sorted(CONFIG_CHOICES))
        old = self.config[key]
        new = next(v for v in CONFIG_CHOICES[key] if v != old)
        snap, answer = await self._call_then_kill("ChangeConfiguration", {"key": key, "value": new}, 15)
        got = (await self.csms.call(BOX, "GetConfiguration", {"key": [key]}))["configurationKey"]
        value = got[0]["value"] if got else None
        self.result.readbacks += 1
        if value not in (old, new):
            self.fail(f"{key} read back {value!r}: neither old {old!r} nor new {new!r} (torn)")
        elif answer is not None and answer.get("status") == "Accepted" and value != new:
            self.fail(f"{key}: ChangeConfiguration answered Accepted before the kill, "
                      f"but {value!r} (old) came back after restart")
        self.config[key] = value if value in (old, new) else old

    async def sc_send_local_list(self) -> None:
        await self.maybe_charging()
        new_version = self.list_version + 1
        size = self.rng.randint(1, 400)
        entries = [{"idTag": f"LL{new_version:04d}{i:05d}", "idTagInfo": {"status": "Accepted"}}
                   for i in range(size)]
        payload = {"listVersion": new_version, "updateType": "Full", "localAuthorizationList": entries}
        snap, answer = await self._call_then_kill("SendLocalList", payload, 40)
        version = (await self.csms.call(BOX, "GetLocalListVersion", {}))["listVersion"]
        self.result.readbacks += 1
        on_disk = (snap.get("list_version", version), snap.get("list_size"))
        if version not in (self.list_version, new_version):
            self.fail(f"GetLocalListVersion {version}: neither old {self.list_version} nor new {new_version}")
        elif snap.get("list_size") is not None and on_disk not in (
                (self.list_version, self.list_size), (new_version, size)):
            self.fail(f"local list torn on disk: version {on_disk[0]} with {snap.get('list_size')} entries "
                      f"(old: v{self.list_version}/{self.list_size}, new: v{new_version}/{size})")
        elif answer is not None and answer.get("status") == "Accepted" and version != new_version:
            self.fail(f"SendLocalList v{new_version} answered Accepted before the kill, "
                      f"but version {version} came back after restart")
        if version == new_version:
            self.list_version, self.list_size = new_version, size

    async def sc_set_charging_profile(self) -> None:
        await self.maybe_charging()
        limit = float(self.rng.choice((11000, 22000, 33000, 44000)))
        while limit == self.profile_limit:
            limit = float(self.rng.choice((11000, 22000, 33000, 44000)))
        payload = {"connectorId": 1, "csChargingProfiles": {
            "chargingProfileId": PROFILE_ID, "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
            "chargingSchedule": {"startSchedule": "2020-01-01T00:00:00Z", "chargingRateUnit": "W",
                                 "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}}}
        snap, answer = await self._call_then_kill("SetChargingProfile", payload, 15)
        comp = await self.csms.call(BOX, "GetCompositeSchedule",
                                    {"connectorId": 1, "duration": 600, "chargingRateUnit": "W"})
        self.result.readbacks += 1
        periods = (comp.get("chargingSchedule") or {}).get("chargingSchedulePeriod") or []
        got = float(periods[0]["limit"]) if periods else None
        allowed = {self.profile_limit, limit}
        if got not in allowed and not (self.profile_limit is None and got is not None and got > 44000):
            self.fail(f"composite limit {got} after restart: neither old {self.profile_limit} nor new {limit}")
        elif answer is not None and answer.get("status") == "Accepted" and got != limit:
            self.fail(f"SetChargingProfile {limit} W answered Accepted before the kill, "
                      f"but the composite says {got} after restart")
        if got == limit:
            self.profile_limit = limit

    # -------------------------------------------------------------- run

    async def run(self) -> Result:
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="powercut-") as tmp:
            async with CentralSystem("127.0.0.1", 0, max_records=5_000_000) as csms:
                self.csms = csms
                self.d = Daemon(Path(tmp), csms.url, model=self.model, keys={
                    "MeterValueSampleInterval": SAMPLE_S, "LocalAuthListEnabled": True,
                    "MeterValuesSampledData": self.config["MeterValuesSampledData"],
                })
                try:
                    await self.d.start()
                    await self.d.until(lambda s: s["link"] == "connected", timeout_s=20, what="boot")
                    for self.cycle in range(1, self.cycles + 1):
                        choices = SCENARIOS + (("power_fail",) if "StarCharge" in self.model else ())
                        self.scenario = self.rng.choice(choices)
                        self.result.per_scenario[self.scenario] += 1
                        self.cycle_marks.append((self.cycle, csms.mark(), self.scenario))
                        if self.verbose:
                            print(f"cycle {self.cycle}: {self.scenario}", flush=True)
                        try:
                            await self.idle()
                            await getattr(self, f"sc_{self.scenario}")()
                        except AssertionError as e:
                            self.fail(f"harness step failed: {str(e).splitlines()[0]}")
                            tail = self.d.log_tail(15)
                            self.result.failures[-1].text += "\n    " + tail.replace("\n", "\n    ")
                            if self.d.proc is None or self.d.proc.returncode is not None:
                                await self.d.start()
                        self.result.cycles += 1
                    await self.idle()
                    self.check_transactions()
                finally:
                    if self.d.proc is not None and self.d.proc.returncode is None:
                        await self.d.stop()
        self.result.seconds = time.monotonic() - t0
        return self.result

    def cycle_of(self, seq: int) -> tuple[int, str]:
        found = (0, "boot")
        for cycle, mark, scenario in self.cycle_marks:
            if seq > mark:
                found = (cycle, scenario)
        return found

    def check_transactions(self) -> None:
        """The whole CSMS log, transaction by transaction."""
        csms, r = self.csms, self.result
        self.scenario = "final check"
        self.cycle = 0
        starts: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
        ids: dict[tuple[Any, ...], set[int]] = defaultdict(set)
        for rec in csms.calls("StartTransaction"):
            r.messages_checked += 1
            p = rec.payload
            key = (p["connectorId"], p["idTag"], p["meterStart"], p["timestamp"])
            starts[key].append(rec)
            reply = csms.reply_to(rec)
            msg = reply.json() if reply is not None else None
            if msg and msg[0] == 3:
                ids[key].add(int(msg[2]["transactionId"]))
        r.transactions = len(starts)
        r.resent_starts = sum(len(v) - 1 for v in starts.values())
        # none started twice: one badge per cycle starts at most one transaction
        per_cycle: dict[int, set[Any]] = defaultdict(set)
        for key, recs in starts.items():
            per_cycle[self.cycle_of(recs[0].seq)[0]].add(key)
        for cycle, keys in per_cycle.items():
            if len(keys) > 1:
                self.result.failures.append(Failure(cycle, self.cycle_of_scn(cycle),
                    f"{len(keys)} different StartTransactions in one cycle: {sorted(keys)}"))
        stops_by_id: dict[int, list[Any]] = defaultdict(list)
        for rec in csms.calls("StopTransaction"):
            r.messages_checked += 1
            stops_by_id[int(rec.payload.get("transactionId", -1))].append(rec)
        mvs_by_id: dict[int, list[Any]] = defaultdict(list)
        for rec in csms.calls("MeterValues"):
            r.messages_checked += 1
            if "transactionId" in rec.payload:
                mvs_by_id[int(rec.payload["transactionId"])].append(rec)
        used_ids: set[int] = set()
        for key, recs in starts.items():
            cycle, scn = self.cycle_of(recs[0].seq)
            tx_ids = ids[key]
            used_ids |= tx_ids
            where = f"transaction {key} (ids {sorted(tx_ids)})"
            if not tx_ids:
                self.result.failures.append(Failure(cycle, scn, f"{where}: StartTransaction never answered"))
                continue
            stops = [s for i in tx_ids for s in stops_by_id.get(i, [])]
            contents = {json.dumps(s.payload, sort_keys=True) for s in stops}
            r.resent_stops += max(0, len(stops) - len(contents))
            if not stops:
                self.result.failures.append(Failure(cycle, scn, f"{where}: no StopTransaction"))
                continue
            if len(contents) > 1:
                self.result.failures.append(Failure(cycle, scn,
                    f"{where}: {len(contents)} different StopTransactions: {sorted(contents)}"))
            if len({i for i in tx_ids if stops_by_id.get(i)}) > 1:
                self.result.failures.append(Failure(cycle, scn, f"{where}: stopped under several ids"))
            stop = stops[0].payload
            meter_start = key[2]
            if stop["meterStop"] < meter_start:
                self.result.failures.append(Failure(cycle, scn,
                    f"{where}: meterStop {stop['meterStop']} < meterStart {meter_start}"))
            series = [e for i in sorted(tx_ids) for m in mvs_by_id.get(i, []) for e in energy_of(m.payload)]
            series_sorted_by_arrival = [e for m in sorted(
                (m for i in tx_ids for m in mvs_by_id.get(i, [])), key=lambda m: m.seq)
                for e in energy_of(m.payload)]
            for (t1, e1), (t2, e2) in zip(series_sorted_by_arrival, series_sorted_by_arrival[1:]):
                if e2 < e1 or t2 < t1:
                    self.result.failures.append(Failure(cycle, scn,
                        f"{where}: MeterValues out of order: ({t1}, {e1} Wh) then ({t2}, {e2} Wh)"))
                    break
            top = max((e for _, e in series), default=meter_start)
            if stop["meterStop"] < top:
                self.result.failures.append(Failure(cycle, scn,
                    f"{where}: meterStop {stop['meterStop']} < MeterValues energy {top} already sent"))
            if series and min(e for _, e in series) < meter_start:
                self.result.failures.append(Failure(cycle, scn,
                    f"{where}: a MeterValues energy below meterStart {meter_start}"))
        for tx_id, recs in stops_by_id.items():
            if tx_id not in used_ids:
                cycle, scn = self.cycle_of(recs[0].seq)
                self.result.failures.append(Failure(cycle, scn,
                    f"StopTransaction for transactionId {tx_id} that no StartTransaction got"))
        # no transaction lost: whatever the killed daemon had on disk reached the CSMS
        have = {(k[0], k[1], k[2]) for k in starts}
        for cycle, scn, row in self.expect_started:
            _, connector, tag, meter_start, _, _, _ = row
            r.messages_checked += 1
            if (connector, tag, meter_start) not in have:
                self.result.failures.append(Failure(cycle, scn,
                    f"transaction on disk at the kill never reached the CSMS: {row}"))
        seen_payloads = defaultdict(list)
        for rec in csms.calls():
            seen_payloads[rec.action].append(rec.payload)
        for cycle, scn, action, payload in self.snap_outbox:
            if action not in ("StartTransaction", "StopTransaction", "MeterValues"):
                continue
            r.messages_checked += 1
            def same(p: dict[str, Any]) -> bool:
                return all(p.get(k) == v for k, v in payload.items() if k != "transactionId")
            if not any(same(p) for p in seen_payloads[action]):
                self.result.failures.append(Failure(cycle, scn,
                    f"queued {action} on disk at the kill never delivered: {json.dumps(payload)[:200]}"))

    def cycle_of_scn(self, cycle: int) -> str:
        return next((s for c, _, s in self.cycle_marks if c == cycle), "?")


async def run(cycles: int, seed: int, verbose: bool = False, model: str = "EVlink Pro DC 180") -> Result:
    return await PowerCut(cycles, seed, verbose, model).run()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=500, help="kill/restart cycles (default 500)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--model", default="EVlink Pro DC 180", help="model profile of the daemon")
    ap.add_argument("--verbose", "-v", action="store_true")
    args = ap.parse_args()
    result = asyncio.run(run(args.cycles, args.seed, args.verbose, args.model))
    print(f"power-cut run, seed {args.seed}, model {args.model}")
    print(result.summary())
    for f in result.failures[:50]:
        print(f"  FAIL {f}")
    return 0 if not result.failures else 1


if __name__ == "__main__":
    sys.exit(main())
