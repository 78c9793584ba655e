"""Scenario tests of the charger core (controller.core.charger), sans I/O.

The core is driven exactly as the runtime drives it -- events in, commands out,
CSMS requests through ``Charger.request`` -- with a fake clock, a real SQLite
store in ``tmp_path`` and a tiny world model (:class:`Rig`) that answers the
core's commands the way the runtime, the drivers and a CSMS would: ``Sample``
with a meter/power reading, ``SendCall`` with a CALLRESULT, ``WakeOutbox`` by
delivering the on-disk queue in order (filling the CSMS transaction id in, as
``controller.runtime.loop.Outbox`` does). Time passes only through
``Rig.advance``, which ticks the core at each of its own deadlines (and only
there, like the runtime's loop): no event loop, no sockets, no sleeping.

Requirements covered: R-BOOT 2/3/5, R-AUTH 3/4/5/8, R-TX 1-5, R-STATUS 1-3,
R-OPS 2/4/5, R-DT 1/4, R-TRIG, R-CONF 2/3, R-MODEL 3.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.core import commands as cmd
from controller.core import events as ev
from controller.core.backoff import DEFAULT_BOOT_RETRY_S
from controller.core.charger import Charger, Identity
from controller.core.deferred import resolve
from controller.core.dtc import DTC_TABLE, Dtc
from controller.core.keys import KEYS, Access, KeyStore
from controller.core.models import find_model
from controller.core.timefmt import rfc3339
from controller.store.sqlite import Store, StoreError
from fakes import RFC3339_SENT, FakeClock, meter_reading, of_type, power_status, sampled_value, send_calls

PRO_DC = "EVlink Pro DC 180"
STARCHARGE = "Schneider StarCharge Fast 180"
SERIAL = "SN-000123"
FIRMWARE = "1.2.3"

DEFAULT_SAMPLED = [
    "Current.Import", "Current.Offered", "Energy.Active.Import.Register",
    "Power.Offered", "Power.Active.Import", "SoC",
]
DEFAULT_ALIGNED = [
    "Current.Import", "Current.Offered", "Energy.Active.Import.Register",
    "Power.Offered", "Power.Active.Import",
]
UNITS = {
    "Current.Import": "A", "Current.Offered": "A", "Energy.Active.Import.Register": "Wh",
    "Power.Offered": "W", "Power.Active.Import": "W", "SoC": "Percent", "Voltage": "V",
}


# ============================================================================ the rig
@dataclass
class Sent:
    """One message that went on the wire, charger -> CSMS."""

    action: str
    payload: dict[str, Any]
    at: float  # fake monotonic time it went out
    queued: bool  # True: a transaction message from the on-disk outbox
    ref: Any = None


@dataclass
class Rig:
    """The charger core in a small world: fake clock, real store, scripted drivers and CSMS."""

    tmp_path: Path
    model_name: str = PRO_DC
    seeds: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.db_path = self.tmp_path / "s.sqlite"
        self.clock = FakeClock()
        self.store = Store.open(self.db_path)
        self.model = find_model(self.model_name)
        self.keys = KeyStore(self.model.key_values(), seeds=self.seeds, persisted=self.store.keys())
        self.charger = Charger(
            model=self.model, keys=self.keys, store=self.store, clock=self.clock,
            identity=Identity(SERIAL, FIRMWARE),
        )
        ids = [c.id for c in self.model.connectors]
        # -- the world the drivers see
        self.energy = {cid: 10_000 * cid for cid in ids}  # meter import register, Wh
        self.power_w = {cid: 50_000.0 for cid in ids}
        self.soc = {cid: 40 for cid in ids}
        self.meter_ok = {cid: True for cid in ids}
        self.plugged = {cid: False for cid in ids}
        self.power_on = {cid: False for cid in ids}
        # -- how the rig answers
        self.auto_sample = True  # answer Sample commands at once
        self.auto_deliver = True  # deliver the outbox on WakeOutbox(0) while online
        self.auto_answer = {
            "Authorize", "Heartbeat", "StatusNotification", "MeterValues", "SecurityEventNotification",
            "DiagnosticsStatusNotification", "FirmwareStatusNotification",
        }
        self.authorize_status: dict[str, str] = {}  # idTag -> Authorize.conf status (else Accepted)
        self.start_status: dict[str, str] = {}  # idTag -> StartTransaction.conf status (else Accepted)
        self.next_tx_id = 100
        # -- what happened
        self.log: list[tuple[float, cmd.Command]] = []  # every command executed, in order
        self.wire: list[Sent] = []
        self.unanswered: list[cmd.SendCall] = []
        self.held: list[cmd.Sample] = []
        self.started = False
        self._queue: deque[cmd.Command] = deque()
        self._running = False

    # ---------------------------------------------------------------- driving
    def now(self) -> float:
        return self.clock.monotonic()

    def feed(self, event: object) -> list[cmd.Command]:
        """Hand one event to the core; run what it asks; return its direct commands."""
        if isinstance(event, ev.Started):
            self.started = True
        commands = self.charger.handle(event)
        self._run(commands)
        return commands

    def request(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A CSMS request: the reply; the commands it caused run after it (as in the runtime)."""
        reply = resolve(self.charger.request(action, payload))  # a DeferredReply's work done here
        self.last_commands = self.charger.take_commands()
        self._run(self.last_commands)
        return reply

    def advance(self, seconds: float) -> list[cmd.Command]:
        """Let time pass, ticking the core at each of its deadlines on the way (only there)."""
        target = self.now() + seconds
        out: list[cmd.Command] = []
        while True:
            due = self.charger.next_deadline()
            if due is None or due > target:
                break
            self.clock.advance(max(0.0, due - self.now()))
            out += self.feed(ev.Tick())
        self.clock.advance(target - self.now())
        return out

    def _run(self, commands: list[cmd.Command]) -> None:
        self._queue.extend(commands)
        if self._running:
            return
        self._running = True
        try:
            while self._queue:
                self._execute(self._queue.popleft())
        finally:
            self._running = False

    def _execute(self, c: cmd.Command) -> None:
        self.log.append((self.now(), c))
        if isinstance(c, cmd.SendCall):
            self.wire.append(Sent(c.action, c.payload, self.now(), False, c.ref))
            if c.action in self.auto_answer:
                self.feed(ev.CallAnswered(c.ref, c.action, self._reply(c)))
            else:
                self.unanswered.append(c)
        elif isinstance(c, cmd.Sample):
            if self.auto_sample:
                self.answer_sample(c)
            else:
                self.held.append(c)
        elif isinstance(c, cmd.WakeOutbox):
            if c.delay_s == 0 and self.auto_deliver:
                self.deliver()
        elif isinstance(c, cmd.SetClock):
            self.clock.set_wall(c.wall)
        elif isinstance(c, cmd.EnablePower):
            self.power_on[c.connector_id] = True
        elif isinstance(c, cmd.DisablePower):
            self.power_on[c.connector_id] = False

    def _reply(self, c: cmd.SendCall) -> dict[str, Any]:
        if c.action == "Authorize":
            return {"idTagInfo": {"status": self.authorize_status.get(c.payload["idTag"], "Accepted")}}
        if c.action == "Heartbeat":
            return {"currentTime": rfc3339(self.clock.wall())}
        return {}

    def reading(self, cid: int) -> tuple[Any, Any]:
        meter = None
        if self.meter_ok[cid]:
            meter = meter_reading(self.energy[cid], self.power_w[cid], 400.0, self.power_w[cid] / 400.0)
        power = power_status(
            plugged=self.plugged[cid], output_power_w=self.power_w[cid],
            current_a=self.power_w[cid] / 400.0, soc_pct=self.soc[cid],
        )
        return meter, power

    def answer_sample(self, c: cmd.Sample) -> list[cmd.Command]:
        if c in self.held:
            self.held.remove(c)
        meter, power = self.reading(c.connector_id)
        return self.feed(ev.Sampled(c.connector_id, c.purpose, meter, power, None if meter else "meter down"))

    def deliver(self) -> None:
        """Deliver the outbox, oldest first, as controller.runtime.loop.Outbox does."""
        while self.charger.online():
            row = self.store.first_pending()
            if row is None:
                return
            payload = dict(row.payload)
            if row.action in ("StopTransaction", "MeterValues") and row.tx_local_id is not None:
                tx = self.store.transaction(row.tx_local_id)
                if tx is None or tx.transaction_id is None:
                    self.store.remove(row.seq)
                    continue
                payload["transactionId"] = tx.transaction_id
            self.wire.append(Sent(row.action, payload, self.now(), True, ("outbox", row.seq)))
            reply: dict[str, Any] = {}
            if row.action == "StartTransaction":
                status = self.start_status.get(payload["idTag"], "Accepted")
                reply = {"transactionId": self.next_tx_id, "idTagInfo": {"status": status}}
                self.next_tx_id += 1
            self.feed(ev.TxMessageDelivered(row.seq, row.action, row.tx_local_id, reply))

    # ---------------------------------------------------------------- the CSMS side
    def pop_call(self, action: str) -> cmd.SendCall:
        for c in self.unanswered:
            if c.action == action:
                self.unanswered.remove(c)
                return c
        raise AssertionError(f"no unanswered {action}; unanswered: {[c.action for c in self.unanswered]}")

    def answer(self, call: cmd.SendCall, payload: dict[str, Any]) -> list[cmd.Command]:
        if call in self.unanswered:
            self.unanswered.remove(call)
        return self.feed(ev.CallAnswered(call.ref, call.action, payload))

    def boot(self, status: str = "Accepted", interval: int = 60, current_time: str | None = None) -> list[cmd.Command]:
        if not self.started:
            self.feed(ev.Started())
        self.feed(ev.LinkUp())
        call = self.pop_call("BootNotification")
        stamp = current_time or rfc3339(self.clock.wall())
        return self.answer(call, {"status": status, "interval": interval, "currentTime": stamp})

    # ---------------------------------------------------------------- the user side
    def plug(self, cid: int) -> list[cmd.Command]:
        self.plugged[cid] = True
        return self.feed(ev.Plugged(cid))

    def unplug(self, cid: int) -> list[cmd.Command]:
        self.plugged[cid] = False
        return self.feed(ev.Unplugged(cid))

    def badge(self, tag: str) -> list[cmd.Command]:
        return self.feed(ev.TagPresented(tag))

    def charge(self, cid: int, tag: str = "TAG1") -> int:
        """Plug ``cid`` and remote-start on it; return the CSMS transaction id."""
        self.plug(cid)
        assert self.request("RemoteStartTransaction", {"idTag": tag, "connectorId": cid}) == {"status": "Accepted"}
        s = self.session(cid)
        assert s is not None and s.transaction_id is not None, "transaction did not start"
        return s.transaction_id

    def close(self, clean: bool) -> None:
        if clean:
            self.store.mark_stopped()
        self.store.close()

    # ---------------------------------------------------------------- looking
    def session(self, cid: int) -> Any:
        return self.charger.connectors[cid].session

    def sent(self, action: str | None = None, since: int = 0) -> list[Sent]:
        return [m for m in self.wire[since:] if action is None or m.action == action]

    def statuses(self, cid: int | None = None, since: int = 0) -> list[dict[str, Any]]:
        return [m.payload for m in self.sent("StatusNotification", since)
                if cid is None or m.payload["connectorId"] == cid]

    def status(self, cid: int) -> str:
        """The last status reported for ``cid``."""
        reported = self.statuses(cid)
        assert reported, f"no status reported for connector {cid}"
        return reported[-1]["status"]

    def commands(self, kind: type, since: float = float("-inf")) -> list[tuple[float, Any]]:
        return [(t, c) for t, c in self.log if isinstance(c, kind) and t >= since]

    def mark(self) -> int:
        return len(self.wire)


@pytest.fixture
def make_rig(tmp_path: Path):
    rigs: list[Rig] = []

    def make(model: str = PRO_DC, **seeds: object) -> Rig:
        # security events (StartupOfTheDevice, ...) are queued like transaction messages:
        # off unless a test is about them, so the other tests see only what they check
        rig = Rig(tmp_path, model, {"SecurityEventsEnabled": False, **seeds})
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        try:
            rig.store.close()
        except Exception:  # noqa: BLE001 - closed by the test already
            pass


# ============================================================================ R-BOOT
def test_r_boot_2_boot_notification_identifies_the_charger(make_rig):
    rig = make_rig()
    assert rig.feed(ev.Started()) == []
    assert rig.feed(ev.LinkUp()) == [
        cmd.SendCall(
            "BootNotification",
            {
                "chargePointVendor": "Schneider Electric",
                "chargePointModel": "EVlink Pro DC 180",
                "chargePointSerialNumber": SERIAL,
                "chargeBoxSerialNumber": SERIAL,
                "firmwareVersion": FIRMWARE,
            },
            "boot",
        )
    ]


def test_r_boot_2_3_accepted_reports_every_connector_and_heartbeats_at_the_interval(make_rig):
    rig = make_rig()
    t0 = rig.now()
    commands = rig.boot(interval=300)
    # every connector, 0..N, reported afresh, and the outbox woken
    assert [(p["connectorId"], p["status"], p["errorCode"]) for p in rig.statuses()] == [
        (0, "Available", "NoError"), (1, "Available", "NoError"), (2, "Available", "NoError"),
    ]
    for p in rig.statuses():
        assert RFC3339_SENT.fullmatch(p["timestamp"]) and p["timestamp"] == rfc3339(rig.clock.wall())
    assert cmd.WakeOutbox() in commands
    # the interval from the answer becomes the key, persisted
    assert rig.keys.get_int("HeartbeatInterval") == 300
    assert rig.store.keys()["HeartbeatInterval"] == "300"
    # heartbeat at the interval, again and again
    assert rig.advance(299.9) == []
    assert send_calls(rig.advance(0.1)) == [cmd.SendCall("Heartbeat", {}, "heartbeat")]
    rig.advance(600)
    assert [m.at - t0 for m in rig.sent("Heartbeat")] == [300, 600, 900]


@pytest.mark.parametrize("status", ["Pending", "Rejected"])
def test_r_boot_2_pending_or_rejected_sends_nothing_but_boot_notification_after_interval(make_rig, status):
    rig = make_rig(FreeCharging=False)
    rig.feed(ev.Started())
    boot = rig.feed(ev.LinkUp())
    call = rig.pop_call("BootNotification")
    t0 = rig.now()
    answer = rig.answer(call, {"status": status, "interval": 45, "currentTime": "2026-04-16T09:00:00Z"})
    assert answer == []
    assert rig.clock.wall() == datetime(2026, 4, 16, 9, 0, tzinfo=UTC)  # R-BOOT 5 even when not accepted
    assert not rig.charger.online()
    # things happen, nothing goes out
    assert rig.plug(1) == []
    assert send_calls(rig.feed(ev.FaultRaised("0x10020C", 1))) == []  # not even the tamper security event
    assert send_calls(rig.feed(ev.FaultRaised("0x100101", 2))) == []
    assert rig.charger.next_deadline() == t0 + 45
    assert rig.advance(44.9) == []
    assert rig.advance(0.1) == boot  # exactly the same BootNotification, nothing else
    assert [m.action for m in rig.wire] == ["BootNotification", "BootNotification"]
    assert [m.at - t0 for m in rig.wire] == [0, 45]
    # accepted at last: now the statuses go out (connector 1 is plugged and faulted)
    rig.answer(rig.pop_call("BootNotification"), {"status": "Accepted", "interval": 60,
                                                 "currentTime": "2026-04-16T09:00:45Z"})
    assert rig.charger.online()
    assert {p["connectorId"] for p in rig.statuses()} == {0, 1, 2}
    one = rig.statuses(1)[-1]
    assert (one["status"], one["errorCode"], one["vendorErrorCode"]) == ("Faulted", "OtherError", "0x10020C")


def test_r_boot_2_pending_without_interval_retries_after_the_default(make_rig):
    rig = make_rig()
    rig.feed(ev.Started())
    t0 = rig.now()
    rig.feed(ev.LinkUp())
    rig.answer(rig.pop_call("BootNotification"), {"status": "Pending", "interval": 0,
                                                 "currentTime": "2026-04-16T09:00:00Z"})
    for _ in range(3):
        rig.advance(DEFAULT_BOOT_RETRY_S)
        rig.answer(rig.pop_call("BootNotification"), {"status": "Pending", "currentTime": "2026-04-16T09:00:00Z"})
    assert [m.at - t0 for m in rig.wire] == [0, DEFAULT_BOOT_RETRY_S, 2 * DEFAULT_BOOT_RETRY_S, 3 * DEFAULT_BOOT_RETRY_S]
    assert {m.action for m in rig.wire} == {"BootNotification"}


def test_r_boot_2_trigger_boot_notification_while_pending_registers_the_charger(make_rig):
    rig = make_rig()
    rig.feed(ev.Started())
    rig.feed(ev.LinkUp())
    rig.answer(rig.pop_call("BootNotification"), {"status": "Pending", "interval": 300,
                                                 "currentTime": "2026-04-16T09:00:00Z"})
    assert rig.request("TriggerMessage", {"requestedMessage": "BootNotification"}) == {"status": "Accepted"}
    call = rig.pop_call("BootNotification")  # an Accepted trigger must send one
    rig.answer(call, {"status": "Accepted", "interval": 60, "currentTime": "2026-04-16T09:00:01Z"})
    assert rig.charger.online()
    assert {p["connectorId"] for p in rig.statuses()} == {0, 1, 2}


@pytest.mark.parametrize(("requested", "connector", "actions"), [
    ("StatusNotification", 1, ["StatusNotification"]),
    ("StatusNotification", None, ["StatusNotification"] * 3),
    ("Heartbeat", None, ["Heartbeat"]),
    ("MeterValues", 2, ["MeterValues"]),
    ("FirmwareStatusNotification", None, ["FirmwareStatusNotification"]),
    ("DiagnosticsStatusNotification", None, ["DiagnosticsStatusNotification"]),
])
def test_r_boot_2_while_pending_what_the_csms_triggers_is_sent(make_rig, requested, connector, actions):
    rig = make_rig()
    rig.feed(ev.Started())
    rig.feed(ev.LinkUp())
    rig.answer(rig.pop_call("BootNotification"), {"status": "Pending", "interval": 300,
                                                 "currentTime": "2026-04-16T09:00:00Z"})
    rig.plug(1)
    assert rig.wire[1:] == []
    payload: dict[str, Any] = {"requestedMessage": requested}
    if connector is not None:
        payload["connectorId"] = connector
    assert rig.request("TriggerMessage", payload) == {"status": "Accepted"}
    assert [m.action for m in rig.wire[1:]] == actions  # OCPP 1.6 §4.2: triggered messages may go
    rig.advance(299)
    assert [m.action for m in rig.wire[1:]] == actions  # and nothing else
    if requested == "StatusNotification":
        assert rig.statuses(1)[0]["status"] == "Preparing"


def test_r_boot_2_while_rejected_nothing_goes_out_even_when_triggered(make_rig):
    rig = make_rig()
    rig.feed(ev.Started())
    rig.feed(ev.LinkUp())
    rig.answer(rig.pop_call("BootNotification"), {"status": "Rejected", "interval": 300,
                                                 "currentTime": "2026-04-16T09:00:00Z"})
    rig.request("TriggerMessage", {"requestedMessage": "StatusNotification"})
    rig.request("TriggerMessage", {"requestedMessage": "Heartbeat"})
    assert rig.wire[1:] == []


def test_r_boot_3_heartbeat_follows_a_changed_interval_and_stops_when_the_link_drops(make_rig):
    rig = make_rig()
    rig.boot(interval=60)
    rig.advance(30)
    t1 = rig.now()
    assert rig.request("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "20"}) == {"status": "Accepted"}
    rig.advance(45)
    assert [m.at - t1 for m in rig.sent("Heartbeat")] == [20, 40]
    rig.feed(ev.LinkDown())
    rig.advance(600)
    assert len(rig.sent("Heartbeat")) == 2


def test_r_boot_3_websocket_ping_interval_change_reaches_the_link(make_rig):
    rig = make_rig()
    rig.boot()
    assert rig.request("ChangeConfiguration", {"key": "WebSocketPingInterval", "value": "30"}) == {"status": "Accepted"}
    assert rig.last_commands == [cmd.SetPingInterval(30)]


def test_r_boot_5_clock_set_from_boot_and_heartbeat_current_time(make_rig):
    rig = make_rig()
    rig.boot(interval=60, current_time="2026-05-01T12:00:00+02:00")
    assert rig.clock.wall() == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    # what the boot step itself sends already carries the CSMS's time
    assert {p["timestamp"] for p in rig.statuses()} == {"2026-05-01T10:00:00.000Z"}
    rig.auto_answer.discard("Heartbeat")
    rig.advance(60)
    assert rig.answer(rig.pop_call("Heartbeat"), {"currentTime": "2026-05-01T10:30:00.250Z"}) == []
    assert rig.clock.wall() == datetime(2026, 5, 1, 10, 30, 0, 250000, tzinfo=UTC)
    # a currentTime that cannot be read does not move the clock
    rig.advance(60)
    rig.answer(rig.pop_call("Heartbeat"), {"currentTime": "yesterday"})
    assert rig.clock.wall() == datetime(2026, 5, 1, 10, 31, 0, 250000, tzinfo=UTC)


# ============================================================================ R-AUTH 3 (free mode)
@pytest.mark.parametrize("default_tag", [None, "FREE-42"])
def test_r_auth_3_free_mode_authorizes_and_starts_with_default_id_tag_on_plug(make_rig, default_tag):
    seeds: dict[str, object] = {"FreeCharging": True}
    if default_tag:
        seeds["DefaultIdTag"] = default_tag
    tag = default_tag or "SIMTAG"
    rig = make_rig(**seeds)
    rig.boot()
    rig.energy[2] = 4_321
    rig.plug(2)
    assert [(m.action, m.payload.get("idTag")) for m in rig.wire if m.action != "StatusNotification"] == [
        ("BootNotification", None), ("Authorize", tag), ("StartTransaction", tag),
    ]
    start = rig.sent("StartTransaction")[0].payload
    assert start["connectorId"] == 2 and start["meterStart"] == 4_321
    assert rig.session(2).id_tag == tag and rig.power_on[2]


def test_r_auth_3_free_mode_ignores_badges(make_rig):
    rig = make_rig(FreeCharging=True)
    rig.boot()
    assert rig.badge("BADGE-1") == []  # no one plugged
    rig.authorize_status["SIMTAG"] = "Blocked"  # the CSMS refuses the free tag this time
    rig.plug(1)
    assert rig.session(1) is None and rig.charger.connectors[1].pending is None
    mark = rig.mark()
    assert rig.badge("BADGE-1") == []  # an idle, plugged connector: still no badge start
    assert rig.sent("Authorize", mark) == [] and rig.session(1) is None
    del rig.authorize_status["SIMTAG"]
    rig.plug(2)
    assert rig.session(2) is not None
    assert rig.badge("SIMTAG") == []  # nor does a badge stop a free charge
    assert rig.session(2) is not None and not rig.session(2).stopping


def test_r_auth_3_free_mode_offline_starts_without_authorize_and_delivers_later(make_rig):
    rig = make_rig(FreeCharging=True, AllowOfflineTxForUnknownId=False)
    rig.feed(ev.Started())
    rig.plug(1)
    assert rig.session(1) is not None and rig.session(1).id_tag == "SIMTAG"
    assert rig.wire == []
    assert [r.action for r in rig.store.pending()] == ["StartTransaction"]
    rig.boot()
    assert [m.action for m in rig.wire if m.queued] == ["StartTransaction"]
    assert rig.sent("Authorize") == []


# ============================================================================ R-AUTH 4 (local badge)
@pytest.mark.parametrize("cid", [1, 2])
def test_r_auth_4_badge_with_one_connector_plugged_starts_on_it(make_rig, cid):
    rig = make_rig()
    rig.boot()
    rig.plug(cid)
    mark = rig.mark()
    rig.badge("BADGE-1")
    assert [(m.action, m.payload.get("idTag")) for m in rig.sent(since=mark) if m.action != "StatusNotification"] == [
        ("Authorize", "BADGE-1"), ("StartTransaction", "BADGE-1"),
    ]
    assert rig.sent("StartTransaction")[0].payload["connectorId"] == cid
    assert rig.session(cid) is not None and rig.session(3 - cid) is None


@pytest.mark.parametrize(("touches", "expected"), [([], 1), ([2], 2), ([2, 1], 1), ([7], 1)])
def test_r_auth_4_badge_with_both_plugged_starts_on_the_connector_shown(make_rig, touches, expected):
    rig = make_rig()
    rig.boot()
    rig.plug(1)
    rig.plug(2)
    for cid in touches:
        assert rig.feed(ev.Touched(cid)) == []
    rig.badge("BADGE-1")
    assert [m.payload["connectorId"] for m in rig.sent("StartTransaction")] == [expected]
    assert rig.session(3 - expected) is None


def test_r_auth_4_badge_with_nothing_plugged_is_not_used(make_rig):
    rig = make_rig()
    rig.boot()
    mark = rig.mark()
    assert rig.badge("BADGE-1") == []
    rig.plug(1)
    rig.advance(30)
    assert rig.sent("Authorize", mark) == [] and rig.sent("StartTransaction") == []
    assert rig.session(1) is None and rig.charger.connectors[1].pending is None


def test_r_auth_4_badge_not_accepted_does_not_start(make_rig):
    rig = make_rig()
    rig.boot()
    rig.authorize_status["STOLEN"] = "Blocked"
    rig.plug(1)
    rig.badge("STOLEN")
    assert len(rig.sent("Authorize")) == 1 and rig.sent("StartTransaction") == []
    assert rig.session(1) is None and rig.charger.connectors[1].pending is None
    rig.badge("GOOD")  # the next badge is not blocked by the refused one
    assert rig.session(1) is not None and rig.session(1).id_tag == "GOOD"


def test_r_auth_4_badge_of_the_running_transaction_stops_it_with_reason_local(make_rig):
    rig = make_rig()
    rig.boot()
    rig.plug(1)
    rig.badge("BADGE-1")
    rig.plug(2)
    rig.badge("BADGE-2")
    tx1 = rig.session(1).transaction_id
    mark = rig.mark()
    rig.energy[1] = 12_000
    rig.badge("BADGE-1")
    assert rig.sent("Authorize", mark) == []  # the owner's badge stops without asking
    stops = rig.sent("StopTransaction", mark)
    assert [m.payload for m in stops] == [{
        "meterStop": 12_000, "timestamp": rfc3339(rig.clock.wall()), "reason": "Local",
        "idTag": "BADGE-1", "transactionId": tx1,
    }]
    assert rig.session(1) is None and rig.session(2) is not None


@pytest.mark.parametrize(("reason", "code", "allow_unknown", "starts"), [
    ("timeout", None, True, True),
    ("offline", None, True, True),
    ("timeout", None, False, False),
    ("error", "InternalError", True, False),  # the CSMS answered: a CALLERROR is no authorization
])
def test_r_auth_4_badge_whose_authorize_gets_no_answer_follows_the_offline_rule(
    make_rig, reason, code, allow_unknown, starts
):
    rig = make_rig(AllowOfflineTxForUnknownId=allow_unknown)
    rig.boot()
    rig.auto_answer.discard("Authorize")
    rig.plug(1)
    rig.badge("BADGE-1")
    call = rig.pop_call("Authorize")
    rig.feed(ev.CallFailed(call.ref, "Authorize", reason, code))
    assert (rig.session(1) is not None) is starts
    assert rig.charger.connectors[1].pending is None


def test_r_auth_4_badge_ignored_when_rfid_is_not_an_enabled_mode(make_rig):
    rig = make_rig(RFIDEnabled=False)
    rig.boot()
    rig.plug(1)
    mark = rig.mark()
    assert rig.badge("BADGE-1") == []
    assert rig.sent("Authorize", mark) == []


# ============================================================================ R-AUTH 5 (remote start)
def remote_start(rig: Rig, tag: str = "REMOTE-1", cid: int | None = None) -> str:
    payload: dict[str, Any] = {"idTag": tag}
    if cid is not None:
        payload["connectorId"] = cid
    return rig.request("RemoteStartTransaction", payload)["status"]


@pytest.mark.parametrize("cid", [1, 2])
def test_r_auth_5_remote_start_with_connector_plugged_starts_on_it(make_rig, cid):
    rig = make_rig()
    rig.boot()
    rig.plug(1)
    rig.plug(2)
    assert remote_start(rig, cid=cid) == "Accepted"
    assert [m.payload["connectorId"] for m in rig.sent("StartTransaction")] == [cid]
    assert rig.sent("StartTransaction")[0].payload["idTag"] == "REMOTE-1"


def test_r_auth_5_remote_start_with_connector_not_plugged_rejected_when_no_connected_ev_disabled(make_rig):
    rig = make_rig(EnableRemoteStartNoConnectedEV=False)
    rig.boot()
    mark = rig.mark()
    assert remote_start(rig, cid=1) == "Rejected"
    assert rig.last_commands == []
    rig.plug(1)
    assert rig.sent("Authorize", mark) == [] and rig.sent("StartTransaction") == []


def test_r_auth_5_remote_start_with_connector_not_plugged_starts_when_plugged_within_connection_timeout(make_rig):
    rig = make_rig(EnableRemoteStartNoConnectedEV=True, MinimumStatusDuration=0)
    rig.boot()
    assert remote_start(rig, cid=2) == "Accepted"
    assert rig.status(2) == "Preparing"
    rig.advance(119)
    assert rig.sent("StartTransaction") == []
    rig.plug(2)
    assert [m.payload["connectorId"] for m in rig.sent("StartTransaction")] == [2]
    rig.advance(300)  # the expired deadline must not touch the running transaction
    assert rig.session(2) is not None and not rig.session(2).stopping


def test_r_auth_5_remote_start_with_connector_not_plugged_dropped_after_connection_timeout(make_rig):
    rig = make_rig(EnableRemoteStartNoConnectedEV=True, MinimumStatusDuration=0)
    rig.boot()
    assert remote_start(rig, cid=1) == "Accepted"
    rig.advance(119.9)
    assert rig.charger.connectors[1].pending is not None
    rig.advance(0.1)
    assert rig.charger.connectors[1].pending is None
    assert rig.status(1) == "Available"
    mark = rig.mark()
    rig.plug(1)
    assert rig.sent("Authorize", mark) == [] and rig.sent("StartTransaction") == []


def test_r_auth_5_connection_timeout_key_is_honoured(make_rig):
    rig = make_rig(ConnectionTimeOut=30)
    rig.boot()
    assert remote_start(rig, cid=1) == "Accepted"
    rig.advance(30)
    rig.plug(1)
    assert rig.sent("StartTransaction") == []


@pytest.mark.parametrize("cid", [0, 3, 99])
def test_r_auth_5_remote_start_with_bad_connector_id_rejected(make_rig, cid):
    rig = make_rig()
    rig.boot()
    rig.plug(1)
    mark = rig.mark()
    assert remote_start(rig, cid=cid) == "Rejected"
    assert rig.sent(since=mark) == [] and rig.session(1) is None


@pytest.mark.parametrize("cid", [1, 2])
def test_r_auth_5_remote_start_without_connector_one_plugged_uses_it(make_rig, cid):
    rig = make_rig()
    rig.boot()
    rig.plug(cid)
    assert remote_start(rig) == "Accepted"
    assert [m.payload["connectorId"] for m in rig.sent("StartTransaction")] == [cid]


def test_r_auth_5_remote_start_without_connector_both_plugged_uses_connector_1(make_rig):
    rig = make_rig()
    rig.boot()
    rig.plug(2)
    rig.plug(1)
    rig.feed(ev.Touched(2))  # what the screen shows does not matter for a remote start
    assert remote_start(rig) == "Accepted"
    assert [m.payload["connectorId"] for m in rig.sent("StartTransaction")] == [1]


def test_r_auth_5_remote_start_without_connector_none_plugged_rejected_when_no_connected_ev_disabled(make_rig):
    rig = make_rig(EnableRemoteStartNoConnectedEV=False)
    rig.boot()
    mark = rig.mark()
    assert remote_start(rig) == "Rejected"
    rig.plug(2)
    assert rig.sent("Authorize", mark) == [] and rig.sent("StartTransaction") == []


@pytest.mark.parametrize("cid", [1, 2])
def test_r_auth_5_remote_start_without_connector_none_plugged_starts_on_the_first_plugged(make_rig, cid):
    rig = make_rig(EnableRemoteStartNoConnectedEV=True)
    rig.boot()
    assert remote_start(rig) == "Accepted"
    rig.advance(100)
    rig.plug(cid)
    assert [m.payload["connectorId"] for m in rig.sent("StartTransaction")] == [cid]
    rig.plug(3 - cid)
    assert len(rig.sent("StartTransaction")) == 1  # one remote start, one transaction


def test_r_auth_5_remote_start_without_connector_none_plugged_dropped_after_connection_timeout(make_rig):
    rig = make_rig(EnableRemoteStartNoConnectedEV=True)
    rig.boot()
    assert remote_start(rig) == "Accepted"
    rig.advance(120)
    assert rig.charger.remote_any is None
    rig.plug(2)
    assert rig.sent("StartTransaction") == []
    assert remote_start(rig, "REMOTE-2") == "Accepted"  # a new one is welcome again
    assert [m.payload["idTag"] for m in rig.sent("StartTransaction")] == ["REMOTE-2"]


def test_r_auth_5_remote_start_without_connector_plug_before_authorize_answer_still_starts(make_rig):
    rig = make_rig(EnableRemoteStartNoConnectedEV=True, AuthorizeRemoteTxRequests=True)
    rig.boot()
    rig.auto_answer.discard("Authorize")
    assert remote_start(rig) == "Accepted"
    authorize = rig.pop_call("Authorize")
    rig.plug(2)  # the driver is quicker than the CSMS
    assert rig.sent("StartTransaction") == []
    rig.answer(authorize, {"idTagInfo": {"status": "Accepted"}})
    assert [m.payload["connectorId"] for m in rig.sent("StartTransaction")] == [2]


def test_r_auth_5_remote_start_unplugged_before_start_is_not_kept_forever(make_rig):
    rig = make_rig(AuthorizeRemoteTxRequests=True)
    rig.boot()
    rig.auto_answer.discard("Authorize")
    rig.plug(1)
    assert remote_start(rig, cid=1) == "Accepted"
    authorize = rig.pop_call("Authorize")
    rig.unplug(1)  # the driver changed their mind
    rig.answer(authorize, {"idTagInfo": {"status": "Accepted"}})
    assert rig.sent("StartTransaction") == []
    rig.advance(3600)
    rig.plug(1)  # an hour later, someone else plugs in: no charge on the old remote start
    assert rig.sent("StartTransaction") == []


@pytest.mark.parametrize("cid", [1, None])
def test_r_auth_5_authorize_remote_tx_requests_true_authorize_precedes_start(make_rig, cid):
    rig = make_rig(AuthorizeRemoteTxRequests=True)
    rig.boot()
    rig.plug(1)
    mark = rig.mark()
    assert remote_start(rig, "REMOTE-9", cid) == "Accepted"
    actions = [(m.action, m.payload.get("idTag")) for m in rig.sent(since=mark) if m.action != "StatusNotification"]
    assert actions == [("Authorize", "REMOTE-9"), ("StartTransaction", "REMOTE-9")]


def test_r_auth_5_authorize_remote_tx_requests_true_refused_authorize_does_not_start(make_rig):
    rig = make_rig(AuthorizeRemoteTxRequests=True)
    rig.boot()
    rig.authorize_status["REMOTE-9"] = "Invalid"
    rig.plug(1)
    assert remote_start(rig, "REMOTE-9", 1) == "Accepted"
    assert len(rig.sent("Authorize")) == 1 and rig.sent("StartTransaction") == []
    assert rig.charger.connectors[1].pending is None


@pytest.mark.parametrize("cid", [1, None])
def test_r_auth_5_authorize_remote_tx_requests_false_starts_without_authorize(make_rig, cid):
    rig = make_rig(AuthorizeRemoteTxRequests=False)
    rig.boot()
    rig.plug(1)
    assert remote_start(rig, "REMOTE-9", cid) == "Accepted"
    assert rig.sent("Authorize") == []
    assert [m.payload["idTag"] for m in rig.sent("StartTransaction")] == ["REMOTE-9"]


def test_r_auth_5_remote_start_on_a_busy_connector_rejected(make_rig):
    rig = make_rig()
    rig.boot()
    rig.charge(1)
    assert remote_start(rig, "OTHER", 1) == "Rejected"


# ============================================================================ R-AUTH 8
def test_r_auth_8_stop_transaction_on_invalid_id_true_stops_with_deauthorized(make_rig):
    rig = make_rig(StopTransactionOnInvalidId=True)
    rig.boot()
    rig.start_status["EXPIRED"] = "Invalid"
    rig.plug(1)
    rig.badge("EXPIRED")  # Authorize says Accepted (e.g. from a cache), StartTransaction says Invalid
    [start] = rig.sent("StartTransaction")
    [stop] = rig.sent("StopTransaction")
    assert stop.payload["reason"] == "DeAuthorized" and stop.payload["transactionId"] == 100
    assert rig.session(1) is None and not rig.power_on[1]


def test_r_auth_8_stop_transaction_on_invalid_id_false_continues(make_rig):
    rig = make_rig(StopTransactionOnInvalidId=False, MinimumStatusDuration=0)
    rig.boot()
    rig.start_status["EXPIRED"] = "Invalid"
    rig.plug(1)
    rig.badge("EXPIRED")
    rig.advance(120)
    assert rig.sent("StopTransaction") == []
    assert rig.session(1) is not None and rig.power_on[1]
    assert rig.status(1) == "Charging"


# ============================================================================ R-TX 1
def test_r_tx_1_start_transaction_is_on_disk_before_anything_sends_it(make_rig):
    rig = make_rig()
    rig.boot()
    rig.auto_sample = False
    rig.auto_deliver = False
    rig.plug(1)
    rig.badge("BADGE-1")
    [sample] = rig.held
    assert sample == cmd.Sample(1, "start")
    assert rig.store.pending() == [] and rig.store.open_transactions() == []
    rig.energy[1] = 77_777
    commands = rig.answer_sample(sample)
    assert commands[:2] == [cmd.EnablePower(1), cmd.WakeOutbox()]
    [row] = rig.store.pending()  # on disk when the core hands the commands back
    assert row.action == "StartTransaction"
    assert row.payload == {
        "connectorId": 1, "idTag": "BADGE-1", "meterStart": 77_777, "timestamp": rfc3339(rig.clock.wall()),
    }
    assert RFC3339_SENT.fullmatch(row.payload["timestamp"])
    [tx] = rig.store.open_transactions()
    assert (tx.local_id, tx.connector_id, tx.meter_start_wh) == (row.tx_local_id, 1, 77_777)
    assert send_calls((c for _, c in rig.log), "StartTransaction") == []  # never a direct call
    rig.auto_deliver = True
    rig.deliver()
    assert rig.session(1).transaction_id == 100
    assert rig.store.transaction(row.tx_local_id).transaction_id == 100


def test_r_tx_4_a_start_that_cannot_be_queued_leaves_no_transaction_behind(make_rig, monkeypatch):
    rig = make_rig()
    rig.boot()
    rig.auto_sample = False
    rig.plug(1)
    rig.badge("BADGE-1")

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("disk full")

    monkeypatch.setattr(rig.store, "enqueue", disk_full)
    with pytest.raises(StoreError):
        rig.answer_sample(rig.held[0])
    # the transaction row and its StartTransaction go together or not at all
    assert rig.store.open_transactions() == [] and rig.store.pending() == []
    assert rig.session(1) is None


def test_r_tx_4_a_stop_that_cannot_be_queued_leaves_the_transaction_open(make_rig, monkeypatch):
    rig = make_rig()
    rig.boot()
    tx = rig.charge(1)
    rig.auto_sample = False

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("disk full")

    monkeypatch.setattr(rig.store, "enqueue", disk_full)
    rig.request("RemoteStopTransaction", {"transactionId": tx})
    with pytest.raises(StoreError):
        rig.answer_sample(rig.held[0])
    # still open on disk: the next boot stops it (R-MODEL 3) rather than losing it
    [open_tx] = rig.store.open_transactions()
    assert open_tx.transaction_id == tx and rig.store.pending() == []


def test_r_tx_1_start_with_unreadable_meter_starts_nothing(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    rig.meter_ok[1] = False
    rig.plug(1)
    rig.badge("BADGE-1")
    assert rig.store.pending() == [] and rig.session(1) is None
    assert rig.statuses(1)[-1]["errorCode"] == "PowerMeterFailure"


def stop_by(rig: Rig, how: str, cid: int, tag: str) -> None:
    if how == "Remote":
        assert rig.request("RemoteStopTransaction", {"transactionId": rig.session(cid).transaction_id}) == {
            "status": "Accepted"}
    elif how == "Local":
        rig.badge(tag)
    elif how == "EVDisconnected":
        rig.unplug(cid)


@pytest.mark.parametrize("reason", ["Remote", "Local", "EVDisconnected"])
def test_r_tx_1_stop_transaction_meter_stop_from_the_reading_after_the_stop(make_rig, reason):
    rig = make_rig()
    rig.boot()
    tx = rig.charge(1, "TAG1")
    rig.energy[1] = 19_000
    rig.advance(10)  # live samples read 19 000 Wh
    rig.auto_sample = False
    rig.energy[1] = 19_500  # what the meter says once the power is off
    t_stop = rig.now()
    n = len(rig.log)
    stop_by(rig, reason, 1, "TAG1")
    assert [c for _, c in rig.log[n:]][:2] == [cmd.DisablePower(1), cmd.Sample(1, "stop")]  # power off, then read
    assert rig.sent("StopTransaction") == []
    rig.answer_sample(rig.held[0])
    [stop] = rig.sent("StopTransaction")
    expected = {"meterStop": 19_500, "timestamp": rfc3339(rig.clock.wall()), "reason": reason, "transactionId": tx}
    if reason == "Local":
        expected["idTag"] = "TAG1"
    assert stop.payload == expected and stop.at == t_stop
    # delivered and forgotten
    assert rig.store.pending() == [] and rig.store.open_transactions() == []
    assert rig.store.transaction(1) is None


def test_r_tx_1_remote_stop_of_an_unknown_transaction_rejected(make_rig):
    rig = make_rig()
    rig.boot()
    tx = rig.charge(1)
    assert rig.request("RemoteStopTransaction", {"transactionId": tx + 1}) == {"status": "Rejected"}
    assert rig.session(1) is not None and not rig.session(1).stopping


def test_r_tx_1_meter_stop_never_below_meter_start(make_rig):
    rig = make_rig()
    rig.boot()
    rig.energy[1] = 5_000
    tx = rig.charge(1)
    rig.energy[1] = 4_990  # a meter glitch
    rig.request("RemoteStopTransaction", {"transactionId": tx})
    assert rig.sent("StopTransaction")[0].payload["meterStop"] == 5_000


# ============================================================================ R-TX 5
def test_r_tx_5_stop_on_ev_side_disconnect_false_keeps_the_transaction_suspended_ev(make_rig):
    rig = make_rig(StopTransactionOnEVSideDisconnect=False, MinimumStatusDuration=0)
    rig.boot()
    rig.charge(1)
    rig.advance(10)
    assert rig.status(1) == "Charging"
    assert rig.unplug(1)[:1] == [cmd.DisablePower(1)]
    assert rig.status(1) == "SuspendedEV"
    rig.advance(60)
    assert rig.sent("StopTransaction") == [] and rig.session(1) is not None
    assert rig.plug(1)[:1] == [cmd.EnablePower(1)]
    rig.advance(2)
    assert rig.status(1) == "Charging" and rig.power_on[1]


def test_r_tx_5_stop_on_ev_side_disconnect_true_stops_then_available(make_rig):
    rig = make_rig(StopTransactionOnEVSideDisconnect=True, MinimumStatusDuration=0)
    rig.boot()
    rig.charge(1)
    rig.unplug(1)
    assert [m.payload["reason"] for m in rig.sent("StopTransaction")] == ["EVDisconnected"]
    assert rig.status(1) == "Available"


def test_r_status_1_finishing_after_a_stop_with_the_cable_in_then_available(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    tx = rig.charge(1)
    rig.request("RemoteStopTransaction", {"transactionId": tx})
    assert rig.status(1) == "Finishing"
    rig.unplug(1)
    assert rig.status(1) == "Available"


# ============================================================================ R-TX 2
def periodic(rig: Rig, since: int = 0) -> list[Sent]:
    return [m for m in rig.sent("MeterValues", since) if m.queued]


def test_r_tx_2_meter_values_every_sample_interval_with_measurands_units_and_format(make_rig):
    rig = make_rig(MeterValueSampleInterval=30)
    rig.boot()
    tx = rig.charge(1)
    t0 = rig.now()
    rig.energy[1] = 12_345
    rig.power_w[1] = 48_000.0
    rig.advance(29.9)
    assert periodic(rig) == []
    rig.advance(0.1)
    [mv] = periodic(rig)
    assert mv.at == t0 + 30
    assert mv.payload["connectorId"] == 1 and mv.payload["transactionId"] == tx
    [entry] = mv.payload["meterValue"]
    assert entry["timestamp"] == rfc3339(rig.clock.wall())
    assert [sv["measurand"] for sv in entry["sampledValue"]] == DEFAULT_SAMPLED
    for sv in entry["sampledValue"]:
        assert sv["unit"] == UNITS[sv["measurand"]]
        assert sv["format"] == "Raw" and sv["context"] == "Sample.Periodic"
        assert isinstance(sv["value"], str)
    assert sampled_value(entry, "Energy.Active.Import.Register")["value"] == "12345"
    assert sampled_value(entry, "Power.Active.Import")["value"] == "48000"
    assert sampled_value(entry, "Current.Import")["value"] == "120"
    assert sampled_value(entry, "Power.Offered")["value"] == "60000"
    assert sampled_value(entry, "Current.Offered")["value"] == "150"
    assert sampled_value(entry, "SoC")["value"] == "40"
    rig.advance(90)
    assert [m.at - t0 for m in periodic(rig)] == [30, 60, 90, 120]


def test_r_tx_2_voltage_added_when_enable_meter_values_contain_voltage(make_rig):
    rig = make_rig(MeterValueSampleInterval=30, EnableMeterValuesContainVoltage=True,
                   MeterValuesSampledData="Energy.Active.Import.Register")
    rig.boot()
    rig.charge(1)
    rig.advance(30)
    [mv] = periodic(rig)
    [entry] = mv.payload["meterValue"]
    assert [sv["measurand"] for sv in entry["sampledValue"]] == ["Energy.Active.Import.Register", "Voltage"]
    assert sampled_value(entry, "Voltage") == {
        "value": "400", "context": "Sample.Periodic", "format": "Raw", "measurand": "Voltage", "unit": "V",
    }


def test_r_tx_2_no_periodic_meter_values_without_a_transaction_or_when_interval_is_zero(make_rig):
    rig = make_rig(MeterValueSampleInterval=30)
    rig.boot()
    rig.plug(1)
    rig.advance(300)
    assert periodic(rig) == []
    rig.request("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "0"})
    rig.request("RemoteStartTransaction", {"idTag": "T", "connectorId": 1})
    rig.advance(300)
    assert periodic(rig) == [] and rig.session(1) is not None


def test_r_tx_2_clock_aligned_meter_values_only_during_a_transaction(make_rig):
    rig = make_rig(ClockAlignedDataInterval=900, MeterValueSampleInterval=0)
    rig.boot()
    assert rig.clock.wall() == datetime(2026, 4, 16, 8, 7, 30, tzinfo=UTC)
    rig.advance(1800)  # two boundaries pass with no transaction
    assert rig.sent("MeterValues") == []
    tx = rig.charge(1)
    rig.advance(449.9)
    assert rig.sent("MeterValues") == []
    rig.advance(0.1)
    [mv] = rig.sent("MeterValues")
    assert mv.payload["transactionId"] == tx
    [entry] = mv.payload["meterValue"]
    assert entry["timestamp"] == "2026-04-16T08:45:00.000Z"
    assert [sv["measurand"] for sv in entry["sampledValue"]] == DEFAULT_ALIGNED
    assert {sv["context"] for sv in entry["sampledValue"]} == {"Sample.Clock"}
    assert {sv["format"] for sv in entry["sampledValue"]} == {"Raw"}
    rig.advance(900)
    assert [m.payload["meterValue"][0]["timestamp"] for m in rig.sent("MeterValues")] == [
        "2026-04-16T08:45:00.000Z", "2026-04-16T09:00:00.000Z",
    ]
    rig.request("RemoteStopTransaction", {"transactionId": tx})
    rig.advance(3600)
    assert len(rig.sent("MeterValues")) == 2


# ============================================================================ R-TX 3
def test_r_tx_3_stop_txn_sampled_data_goes_into_transaction_data(make_rig):
    rig = make_rig(MeterValueSampleInterval=60, StopTxnSampledData="Energy.Active.Import.Register,SoC")
    rig.boot()
    rig.energy[1] = 1_000
    tx = rig.charge(1)
    rig.energy[1] = 2_000
    rig.soc[1] = 55
    rig.advance(60)
    rig.energy[1] = 3_000
    rig.request("RemoteStopTransaction", {"transactionId": tx})
    [stop] = rig.sent("StopTransaction")
    data = stop.payload["transactionData"]
    contexts = [{sv["context"] for sv in entry["sampledValue"]} for entry in data]
    assert contexts == [{"Transaction.Begin"}, {"Sample.Periodic"}, {"Transaction.End"}]
    energies = [sampled_value(entry, "Energy.Active.Import.Register")["value"] for entry in data]
    assert energies == ["1000", "2000", "3000"]
    assert sampled_value(data[1], "SoC")["value"] == "55"
    for entry in data:
        assert RFC3339_SENT.fullmatch(entry["timestamp"])
        for sv in entry["sampledValue"]:
            assert sv["format"] == "Raw" and sv["unit"] == UNITS[sv["measurand"]]


def test_r_tx_3_no_transaction_data_when_stop_txn_sampled_data_is_empty(make_rig):
    rig = make_rig(StopTxnSampledData="")
    rig.boot()
    tx = rig.charge(1)
    rig.advance(120)
    rig.request("RemoteStopTransaction", {"transactionId": tx})
    assert "transactionData" not in rig.sent("StopTransaction")[0].payload


# ============================================================================ R-TX 4
def test_r_tx_4_offline_sampling_at_disconnected_interval_and_back_to_normal_after_reconnect(make_rig):
    rig = make_rig(MeterValueSampleInterval=60, disconnectedMeterValueSampleInterval=300)
    rig.boot()
    tx = rig.charge(1)
    t0 = rig.now()
    rig.advance(10)
    rig.feed(ev.LinkDown())
    t_down = rig.now()
    rig.advance(700)  # offline until t0 + 710
    offline = [t for t, c in rig.commands(cmd.Sample) if c.purpose == "periodic"]
    assert offline and all(t > t_down for t in offline)
    assert [b - a for a, b in zip(offline, offline[1:])] == [300] * (len(offline) - 1)
    assert len(offline) >= 2
    assert rig.sent("MeterValues") == []  # queued, not sent
    assert [r.action for r in rig.store.pending()] == ["MeterValues"] * len(offline)
    rig.boot()
    t_up = rig.now()
    delivered = [m for m in rig.wire if m.queued and m.at == t_up]
    assert [m.action for m in delivered] == ["MeterValues"] * len(offline)
    assert all(m.payload["transactionId"] == tx for m in delivered)
    rig.advance(120)
    online = [t - t_up for t, c in rig.commands(cmd.Sample, since=t_up) if c.purpose == "periodic"]
    assert online and online[0] <= 60, f"back online, the next sample came {online[0]} s later"
    assert [b - a for a, b in zip(online, online[1:])] == [60] * (len(online) - 1)


def test_r_tx_4_disconnected_interval_zero_samples_as_online(make_rig):
    rig = make_rig(MeterValueSampleInterval=60, disconnectedMeterValueSampleInterval=0)
    rig.boot()
    rig.charge(1)
    rig.feed(ev.LinkDown())
    t0 = rig.now()
    rig.advance(300)
    assert [t - t0 for t, c in rig.commands(cmd.Sample) if c.purpose == "periodic"] == [60, 120, 180, 240, 300]


def test_r_tx_4_transaction_messages_queued_offline_are_delivered_in_order_after_reconnect(make_rig):
    rig = make_rig(MeterValueSampleInterval=60, disconnectedMeterValueSampleInterval=60)
    rig.boot()
    rig.feed(ev.LinkDown())
    rig.plug(1)
    rig.badge("OFFLINE-1")  # AllowOfflineTxForUnknownId=true by default
    assert rig.session(1) is not None
    rig.advance(130)
    rig.badge("OFFLINE-1")
    assert [r.action for r in rig.store.pending()] == [
        "StartTransaction", "MeterValues", "MeterValues", "StopTransaction"]
    assert not [m for m in rig.wire if m.queued]
    rig.boot()
    queued = [m for m in rig.wire if m.queued]
    assert [m.action for m in queued] == ["StartTransaction", "MeterValues", "MeterValues", "StopTransaction"]
    assert {m.payload.get("transactionId") for m in queued[1:]} == {100}
    assert rig.store.pending() == [] and rig.store.open_transactions() == []


def test_r_tx_4_offline_badge_refused_when_offline_tx_for_unknown_id_disabled(make_rig):
    rig = make_rig(AllowOfflineTxForUnknownId=False)
    rig.boot()
    rig.feed(ev.LinkDown())
    rig.plug(1)
    rig.badge("OFFLINE-1")
    assert rig.session(1) is None and rig.store.pending() == []


def test_r_tx_4_transaction_message_attempts_and_retry_interval_after_call_errors(make_rig):
    rig = make_rig(TransactionMessageAttempts=3, TransactionMessageRetryInterval=20)
    rig.boot()
    rig.auto_deliver = False
    rig.plug(1)
    rig.badge("TAG1")
    [row] = rig.store.pending()
    assert row.action == "StartTransaction"
    assert rig.feed(ev.TxMessageFailed(row.seq, row.action, "InternalError")) == [cmd.WakeOutbox(20.0)]
    assert rig.store.pending()[0].attempts == 1
    assert rig.feed(ev.TxMessageFailed(row.seq, row.action, "InternalError")) == [cmd.WakeOutbox(40.0)]
    assert rig.store.pending()[0].attempts == 2
    assert rig.feed(ev.TxMessageFailed(row.seq, row.action, "InternalError")) == [cmd.WakeOutbox(0.0)]
    assert rig.store.pending() == []  # given up after TransactionMessageAttempts


def test_r_tx_4_default_attempts_drop_after_the_second_call_error_of_a_stop(make_rig):
    rig = make_rig()  # TransactionMessageAttempts=2, TransactionMessageRetryInterval=10
    rig.boot()
    tx = rig.charge(1)
    rig.auto_deliver = False
    rig.request("RemoteStopTransaction", {"transactionId": tx})
    [row] = rig.store.pending()
    assert row.action == "StopTransaction" and row.payload["reason"] == "Remote"
    assert rig.feed(ev.TxMessageFailed(row.seq, row.action, "FormationViolation")) == [cmd.WakeOutbox(10.0)]
    assert rig.feed(ev.TxMessageFailed(row.seq, row.action, "FormationViolation")) == [cmd.WakeOutbox(0.0)]
    assert rig.store.pending() == []


def test_r_tx_4_messages_after_a_failed_one_still_go_once_it_is_dropped(make_rig):
    rig = make_rig(TransactionMessageAttempts=1)
    rig.boot()
    rig.auto_deliver = False
    rig.plug(1)
    rig.badge("TAG1")
    tx = rig.session(1)
    rig.advance(5)
    rig.feed(ev.TxMessageFailed(rig.store.pending()[0].seq, "StartTransaction", "InternalError"))
    assert rig.store.pending() == []
    assert rig.session(1) is tx and not tx.stopping  # the charge itself goes on


# ============================================================================ R-STATUS 1
def test_r_status_1_minimum_status_duration_debounces_but_faulted_goes_at_once(make_rig):
    rig = make_rig(MinimumStatusDuration=10)
    rig.boot()
    mark = rig.mark()
    rig.advance(30)
    rig.plug(1)
    rig.advance(5)
    rig.unplug(1)  # a 5 s Preparing is never reported
    rig.advance(60)
    assert rig.statuses(1, mark) == []
    rig.plug(1)
    t_plug = rig.now()
    rig.advance(9.9)
    assert rig.statuses(1, mark) == []
    rig.advance(0.1)
    [prep] = [m for m in rig.sent("StatusNotification", mark) if m.payload["connectorId"] == 1]
    assert prep.payload["status"] == "Preparing" and prep.at == t_plug + 10
    assert prep.payload["timestamp"] == rfc3339(rig.clock.wall())
    rig.advance(3)
    t_fault = rig.now()
    rig.feed(ev.FaultRaised("0x100206", 1))
    fault = rig.sent("StatusNotification")[-1]
    assert fault.at == t_fault and fault.payload["status"] == "Faulted" and fault.payload["connectorId"] == 1


def test_r_status_1_an_alarm_is_reported_within_minimum_status_duration(make_rig):
    rig = make_rig(MinimumStatusDuration=10)
    t0 = rig.now()
    rig.boot()
    rig.advance(2)
    mark = rig.mark()
    rig.feed(ev.FaultRaised("0x100101", 1))  # Terminal over-temperature alarm
    rig.advance(30)
    [alarm] = [m for m in rig.sent("StatusNotification", mark) if m.payload["connectorId"] == 1]
    assert alarm.payload["errorCode"] == "HighTemperature" and alarm.payload["status"] == "Available"
    assert alarm.at <= t0 + 10


# ============================================================================ R-STATUS 2
def expected_stop_reason(dtc: Dtc) -> str:
    if "emergency stop" in dtc.description.lower():
        return "EmergencyStop"
    return "PowerLoss" if "power loss" in dtc.description.lower() else "Other"


@pytest.mark.parametrize("dtc", list(DTC_TABLE.values()), ids=lambda d: d.code)
def test_r_status_2_every_dtc_on_a_connector_reported_and_acted_upon(make_rig, dtc):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    tx = rig.charge(1)
    rig.advance(10)
    assert rig.status(1) == "Charging"
    mark = rig.mark()
    rig.feed(ev.FaultRaised(dtc.code, 1))
    first = rig.statuses(1, mark)[0]
    assert first["errorCode"] == dtc.error_code
    assert first["vendorErrorCode"] == dtc.code
    assert first["info"] == dtc.description and len(first["info"]) <= 50
    if dtc.severity == "error":
        assert first["status"] == "Faulted"
        stops = rig.sent("StopTransaction", mark)
        assert [(m.payload["transactionId"], m.payload["reason"]) for m in stops] == [(tx, expected_stop_reason(dtc))]
        assert not rig.power_on[1]
        assert remote_start(rig, "AGAIN", 1) == "Rejected"  # no start on a faulted connector
    else:
        assert first["status"] == "Charging"
        assert rig.sent("StopTransaction", mark) == []
        assert rig.session(1) is not None and rig.power_on[1]
    assert rig.statuses(2, mark) == []  # the other connector is not concerned
    rig.feed(ev.FaultCleared(dtc.code.lower(), 1))
    # (the meter failure DTC also clears itself at the stop's good meter reading)
    cleared = rig.statuses(1)[-1]
    assert cleared["errorCode"] == "NoError"
    assert "vendorErrorCode" not in cleared and "info" not in cleared
    assert cleared["status"] == ("Finishing" if dtc.severity == "error" else "Charging")


@pytest.mark.parametrize("dtc", list(DTC_TABLE.values()), ids=lambda d: d.code)
def test_r_status_2_every_dtc_on_the_station_reported_on_connector_0(make_rig, dtc):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    rig.charge(1, "A")
    rig.charge(2, "B")
    mark = rig.mark()
    rig.feed(ev.FaultRaised(dtc.code, 0))
    [station] = rig.statuses(0, mark)
    assert (station["errorCode"], station["vendorErrorCode"], station["info"]) == (
        dtc.error_code, dtc.code, dtc.description)
    stops = rig.sent("StopTransaction", mark)
    if dtc.severity == "error":
        assert station["status"] == "Faulted"
        assert rig.status(1) == rig.status(2) == "Faulted"
        assert sorted(m.payload["reason"] for m in stops) == [expected_stop_reason(dtc)] * 2
    else:
        assert station["status"] == "Available"
        assert stops == [] and rig.status(1) == rig.status(2) == "Charging"
    rig.feed(ev.FaultCleared(dtc.code, 0))
    assert rig.statuses(0)[-1]["errorCode"] == "NoError" and rig.statuses(0)[-1]["status"] == "Available"


def test_r_status_2_meter_unreadable_during_a_charge_is_a_power_meter_failure(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    tx = rig.charge(1)
    rig.energy[1] = 10_500
    rig.advance(3)
    rig.meter_ok[1] = False
    rig.advance(1)  # the next live sample fails
    last = rig.statuses(1)[-1]
    assert (last["status"], last["errorCode"], last["vendorErrorCode"]) == ("Faulted", "PowerMeterFailure", "0x10020F")
    [stop] = rig.sent("StopTransaction")
    assert (stop.payload["transactionId"], stop.payload["meterStop"]) == (tx, 10_500)  # the last good reading
    rig.meter_ok[1] = True
    rig.request("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1})
    assert rig.statuses(1)[-1]["errorCode"] == "NoError"


def test_r_status_2_unknown_dtc_is_an_other_error(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    rig.feed(ev.FaultRaised("0x00123456", 2))
    last = rig.statuses(2)[-1]
    assert (last["status"], last["errorCode"], last["vendorErrorCode"]) == ("Faulted", "OtherError", "0x123456")
    rig.feed(ev.FaultCleared("123456", 2))
    assert rig.statuses(2)[-1]["errorCode"] == "NoError"


# ============================================================================ R-STATUS 3
TAMPER = sorted(d.code for d in DTC_TABLE.values() if any(w in d.description.lower() for w in ("door", "tilt")))


def test_r_status_3_tamper_dtcs_are_the_door_and_tilt_rows():
    assert TAMPER == ["0x10020C", "0x10020E", "0x200204", "0x20020B"]


@pytest.mark.parametrize("code", TAMPER)
@pytest.mark.parametrize("cid", [0, 1])
def test_r_status_3_door_and_tilt_send_tamper_detection_security_event(make_rig, code, cid):
    rig = make_rig(SecurityEventsEnabled=True)
    rig.boot()
    rig.feed(ev.FaultRaised(code, cid))
    [event] = tamper_events(rig)
    assert event.payload["type"] == "TamperDetectionActivated"
    assert event.payload["timestamp"] == rfc3339(rig.clock.wall())
    assert RFC3339_SENT.fullmatch(event.payload["timestamp"])
    rig.feed(ev.FaultRaised(code, cid))  # the same fault again is not a new event
    assert len(tamper_events(rig)) == 1


def tamper_events(rig: Rig) -> list:
    return [m for m in rig.sent("SecurityEventNotification") if m.payload["type"] == "TamperDetectionActivated"]


@pytest.mark.parametrize("code", sorted(set(DTC_TABLE) - set(TAMPER)))
def test_r_status_3_other_dtcs_send_no_security_event(make_rig, code):
    rig = make_rig(SecurityEventsEnabled=True)
    rig.boot()
    rig.feed(ev.FaultRaised(code, 1))
    assert tamper_events(rig) == []
    assert [m.payload["type"] for m in rig.sent("SecurityEventNotification")] == ["StartupOfTheDevice"]


def test_r_status_3_tamper_security_event_gated_by_security_events_enabled(make_rig):
    rig = make_rig(SecurityEventsEnabled=False)
    rig.boot()
    rig.feed(ev.FaultRaised("0x10020C", 1))
    assert rig.sent("SecurityEventNotification") == []


# ============================================================================ R-OPS: ChangeAvailability
def test_r_ops_5_change_availability_idle_connector_accepted_and_persisted(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    reply = rig.request("ChangeAvailability", {"connectorId": 2, "type": "Inoperative"})
    assert reply == {"status": "Accepted"}
    assert rig.status(2) == "Unavailable" and rig.status(1) == "Available"
    assert rig.store.availability() == {2: "Inoperative"}
    rig.plug(2)
    assert remote_start(rig, "T", 2) == "Rejected"
    rig.badge("T")
    assert rig.session(2) is None and rig.sent("Authorize") == []
    assert rig.request("ChangeAvailability", {"connectorId": 2, "type": "Operative"}) == {"status": "Accepted"}
    assert rig.status(2) == "Preparing" and rig.store.availability() == {2: "Operative"}


def test_r_ops_5_change_availability_during_a_transaction_scheduled_then_applied(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    tx = rig.charge(1)
    reply = rig.request("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert reply == {"status": "Scheduled"}
    assert rig.store.availability() == {1: "Inoperative"}
    rig.advance(60)
    assert rig.session(1) is not None and not rig.session(1).stopping  # the charge goes on
    assert rig.status(1) == "Charging"
    rig.request("RemoteStopTransaction", {"transactionId": tx})
    assert rig.status(1) == "Unavailable"
    rig.unplug(1)
    rig.plug(1)
    assert remote_start(rig, "T", 1) == "Rejected"


def test_r_ops_5_change_availability_connector_0_means_all(make_rig):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    tx = rig.charge(1)
    assert rig.request("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}) == {"status": "Scheduled"}
    assert rig.store.availability() == {0: "Inoperative", 1: "Inoperative", 2: "Inoperative"}
    assert rig.status(0) == "Unavailable" and rig.status(2) == "Unavailable"
    assert rig.status(1) == "Charging"
    rig.request("RemoteStopTransaction", {"transactionId": tx})
    assert rig.status(1) == "Unavailable"
    assert remote_start(rig, "T") == "Rejected"
    assert rig.request("ChangeAvailability", {"connectorId": 0, "type": "Operative"}) == {"status": "Accepted"}
    assert [rig.status(c) for c in (0, 1, 2)] == ["Available", "Finishing", "Available"]


def test_r_ops_5_change_availability_survives_a_restart(make_rig, tmp_path):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    rig.request("ChangeAvailability", {"connectorId": 2, "type": "Inoperative"})
    rig.close(clean=True)
    again = make_rig(MinimumStatusDuration=0)
    again.boot()
    assert again.status(2) == "Unavailable" and again.status(1) == "Available"


def test_r_ops_5_change_availability_inoperative_cancels_a_waiting_remote_start(make_rig):
    rig = make_rig(EnableRemoteStartNoConnectedEV=True)
    rig.boot()
    assert remote_start(rig, cid=2) == "Accepted"
    assert rig.request("ChangeAvailability", {"connectorId": 2, "type": "Inoperative"}) == {"status": "Accepted"}
    assert rig.request("ChangeAvailability", {"connectorId": 2, "type": "Operative"}) == {"status": "Accepted"}
    rig.plug(2)
    assert rig.sent("StartTransaction") == [] and rig.session(2) is None
    assert remote_start(rig, "FRESH", 2) == "Accepted"  # the connector takes a new one
    assert [m.payload["idTag"] for m in rig.sent("StartTransaction")] == ["FRESH"]


def test_r_ops_5_change_availability_station_inoperative_cancels_a_remote_start_for_any_connector(make_rig):
    rig = make_rig(EnableRemoteStartNoConnectedEV=True)
    rig.boot()
    assert remote_start(rig) == "Accepted"
    rig.request("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
    rig.request("ChangeAvailability", {"connectorId": 0, "type": "Operative"})
    rig.plug(1)
    assert rig.sent("StartTransaction") == []


@pytest.mark.parametrize("cid", [3, 42])
def test_r_ops_5_change_availability_unknown_connector_rejected(make_rig, cid):
    rig = make_rig()
    rig.boot()
    assert rig.request("ChangeAvailability", {"connectorId": cid, "type": "Inoperative"}) == {"status": "Rejected"}
    assert rig.store.availability() == {}


# ============================================================================ R-OPS 4: Reset
@pytest.mark.parametrize(("kind", "reason"), [("Soft", "SoftReset"), ("Hard", "HardReset")])
def test_r_ops_4_reset_stops_transactions_then_restarts_once_stops_are_stored(make_rig, kind, reason):
    rig = make_rig()
    rig.boot()
    rig.charge(1, "A")
    rig.charge(2, "B")
    rig.auto_sample = False
    rig.auto_deliver = False
    assert rig.request("Reset", {"type": kind}) == {"status": "Accepted"}
    assert rig.last_commands == [
        cmd.DisablePower(1), cmd.Sample(1, "stop"), cmd.DisablePower(2), cmd.Sample(2, "stop")]
    assert remote_start(rig, "C", 1) == "Rejected"
    first = rig.answer_sample(rig.held[0])
    assert of_type(first, cmd.Restart) == []
    second = rig.answer_sample(rig.held[0])
    assert second[-1] == cmd.Restart(kind.lower())
    stops = [r for r in rig.store.pending() if r.action == "StopTransaction"]
    assert [r.payload["reason"] for r in stops] == [reason, reason]
    assert rig.store.open_transactions() == []
    assert len(rig.commands(cmd.Restart)) == 1


@pytest.mark.parametrize("start_sample_first", [True, False])
def test_r_ops_4_no_new_start_while_a_reset_waits_for_its_stops(make_rig, start_sample_first):
    rig = make_rig()
    rig.boot()
    rig.charge(1)
    rig.plug(2)
    rig.auto_sample = False
    rig.request("Reset", {"type": "Soft"})
    assert remote_start(rig, "LATE", 2) == "Rejected"
    rig.badge("LATE")  # someone badges on the plugged connector while the reset runs
    for sample in sorted(rig.held, key=lambda c: (c.purpose != "start") == start_sample_first):
        rig.answer_sample(sample)
    assert rig.sent("StartTransaction")[1:] == [] and rig.session(2) is None
    assert rig.store.open_transactions() == []
    assert [c for _, c in rig.commands(cmd.Restart)] == [cmd.Restart("soft")]
    assert remote_start(rig, "LATER", 2) == "Rejected"  # still leaving: nothing new starts


def test_r_model_3_no_new_start_while_a_starcharge_stops_on_power_fail(make_rig):
    rig = make_rig(STARCHARGE)
    rig.boot()
    rig.charge(1)
    rig.plug(2)
    rig.auto_sample = False
    rig.feed(ev.PowerFailing())
    rig.badge("LATE")
    for sample in sorted(rig.held, key=lambda c: c.purpose != "start"):
        rig.answer_sample(sample)
    assert rig.session(2) is None and rig.store.open_transactions() == []
    assert [c for _, c in rig.commands(cmd.Restart)] == [cmd.Restart("power_lost")]


@pytest.mark.parametrize("kind", ["Soft", "Hard"])
def test_r_ops_4_reset_without_transactions_restarts_at_once(make_rig, kind):
    rig = make_rig()
    rig.boot()
    assert rig.request("Reset", {"type": kind}) == {"status": "Accepted"}
    assert rig.last_commands == [cmd.Restart(kind.lower())]


# ============================================================================ R-OPS 2: other requests
@pytest.mark.parametrize("cid", [1, 2])
def test_r_ops_2_unlock_connector_not_supported(make_rig, cid):
    rig = make_rig()
    rig.boot()
    rig.charge(1)
    assert rig.request("UnlockConnector", {"connectorId": cid}) == {"status": "NotSupported"}
    assert rig.last_commands == [] and rig.session(1) is not None


def test_r_dt_4_data_transfer_unknown_vendor_and_message(make_rig):
    rig = make_rig()
    rig.boot()
    assert rig.request("DataTransfer", {"vendorId": "com.example"}) == {"status": "UnknownVendorId"}
    assert rig.request("DataTransfer", {"vendorId": "com.example", "messageId": "CostUpdated"}) == {
        "status": "UnknownVendorId"}
    assert rig.request("DataTransfer", {"vendorId": "com.se.cost", "messageId": "Nope"}) == {
        "status": "UnknownMessageId"}
    assert rig.request("DataTransfer", {"vendorId": "com.se.cost"}) == {"status": "UnknownMessageId"}


@pytest.mark.parametrize("id_field", ["transactionId", "TransactionId"])
@pytest.mark.parametrize("as_text", [True, False])
def test_r_dt_1_cost_updated_accepted_with_either_transaction_id_spelling(make_rig, id_field, as_text):
    import json

    rig = make_rig()
    rig.boot()
    tx = rig.charge(1)
    assert rig.charger.snapshot()["connectors"][0]["cost"] is None  # nothing shown until one arrives
    body = {"currency": "EUR", "method": "CostUpdated", "connectID": 1, "totalCost": 16.78, id_field: tx}
    data = json.dumps(body) if as_text else body
    reply = rig.request("DataTransfer", {"vendorId": "com.se.cost", "messageId": "CostUpdated", "data": data})
    assert reply == {"status": "Accepted"}
    cost = rig.charger.snapshot()["connectors"][0]["cost"]
    assert cost == {"currency": "EUR", "total_cost": 16.78, "transaction_id": tx, "method": "CostUpdated"}


@pytest.mark.parametrize("data", ['{"connectID": 9, "totalCost": 1}', '{"totalCost": 1}', "not json", None])
def test_r_dt_1_cost_updated_bad_data_rejected(make_rig, data):
    rig = make_rig()
    rig.boot()
    payload = {"vendorId": "com.se.cost", "messageId": "CostUpdated"}
    if data is not None:
        payload["data"] = data
    assert rig.request("DataTransfer", payload) == {"status": "Rejected"}


# ============================================================================ R-TRIG
@pytest.mark.parametrize(("requested", "action"), [
    ("BootNotification", "BootNotification"),
    ("Heartbeat", "Heartbeat"),
    ("DiagnosticsStatusNotification", "DiagnosticsStatusNotification"),
    ("FirmwareStatusNotification", "FirmwareStatusNotification"),
])
def test_r_trig_trigger_message_sends_the_requested_message(make_rig, requested, action):
    rig = make_rig()
    rig.boot()
    mark = rig.mark()
    assert rig.request("TriggerMessage", {"requestedMessage": requested}) == {"status": "Accepted"}
    assert [m.action for m in rig.sent(since=mark)] == [action]
    if action.endswith("StatusNotification"):
        assert rig.sent(action)[0].payload == {"status": "Idle"}


def test_r_trig_triggered_boot_notification_answer_sets_the_clock_only(make_rig):
    rig = make_rig()
    rig.boot()
    rig.request("TriggerMessage", {"requestedMessage": "BootNotification"})
    call = rig.pop_call("BootNotification")
    assert call.payload["chargePointSerialNumber"] == SERIAL
    commands = rig.answer(call, {"status": "Accepted", "interval": 60, "currentTime": "2026-04-16T10:00:00Z"})
    assert commands == []  # no fresh round of status notifications, no second registration
    assert rig.clock.wall() == datetime(2026, 4, 16, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(("cid", "expected"), [(None, [0, 1, 2]), (0, [0]), (1, [1]), (2, [2])])
def test_r_trig_trigger_status_notification(make_rig, cid, expected):
    rig = make_rig(MinimumStatusDuration=0)
    rig.boot()
    rig.plug(2)
    mark = rig.mark()
    payload: dict[str, Any] = {"requestedMessage": "StatusNotification"}
    if cid is not None:
        payload["connectorId"] = cid
    assert rig.request("TriggerMessage", payload) == {"status": "Accepted"}
    sent = rig.statuses(since=mark)
    assert [p["connectorId"] for p in sent] == expected
    assert all(p["status"] == ("Preparing" if p["connectorId"] == 2 else "Available") for p in sent)


@pytest.mark.parametrize(("cid", "expected"), [(None, [1, 2]), (0, [1, 2]), (1, [1]), (2, [2])])
def test_r_trig_trigger_meter_values(make_rig, cid, expected):
    rig = make_rig()
    rig.boot()
    tx = rig.charge(2)
    payload: dict[str, Any] = {"requestedMessage": "MeterValues"}
    if cid is not None:
        payload["connectorId"] = cid
    assert rig.request("TriggerMessage", payload) == {"status": "Accepted"}
    assert rig.last_commands == [cmd.Sample(c, "trigger") for c in expected]
    sent = [m for m in rig.sent("MeterValues") if not m.queued]
    assert [m.payload["connectorId"] for m in sent] == expected
    for m in sent:
        [entry] = m.payload["meterValue"]
        assert {sv["context"] for sv in entry["sampledValue"]} == {"Trigger"}
        assert m.payload.get("transactionId") == (tx if m.payload["connectorId"] == 2 else None)
    assert rig.store.pending() == []  # a triggered sample is not a queued transaction message


@pytest.mark.parametrize("requested", ["StatusNotification", "MeterValues", "Heartbeat"])
def test_r_trig_trigger_message_for_a_bad_connector_rejected(make_rig, requested):
    rig = make_rig()
    rig.boot()
    mark = rig.mark()
    assert rig.request("TriggerMessage", {"requestedMessage": requested, "connectorId": 3}) == {"status": "Rejected"}
    assert rig.last_commands == [] and rig.sent(since=mark) == []


# ============================================================================ R-CONF via the core
def visible_keys() -> list[str]:
    return [k.name for k in KEYS if k.access is not Access.WO and not k.pnc]


def test_r_conf_2_get_configuration_all_keys(make_rig):
    rig = make_rig()
    reply = rig.request("GetConfiguration", {})
    entries = reply["configurationKey"]
    assert [e["key"] for e in entries] == visible_keys()
    assert "unknownKey" not in reply
    assert len(entries) <= 200
    by_key = {e["key"]: e for e in entries}
    assert "AuthorizationKey" not in by_key
    assert by_key["HeartbeatInterval"] == {"key": "HeartbeatInterval", "readonly": False, "value": "60"}
    assert by_key["NumberOfConnectors"] == {"key": "NumberOfConnectors", "readonly": True, "value": "2"}
    assert rig.request("GetConfiguration", {"key": []}) == reply


def test_r_conf_2_get_configuration_asked_keys_and_unknown_keys(make_rig):
    rig = make_rig(MeterValueSampleInterval=30)
    reply = rig.request("GetConfiguration", {"key": ["meterValueSampleInterval", "NoSuchKey", "AuthorizationKey"]})
    assert reply == {
        "configurationKey": [{"key": "MeterValueSampleInterval", "readonly": False, "value": "30"}],
        "unknownKey": ["NoSuchKey", "AuthorizationKey"],
    }


def test_r_conf_2_get_configuration_never_more_than_get_configuration_max_keys(make_rig):
    rig = make_rig()
    max_keys = rig.keys.get_int("GetConfigurationMaxKeys")
    asked = ["HeartbeatInterval", *[f"Unknown{i}" for i in range(max_keys + 50)]]
    reply = rig.request("GetConfiguration", {"key": asked})
    assert len(reply["configurationKey"]) + len(reply["unknownKey"]) == max_keys
    assert reply["configurationKey"][0]["key"] == "HeartbeatInterval"


def test_r_conf_3_change_configuration_persisted_in_the_store(make_rig):
    rig = make_rig()
    assert rig.request("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "30"}) == {
        "status": "Accepted"}
    assert rig.request("ChangeConfiguration", {"key": "BoxIdentifier", "value": "BOX-7"}) == {
        "status": "RebootRequired"}
    assert rig.request("ChangeConfiguration", {"key": "NumberOfConnectors", "value": "3"}) == {"status": "Rejected"}
    assert rig.request("ChangeConfiguration", {"key": "MinimumStatusDuration", "value": "-1"}) == {
        "status": "Rejected"}
    assert rig.request("ChangeConfiguration", {"key": "NoSuchKey", "value": "1"}) == {"status": "NotSupported"}
    assert rig.store.keys() == {"MeterValueSampleInterval": "30", "BoxIdentifier": "BOX-7"}
    reborn = KeyStore(rig.model.key_values(), persisted=rig.store.keys())
    assert reborn.get_int("MeterValueSampleInterval") == 30 and reborn.get("BoxIdentifier") == "BOX-7"


def test_r_conf_3_changed_sample_interval_applies_to_the_running_transaction(make_rig):
    rig = make_rig(MeterValueSampleInterval=600)
    rig.boot()
    rig.charge(1)
    rig.advance(5)
    t = rig.now()
    rig.request("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "20"})
    rig.advance(60)
    assert [m.at - t for m in periodic(rig)] == [20, 40, 60]


# ============================================================================ R-MODEL 3
def unclean_previous_run(db_path: Path, meter_wh: int = 6_000, transaction_id: int | None = 77) -> int:
    """A previous run that died (power cut) with a transaction open on connector 1."""
    s = Store.open(db_path)
    s.mark_running()
    rec = s.begin_transaction(1, "TAG-OLD", 5_000, "2026-04-16T07:00:00.000Z")
    if transaction_id is None:
        s.enqueue("StartTransaction", {"connectorId": 1, "idTag": "TAG-OLD", "meterStart": 5_000,
                                       "timestamp": "2026-04-16T07:00:00.000Z"}, rec.local_id)
    else:
        s.set_transaction_id(rec.local_id, transaction_id)
    s.update_meter(rec.local_id, meter_wh, "2026-04-16T07:30:00.000Z")
    s.close()  # no mark_stopped: the power went
    return rec.local_id


@pytest.mark.parametrize("model", [PRO_DC, STARCHARGE])
def test_r_model_3_open_transaction_after_unclean_run_stopped_with_power_loss_from_the_boot_reading(
    make_rig, tmp_path, model
):
    unclean_previous_run(tmp_path / "s.sqlite")
    rig = make_rig(model)
    rig.auto_sample = False
    assert rig.feed(ev.Started()) == [cmd.Sample(1, "stop")]
    rig.energy[1] = 6_543  # the meter read at boot
    rig.answer_sample(rig.held[0])
    [row] = rig.store.pending()
    assert row.action == "StopTransaction"
    assert row.payload == {"meterStop": 6_543, "timestamp": rfc3339(rig.clock.wall()), "reason": "PowerLoss"}
    assert rig.store.open_transactions() == []
    assert rig.commands(cmd.Restart) == []
    rig.boot()
    [stop] = rig.sent("StopTransaction")
    assert stop.payload["transactionId"] == 77 and stop.payload["reason"] == "PowerLoss"
    assert rig.store.pending() == []


def test_r_model_3_power_loss_stop_with_unreadable_meter_uses_the_last_stored_reading(make_rig, tmp_path):
    unclean_previous_run(tmp_path / "s.sqlite", meter_wh=6_000)
    rig = make_rig(PRO_DC)
    rig.meter_ok[1] = False
    rig.feed(ev.Started())
    [row] = rig.store.pending()
    assert row.payload["meterStop"] == 6_000 and row.payload["reason"] == "PowerLoss"


def test_r_model_3_power_loss_stop_waits_for_the_start_that_never_got_its_id(make_rig, tmp_path):
    unclean_previous_run(tmp_path / "s.sqlite", transaction_id=None)
    rig = make_rig(PRO_DC)
    rig.feed(ev.Started())
    assert [r.action for r in rig.store.pending()] == ["StartTransaction", "StopTransaction"]
    rig.boot()
    assert [(m.action, m.payload.get("transactionId")) for m in rig.wire if m.queued] == [
        ("StartTransaction", None), ("StopTransaction", 100)]


def test_r_model_3_starcharge_power_failing_stops_then_restarts(make_rig):
    rig = make_rig(STARCHARGE)
    rig.boot()
    rig.charge(1, "A")
    rig.charge(2, "B")
    rig.auto_sample = False
    rig.auto_deliver = False
    commands = rig.feed(ev.PowerFailing())
    assert commands == [cmd.DisablePower(1), cmd.Sample(1, "stop"), cmd.DisablePower(2), cmd.Sample(2, "stop")]
    assert of_type(rig.answer_sample(rig.held[0]), cmd.Restart) == []
    last = rig.answer_sample(rig.held[0])
    assert last[-1] == cmd.Restart("power_lost")
    assert [r.payload["reason"] for r in rig.store.pending() if r.action == "StopTransaction"] == [
        "PowerLoss", "PowerLoss"]
    assert rig.store.open_transactions() == []


def test_r_model_3_starcharge_stops_stored_before_shutdown_are_sent_once_after_the_next_boot(make_rig):
    rig = make_rig(STARCHARGE)
    rig.boot()
    tx = rig.charge(1)
    rig.feed(ev.LinkDown())  # the CSMS is out of reach when the power goes
    rig.energy[1] = 15_000
    rig.feed(ev.PowerFailing())
    assert [c for _, c in rig.commands(cmd.Restart)] == [cmd.Restart("power_lost")]
    rig.close(clean=False)  # the hold-up time is over
    again = make_rig(STARCHARGE)
    again.energy[1] = 15_000
    assert again.feed(ev.Started()) == [cmd.WakeOutbox()]  # nothing left to stop, one stop to send
    again.boot()
    stops = again.sent("StopTransaction")
    assert [(m.payload["transactionId"], m.payload["reason"], m.payload["meterStop"]) for m in stops] == [
        (tx, "PowerLoss", 15_000)]
    assert again.store.pending() == [] and again.store.open_transactions() == []


def test_r_model_3_starcharge_power_failing_without_transactions_restarts_at_once(make_rig):
    rig = make_rig(STARCHARGE)
    rig.boot()
    assert rig.feed(ev.PowerFailing()) == [cmd.Restart("power_lost")]


def test_r_model_3_pro_dc_power_failing_restarts_at_once_and_stops_after_the_next_boot(make_rig, tmp_path):
    rig = make_rig(PRO_DC)
    rig.boot()
    tx = rig.charge(1)
    rig.energy[1] = 11_111
    rig.advance(5)
    assert rig.feed(ev.PowerFailing()) == [cmd.Restart("power_lost")]
    assert rig.store.pending() == [] and len(rig.store.open_transactions()) == 1
    rig.close(clean=False)
    # the next boot
    again = make_rig(PRO_DC)
    again.energy[1] = 11_200
    again.boot()
    [stop] = again.sent("StopTransaction")
    assert stop.payload["reason"] == "PowerLoss" and stop.payload["transactionId"] == tx
    assert stop.payload["meterStop"] == 11_200


def test_r_model_3_clean_shutdown_leaves_no_open_transaction(make_rig):
    rig = make_rig(PRO_DC)
    rig.boot()
    rig.charge(1)
    commands = rig.charger.leave("exit", "Reboot")
    rig._run(commands)
    assert [m.payload["reason"] for m in rig.sent("StopTransaction")] == ["Reboot"]
    assert rig.commands(cmd.Restart)[-1][1] == cmd.Restart("exit")
    assert rig.store.open_transactions() == []
