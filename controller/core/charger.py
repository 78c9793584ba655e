"""The charger core: every business rule of the charge point, with no I/O.

:class:`Charger` owns the connectors, the boot/heartbeat cycle, authorization
(badge, remote start, free mode), transactions and their meter values, faults,
availability and resets. It is driven by events (``controller.core.events``)
and by CSMS requests (:meth:`Charger.request`), and answers with commands
(``controller.core.commands``) that the asyncio runtime executes. It reads time
from an injected clock, and writes durable state through the injected store
synchronously (SQLite), so a transaction message is on disk before the command
that sends it exists.

Payloads are OCPP 1.6 shaped dicts (camelCase, as on the wire); the OCPP adapter
validates them and puts them on the wire.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from . import commands as cmd
from . import events as ev
from .auth import id_tag_key
from .authorizer import Authorizer
from .backoff import boot_retry_delay, reconnect_delay
from .deferred import DeferredReply
from .connector import FAULTED, Connector, PendingStart, Session, StatusReporter, derive_status
from .dtc import Dtc, lookup, normalise_code
from .keys import ChangeResult, KeyStore, limit_keys
from .meter_values import sampled_values
from .models import ModelProfile
from . import pictures
from .outbox import MAX_QUEUED_MESSAGES, Drop, after_error
from .limits import ProfileError
from .maintenance import Maintenance
from .profiles import ConnectorView, ProfileBook
from .reservations import Reservation, ReservationBook
from .timefmt import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)
#: the persistent security log (a separate file, see controller.diagnostics)
security_log = logging.getLogger("evsectl.security")

LIVE_SAMPLE_S = 1.0
#: DTCs that are also security events (R-STATUS 3)
TAMPER_DTCS = frozenset({"0x10020C", "0x10020E", "0x200204", "0x20020B"})
#: DTCs whose StopTransaction reason is more precise than Other
STOP_REASONS = {"0x100202": "EmergencyStop", "0x200202": "EmergencyStop", "0x100211": "PowerLoss"}
METER_FAILURE_DTC = "0x10020F"
#: the longest GetCompositeSchedule answered (a year); longer is Rejected
MAX_COMPOSITE_S = 366 * 24 * 3600
#: how often a failed meter is read again until it answers (then the fault clears)
METER_PROBE_S = 10.0
#: the ref of a queued MeterValues sent at once beside the backlog (OfflineTxMsgQueueEnable
#: false): ``(BESIDE_BACKLOG, outbox seq)``; the runtime's outbox does not send that row while
#: this call is out
BESIDE_BACKLOG = "beside_backlog"
#: connection attempts with a new security profile before falling back to the last good one
PROFILE_ATTEMPTS = 3


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def wall(self) -> datetime: ...
    def set_wall(self, now: datetime) -> None: ...


@dataclass(frozen=True)
class Identity:
    """What the charger says about itself in BootNotification."""

    serial_number: str
    firmware_version: str


DEFAULT_VENDOR_IDS = {"cost": "com.se.cost", "tariff": "com.se.tariff", "image": "Schneider Electric"}

VendorHandler = Callable[["Charger", Any], tuple[str, str | None]]


class Charger:
    """The charge point's brain. See the module docstring."""

    def __init__(
        self,
        *,
        model: ModelProfile,
        keys: KeyStore,
        store: Any,
        clock: Clock,
        identity: Identity,
        vendor_ids: dict[str, str] | None = None,
        rand: Callable[[], float] = lambda: 0.5,
        security: Any = None,
        max_queued_messages: int = MAX_QUEUED_MESSAGES,
    ) -> None:
        self.model = model
        self.max_queued_messages = max_queued_messages
        self.keys = keys
        self.store = store
        self.clock = clock
        self.identity = identity
        self.rand = rand
        self.connectors: dict[int, Connector] = {
            c.id: Connector(c.id, c.type, c.max_power_kw * 1000.0) for c in model.connectors
        }
        self.station_operative = True
        self.station_faults: dict[str, str] = {}
        self.reporters: dict[int, StatusReporter] = {
            cid: StatusReporter() for cid in [0, *self.connectors]
        }
        self.link = "disconnected"
        self.selected = min(self.connectors)  # the connector shown on screen
        self.remote_any: PendingStart | None = None
        self.last_error: dict[str, Any] | None = None
        self.resetting: str | None = None
        self.power_lost = False
        self.leaving = False  # a reset, shutdown or power fail has begun: nothing new starts
        self.boot_failures = 0
        self.security = security  # controller.security.certs.CertificateStore, injected
        self.profile_failures = 0
        self.cert_sign_retries = 0
        self._after_boot: list[cmd.Command] = []
        #: a settings file refused at boot (the previous good one runs): shown on the screen
        self.config_error: str | None = None
        self._timers: dict[str, float] = {}
        self.authorizer = Authorizer(keys, store, clock.wall)
        self.reservations = ReservationBook(store)
        self.profiles = ProfileBook(keys, store)
        self.maintenance = Maintenance(
            send=self.send, emit=self.emit, wall=clock.wall, monotonic=clock.monotonic, timers=self._timers,
            busy=lambda: any(c.session is not None for c in self.connectors.values()),
            box_identifier=lambda: str(self.keys.get("BoxIdentifier") or "charger"),
            security_event=self.security_event, meta=(store.get_meta, store.set_meta),
        )
        self._out: list[cmd.Command] = []
        ids = {**DEFAULT_VENDOR_IDS, **(vendor_ids or {})}
        self.vendor_handlers: dict[str, dict[str, VendorHandler]] = {
            ids["cost"]: {"CostUpdated": _on_cost_updated},
        }
        # screen pictures (R-DT 2/3): the runtime injects the download port and
        # keeps ``pictures`` ({"tariff": {...}, "logo": {...}, "screensaver": [...]}) current
        self.picture_port: pictures.PicturePort | None = None
        self.picture_view: Callable[[], dict[str, Any]] | None = None
        self.pictures: dict[str, Any] = {}
        pictures.register(self, ids["tariff"], ids["image"])

    # ------------------------------------------------------------ plumbing
    def now(self) -> float:
        return self.clock.monotonic()

    def stamp(self) -> str:
        return rfc3339(self.clock.wall())

    def take_commands(self) -> list[cmd.Command]:
        out, self._out = self._out, []
        return out

    def emit(self, command: cmd.Command) -> None:
        self._out.append(command)

    def next_deadline(self) -> float | None:
        return min(self._timers.values(), default=None)

    def online(self) -> bool:
        return self.link == "connected"

    def key_bool(self, name: str) -> bool:
        return bool(self.keys.get_bool(name))

    def key_int(self, name: str) -> int:
        return int(self.keys.get_int(name) or 0)

    def register_vendor(self, vendor_id: str, message_id: str, handler: VendorHandler) -> None:
        """Plug a DataTransfer handler in (R-DT): ``handler(charger, data) -> (status, data)``."""
        self.vendor_handlers.setdefault(vendor_id, {})[message_id] = handler

    def send(self, action: str, payload: dict[str, Any], ref: Any = None, triggered: bool = False) -> None:
        """Send a CALL if registered; while Pending, only what a TriggerMessage asked for (OCPP 1.6 §4.2).
        A trigger that arrives before our boot answer is processed goes out right after it."""
        if self.online() or (triggered and self.link == "pending"):
            self.emit(cmd.SendCall(action, payload, ref))
        elif triggered and self.link == "booting":
            self._after_boot.append(cmd.SendCall(action, payload, ref))

    # ------------------------------------------------------------ events
    def handle(self, event: object) -> list[cmd.Command]:
        """Apply one event; return the commands it causes."""
        method = getattr(self, "_on_" + type(event).__name__, None)
        if method is None:
            raise TypeError(f"charger core cannot handle {event!r}")
        method(event)
        self._fire_due_timers()
        self.maintenance.step()
        self._refresh_status()
        self._apply_limits()
        return self.take_commands()

    def _on_Tick(self, _: ev.Tick) -> None:
        pass

    def _on_Started(self, _: ev.Started) -> None:
        for cid, value in self.store.availability().items():
            operative = value == "Operative"
            if cid == 0:
                self.station_operative = operative
            elif cid in self.connectors:
                self.connectors[cid].operative = operative
        self.reservations.load()
        self._schedule_reservation_expiry()
        self.profiles.load()
        clean = self.store.last_run_was_clean()
        for rec in self.store.open_transactions():
            c = self.connectors.get(rec.connector_id)
            if c is None:
                log.error("transaction %s on unknown connector %s", rec.local_id, rec.connector_id)
                continue
            reason = "Reboot" if clean else "PowerLoss"
            log.warning(
                "transaction %s on connector %s was open at boot: stopping it (%s)",
                rec.local_id, rec.connector_id, reason,
            )
            c.session = Session(
                rec.local_id, rec.id_tag, rec.meter_start_wh, self.now(),
                transaction_id=rec.transaction_id, stopping=True, stop_reason=reason,
            )
            c.energy_wh = rec.last_meter_wh
            c.session.reported_wh = rec.last_meter_wh
            self.emit(cmd.Sample(c.connector_id, "stop"))
        self.store.mark_running()
        log.info("message queue: %d queued on disk, bound %d", self.store.count(), self.max_queued_messages)
        self.security_event("StartupOfTheDevice", f"firmware {self.identity.firmware_version}")
        if self.store.count():
            self.emit(cmd.WakeOutbox())

    def _on_LinkUp(self, _: ev.LinkUp) -> None:
        self.link = "booting"
        self._send_boot()

    def _on_LinkDown(self, _: ev.LinkDown) -> None:
        self.link = "disconnected"
        self._after_boot.clear()
        for name in ("boot", "heartbeat"):
            self._timers.pop(name, None)

    def _send_boot(self) -> None:
        payload = {
            "chargePointVendor": self.model.charge_point_vendor,
            "chargePointModel": self.model.charge_point_model,
            "chargePointSerialNumber": self.identity.serial_number,
            "chargeBoxSerialNumber": self.identity.serial_number,
            "firmwareVersion": self.identity.firmware_version,
        }
        self.emit(cmd.SendCall("BootNotification", payload, "boot"))

    def _on_CallAnswered(self, e: ev.CallAnswered) -> None:
        ref = e.ref
        if ref == "boot":
            self._boot_answered(e.payload)
        elif ref == "heartbeat" or ref == "boot_trigger":
            self._set_clock(e.payload.get("currentTime"))
        elif isinstance(ref, tuple) and ref[0] == "authorize":
            _, cid, id_tag = ref
            info = e.payload.get("idTagInfo") or {}
            self.authorizer.remember(id_tag, info)
            self._authorize_answered(cid, id_tag, info.get("status") == "Accepted", info)
        elif isinstance(ref, tuple) and ref[0] == BESIDE_BACKLOG:
            self.store.remove(ref[1])  # delivered beside the backlog: not again from the queue
            self.emit(cmd.WakeOutbox())
        elif isinstance(ref, tuple) and ref[0] == "authorize_stop":
            info = e.payload.get("idTagInfo") or {}
            self.authorizer.remember(ref[1], info)
            if info.get("status") == "Accepted":
                self._group_stop(ref[1], info.get("parentIdTag"))

    def _on_CallFailed(self, e: ev.CallFailed) -> None:
        ref = e.ref
        if ref == "boot":
            if self.link == "disconnected":
                return
            delay = reconnect_delay(self.boot_failures, self.rand(), base_s=5.0, cap_s=300.0)
            self.boot_failures += 1
            log.warning("BootNotification failed (%s %s); retry in %.0f s", e.reason, e.code or "", delay)
            self._timers["boot"] = self.now() + delay
        elif isinstance(ref, tuple) and ref[0] == BESIDE_BACKLOG:
            self.emit(cmd.WakeOutbox())  # still queued: it goes in its turn
        elif isinstance(ref, tuple) and ref[0] == "authorize":
            _, cid, id_tag = ref
            if e.reason == "error":
                self._authorize_answered(cid, id_tag, False, {"status": f"CALLERROR {e.code}"})
            else:
                self._authorize_offline(cid, id_tag)

    def _set_clock(self, current_time: Any) -> None:
        if not isinstance(current_time, str):
            return
        try:
            # set at once: what this same step sends must already carry CSMS time
            self.clock.set_wall(parse_rfc3339(current_time))
        except ValueError:
            log.warning("CSMS sent an unreadable currentTime %r", current_time)
            return
        self._schedule_reservation_expiry()  # expiryDate is a wall-clock date: it moves with a correction

    def _boot_answered(self, payload: dict[str, Any]) -> None:
        status = payload.get("status")
        interval = payload.get("interval")
        self._set_clock(payload.get("currentTime"))
        self.boot_failures = 0
        if status == "Accepted":
            self.link = "connected"
            if isinstance(interval, int) and interval > 0:
                self.keys.change("HeartbeatInterval", str(interval))
                self._persist_keys()
            self._schedule_heartbeat()
            self._resume_online_sampling()
            for reporter in self.reporters.values():
                reporter.reported = None  # report every connector afresh
            self.emit(cmd.WakeOutbox())
            log.info("BootNotification accepted")
            self._release_after_boot()
            self.maintenance.boot_accepted()
        else:
            self.link = "pending" if status == "Pending" else "rejected"
            if self.link == "pending":
                self._release_after_boot()
            delay = boot_retry_delay(interval if isinstance(interval, int) else None)
            log.info("BootNotification %s; retry in %.0f s", status, delay)
            self._timers["boot"] = self.now() + delay

    def _resume_online_sampling(self) -> None:
        """Back online: a periodic sample armed at disconnectedMeterValueSampleInterval
        comes no later than MeterValueSampleInterval from now (R-TX 4)."""
        interval = self.key_int("MeterValueSampleInterval")
        if interval <= 0:
            return
        latest = self.now() + interval
        for cid in self.connectors:
            due = self._timers.get(f"periodic:{cid}")
            if due is not None and due > latest:
                self._timers[f"periodic:{cid}"] = latest

    def _release_after_boot(self) -> None:
        waiting, self._after_boot = self._after_boot, []
        for c in waiting:
            self.emit(c)

    def _schedule_heartbeat(self) -> None:
        interval = self.key_int("HeartbeatInterval")
        if interval > 0 and self.online():
            self._timers["heartbeat"] = self.now() + interval
        else:
            self._timers.pop("heartbeat", None)

    # ------------------------------------------------------------ timers
    def _fire_due_timers(self) -> None:
        now = self.now()
        for name, due in sorted(self._timers.items(), key=lambda kv: kv[1]):
            if due > now or self._timers.get(name) != due:
                continue
            del self._timers[name]
            self._fire(name, due)

    def _fire(self, name: str, due: float) -> None:
        kind, _, arg = name.partition(":")
        if kind == "boot":
            if self.link in ("booting", "pending", "rejected"):
                self._send_boot()
        elif kind == "heartbeat":
            self.send("Heartbeat", {}, "heartbeat")
            self._schedule_heartbeat()
        elif kind == "remote":
            self._remote_expired(arg)
        elif kind == "probe":  # the meter failed: keep reading until it answers again
            c = self.connectors[int(arg)]
            if METER_FAILURE_DTC in c.faults:
                self.emit(cmd.Sample(c.connector_id, "probe"))
                self._timers[name] = self.now() + METER_PROBE_S
        elif kind == "certsign":
            self.cert_sign_retries += 1
            self.sign_certificate()
        elif kind == "firmware":
            self.maintenance.fire()
        elif kind == "limits":
            pass  # a profile period boundary: _apply_limits runs after every step
        elif kind == "reservation":
            for r in self.reservations.expired(self.clock.wall()):
                log.info("reservation %s for %s expired", r.reservation_id, r.id_tag)
                self.reservations.remove(r.reservation_id)
            self._schedule_reservation_expiry()
        elif kind in ("periodic", "clock", "live"):
            c = self.connectors[int(arg)]
            if c.session is None or c.session.stopping:
                return
            self.emit(cmd.Sample(c.connector_id, kind))
            self._schedule_samples(c, kind, due)

    def _schedule_samples(self, c: Connector, only: str | None = None, last: float | None = None) -> None:
        now = self.now()
        base = last if last is not None else now
        cid = c.connector_id
        if only in (None, "live"):
            self._timers[f"live:{cid}"] = max(base + LIVE_SAMPLE_S, now)
        if only in (None, "periodic"):
            interval = self.key_int("MeterValueSampleInterval")
            offline = self.key_int("disconnectedMeterValueSampleInterval")
            if not self.online() and offline > 0:
                interval = offline
            if interval > 0:
                self._timers[f"periodic:{cid}"] = max(base + interval, now)
            else:
                self._timers.pop(f"periodic:{cid}", None)
        if only in (None, "clock"):
            aligned = self.key_int("ClockAlignedDataInterval")
            if aligned > 0:
                wall = self.clock.wall()
                midnight = wall.replace(hour=0, minute=0, second=0, microsecond=0)
                elapsed = (wall - midnight).total_seconds()
                nxt = (int(elapsed // aligned) + 1) * aligned
                self._timers[f"clock:{cid}"] = now + (nxt - elapsed)
            else:
                self._timers.pop(f"clock:{cid}", None)

    def _cancel_connector_timers(self, cid: int) -> None:
        for kind in ("live", "periodic", "clock"):
            self._timers.pop(f"{kind}:{cid}", None)

    # ------------------------------------------------------------ hardware events
    def _on_Plugged(self, e: ev.Plugged) -> None:
        c = self._connector(e.connector_id)
        if c is None:
            return
        c.plugged = True
        if c.session is not None and not c.session.stopping:
            self.emit(cmd.EnablePower(c.connector_id))  # re-plugged into a suspended session
            return
        if (
            c.pending is None and self.remote_any is not None and c.idle_plugged()
            and self._reservation_admits(c, self.remote_any.id_tag, self.remote_any.parent_id_tag)
            and not (self.remote_any.charging_profile is not None and c.connector_type == "CHAdeMO")
        ):  # a connector reserved for someone else does not take a remote start for "any connector"
            c.pending, self.remote_any = self.remote_any, None
            self._timers.pop("remote:any", None)
        if c.pending is not None:
            self._timers.pop(f"remote:{c.connector_id}", None)
            c.pending.deadline_mono = None
            if c.pending.authorized:
                self._start(c)
        elif self.key_bool("FreeCharging") and c.idle_plugged():
            self._begin_authorization(c, self._default_id_tag(), "free")
        elif self.keys.mac_auth_mode() is not None and c.idle_plugged():
            self.emit(cmd.Sample(c.connector_id, "plug"))  # read the EV's MAC / contract id

    def _on_Unplugged(self, e: ev.Unplugged) -> None:
        c = self._connector(e.connector_id)
        if c is None:
            return
        c.plugged = False
        c.finishing = False
        c.soc_pct = None
        if c.session is not None and not c.session.stopping:
            if self.key_bool("StopTransactionOnEVSideDisconnect"):
                self._stop(c, "EVDisconnected")
            else:
                self.emit(cmd.DisablePower(c.connector_id))
        elif c.pending is not None and c.pending.source != "remote":
            c.pending = None
        elif c.pending is not None and c.pending.deadline_mono is None:
            # the EV left before the remote start began: ConnectionTimeOut for a plug again (R-AUTH 5)
            c.pending.deadline_mono = self.now() + self.key_int("ConnectionTimeOut")
            self._timers[f"remote:{c.connector_id}"] = c.pending.deadline_mono

    def _on_Touched(self, e: ev.Touched) -> None:
        if e.connector_id in self.connectors:
            self.selected = e.connector_id

    def _on_TagPresented(self, e: ev.TagPresented) -> None:
        id_tag = e.id_tag
        if self.key_bool("FreeCharging") or not self.key_bool("RFIDEnabled"):
            log.info("badge %s ignored: RFID is not an enabled auth mode", id_tag)
            return
        for c in self.connectors.values():
            s = c.session
            if s is not None and not s.stopping and id_tag_key(s.id_tag) == id_tag_key(id_tag):
                self._stop(c, "Local", id_tag)
                return
        target = self._local_target()
        if target is None:
            if self._running_sessions():
                self._try_group_stop(id_tag)
            else:
                log.info("badge %s ignored: no connector plugged (welcome page stays)", id_tag)
            return
        if target.pending is not None:
            log.info("badge %s ignored: connector %s is already authorizing", id_tag, target.connector_id)
            return
        self._begin_authorization(target, id_tag, "local")

    def _running_sessions(self) -> list[Connector]:
        return [c for c in self.connectors.values() if c.session is not None and not c.session.stopping]

    def _try_group_stop(self, id_tag: str) -> None:
        """Rule 7 of R-AUTH: another badge of the same parentIdTag group may stop a charge."""
        parent = self.authorizer.parent_of(id_tag)
        if parent is not None:
            if not self._group_stop(id_tag, parent):
                log.info("badge %s refused: not of the group of a running transaction", id_tag)
        elif self.online():
            self.emit(cmd.SendCall("Authorize", {"idTag": id_tag}, ("authorize_stop", id_tag)))
        else:
            log.info("badge %s refused: it did not start a running transaction", id_tag)

    def _group_stop(self, id_tag: str, parent: str | None) -> bool:
        for c in self._running_sessions():
            s = c.session
            assert s is not None
            if parent and s.parent_id_tag and id_tag_key(parent) == id_tag_key(s.parent_id_tag):
                self._stop(c, "Local", id_tag)
                return True
        return False

    def _local_target(self) -> Connector | None:
        """R-AUTH 4: one plugged -> it; both -> the one on screen; none -> None."""
        idle = [c for c in self.connectors.values() if c.idle_plugged()]
        if not idle:
            return None
        if len(idle) == 1:
            return idle[0]
        shown = self.connectors[self.selected]
        return shown if shown in idle else idle[0]

    def _on_FaultRaised(self, e: ev.FaultRaised) -> None:
        dtc = lookup(e.dtc) or Dtc(_norm_dtc(e.dtc), "OtherError", "Unknown vendor error", "error")
        faults = self.station_faults if e.connector_id == 0 else self._faults_of(e.connector_id)
        if faults is None or dtc.code in faults:
            return
        faults[dtc.code] = dtc.severity
        self.last_error = {
            "dtc": dtc.code, "error_code": dtc.error_code, "info": dtc.description,
            "connector_id": e.connector_id, "severity": dtc.severity, "at": self.stamp(),
        }
        log.warning("fault %s (%s) on connector %s: %s", dtc.code, dtc.severity, e.connector_id, dtc.description)
        if dtc.code == METER_FAILURE_DTC and e.connector_id:
            self._timers[f"probe:{e.connector_id}"] = self.now() + METER_PROBE_S
        if dtc.severity == "error":
            reason = STOP_REASONS.get(dtc.code, "Other")
            targets = self.connectors.values() if e.connector_id == 0 else [self.connectors[e.connector_id]]
            for c in targets:
                if c.session is not None:
                    self._stop(c, reason)
                c.pending = None
        if dtc.code in TAMPER_DTCS:
            self.security_event("TamperDetectionActivated", f"{dtc.code} {dtc.description}")

    def _on_FaultCleared(self, e: ev.FaultCleared) -> None:
        faults = self.station_faults if e.connector_id == 0 else self._faults_of(e.connector_id)
        if faults is not None and faults.pop(_norm_dtc(e.dtc), None) is not None:
            log.info("fault %s cleared on connector %s", e.dtc, e.connector_id)

    def _faults_of(self, cid: int) -> dict[str, str] | None:
        c = self.connectors.get(cid)
        return None if c is None else c.faults

    def _on_PowerFailing(self, _: ev.PowerFailing) -> None:
        self.power_lost = True
        self.leaving = True
        if self.model.power_loss != "before_shutdown":
            log.warning("power fail: this model has no hold-up; transactions close at next boot")
            self.emit(cmd.Restart("power_lost"))
            return
        log.warning("power fail: stopping every transaction before the hold-up time runs out")
        for c in self.connectors.values():
            if c.session is not None:
                self._stop(c, "PowerLoss")
        self._maybe_leave()

    def _on_Sampled(self, e: ev.Sampled) -> None:
        c = self._connector(e.connector_id)
        if c is None:
            return
        if e.meter is not None:
            c.last_meter = e.meter
            c.energy_wh = int(e.meter.energy_wh)
            c.power_w = float(e.meter.power_w)
            c.voltage_v = float(e.meter.voltage_v)
            c.current_a = float(e.meter.current_a)
            if METER_FAILURE_DTC in c.faults:
                self._on_FaultCleared(ev.FaultCleared(METER_FAILURE_DTC, c.connector_id))
        if e.power is not None:
            c.offered_w = float(e.power.offered_w)
            c.soc_pct = e.power.soc_pct
            c.ev_mac = e.power.ev_mac
            if e.meter is None:
                c.power_w = float(e.power.output_power_w)
        purpose = e.purpose
        if purpose == "plug":
            self._sampled_for_plug(c, e)
            return
        if purpose == "start":
            self._sampled_for_start(c, e)
            return
        if purpose == "stop":
            self._finish_stop(c)
            return
        if e.meter is None and c.session is not None and not c.session.stopping:
            self._on_FaultRaised(ev.FaultRaised(METER_FAILURE_DTC, c.connector_id))
            return
        if purpose in ("periodic", "clock") and c.session is not None:
            self._queue_meter_values(c, purpose, e)
        elif purpose == "trigger":
            self._send_triggered_meter_values(c, e)
        if c.session is not None and e.meter is not None and purpose != "live":
            # not every live second: an SD card should not take a synced write per second
            self.store.update_meter(c.session.local_id, c.energy_wh, self.stamp())

    # ------------------------------------------------------------ authorization
    def _default_id_tag(self) -> str:
        return self.keys.get("DefaultIdTag") or "SIMTAG"

    def _sampled_for_plug(self, c: Connector, e: ev.Sampled) -> None:
        """AutoCharge / Plug & Charge (R-AUTH 1): the EV identifies itself at plug-in."""
        mode = self.keys.mac_auth_mode()
        if mode is None or not c.idle_plugged() or c.pending is not None or e.power is None:
            return
        id_tag = e.power.contract_id if mode == "pnc" else None
        if not id_tag and (mode == "autocharge" or self.key_bool("AutoCharge")):
            # PnC has priority over AutoCharge (guide, note 3); an EV without a contract
            # still identifies by its MAC when AutoCharge is on too
            mode = "autocharge"
            mac = "".join(ch for ch in (e.power.ev_mac or "").upper() if ch in "0123456789ABCDEF")
            id_tag = (self.keys.get("MacAddressPrefix") or "") + mac if mac else None
        if not id_tag:
            log.info("connector %s: the EV gave no %s identity", c.connector_id, mode)
            return
        if len(id_tag) > 20:
            log.error("connector %s: %s idTag %r is longer than 20 characters", c.connector_id, mode, id_tag)
            return
        self._begin_authorization(c, id_tag, mode)

    def _begin_authorization(self, c: Connector, id_tag: str, source: str) -> None:
        c.pending = PendingStart(id_tag, source, authorize_first=True)
        if self.online():
            known = self.authorizer.pre_authorized(id_tag) if source != "free" else None
            if known is not None:  # LocalPreAuthorize: start now, the StartTransaction answer confirms
                log.info("%s pre-authorized from the local list/cache", id_tag)
                c.pending.parent_id_tag = known.parent_id_tag
                self._authorize_result(c, c.pending, True)
                return
            if source == "pnc" and not self.key_bool("CentralContractValidationAllowed"):
                # the contract may not be sent for central validation: only a valid local
                # entry (checked above) admits it (R-AUTH 1, PnC keys)
                log.info("contract %s refused: CentralContractValidationAllowed is false", id_tag)
                self._authorize_result(c, c.pending, False)
                return
            self.emit(cmd.SendCall("Authorize", {"idTag": id_tag}, ("authorize", c.connector_id, id_tag)))
        else:
            self._authorize_offline(c.connector_id, id_tag)

    def _find_pending(self, cid: int, id_tag: str) -> tuple[Connector | None, PendingStart | None]:
        """The authorization waiting for ``id_tag``; a remote start for "any connector"
        (cid 0) may have moved to the connector plugged in meanwhile."""
        if cid:
            c = self.connectors[cid]
            return c, c.pending if c.pending is not None and c.pending.id_tag == id_tag else None
        if self.remote_any is not None and self.remote_any.id_tag == id_tag:
            return None, self.remote_any
        for c in self.connectors.values():
            if c.pending is not None and c.pending.source == "remote" and c.pending.id_tag == id_tag:
                return c, c.pending
        return None, None

    def _authorize_offline(self, cid: int, id_tag: str) -> None:
        c, pending = self._find_pending(cid, id_tag)
        if pending is None:
            return
        if pending.source == "free":
            allowed, source = True, "free mode"
        elif pending.source == "pnc" and not self.key_bool("ContractValidationOffline"):
            allowed, source = False, "ContractValidationOffline is false"
        else:
            decision = self.authorizer.offline(id_tag)
            allowed, source = decision.accepted, decision.source
            if decision.info is not None:
                pending.parent_id_tag = decision.info.parent_id_tag
        log.info("offline authorization of %s: %s (%s)", id_tag, "allowed" if allowed else "refused", source)
        self._authorize_result(c, pending, allowed)

    def _authorize_answered(self, cid: int, id_tag: str, accepted: bool, info: dict[str, Any]) -> None:
        c, pending = self._find_pending(cid, id_tag)
        if pending is None:
            return
        log.info("Authorize %s: %s", id_tag, info.get("status"))
        pending.parent_id_tag = info.get("parentIdTag") or pending.parent_id_tag
        self._authorize_result(c, pending, accepted)

    def _authorize_result(self, c: Connector | None, pending: PendingStart, accepted: bool) -> None:
        if not accepted:
            if c is not None:
                c.pending = None
                self._timers.pop(f"remote:{c.connector_id}", None)
            else:
                self.remote_any = None
                self._timers.pop("remote:any", None)
            return
        pending.authorized = True
        if c is not None and c.idle_plugged():
            self._start(c)

    # ------------------------------------------------------------ remote start/stop
    def _remote_start(self, payload: dict[str, Any]) -> str:
        id_tag = payload["idTag"]
        cid = payload.get("connectorId")
        no_ev_ok = self.key_bool("EnableRemoteStartNoConnectedEV")
        authorize_first = self.key_bool("AuthorizeRemoteTxRequests")
        if cid is not None:
            c = self.connectors.get(cid)
            if c is None or not c.operative or not self.station_operative or c.has_error():
                return "Rejected"
            if c.session is not None or c.pending is not None or c.finishing:
                return "Rejected"
            if not c.plugged and not no_ev_ok:
                return "Rejected"
            reservation = self.reservations.on_connector(c.connector_id)
            learn_parent = (  # OCPP 1.6 §5.13: Authorize tells the group; the start checks it
                reservation is not None and reservation.parent_id_tag and authorize_first and self.online()
                and self.authorizer.parent_of(id_tag) is None
            )
            if not learn_parent and not self._reservation_admits(c, id_tag, self.authorizer.parent_of(id_tag)):
                return "Rejected"  # reserved for another idTag (R-TX 5)
            target: Connector | None = c
        else:
            parent = self.authorizer.parent_of(id_tag)
            profiled = payload.get("chargingProfile") is not None
            free = [
                c for c in self.connectors.values()
                if c.idle_plugged() and c.pending is None and self._reservation_admits(c, id_tag, parent)
                and not (profiled and c.connector_type == "CHAdeMO")  # its profile could not apply
            ]
            if free:
                target = free[0]  # one plugged -> it; both -> connector 1 (lowest id)
            elif profiled and any(c.idle_plugged() for c in self.connectors.values()):
                return "Rejected"  # the EV is on a CHAdeMO connector, which takes no profile
            elif not no_ev_ok or self.remote_any is not None or not self._any_can_start():
                return "Rejected"
            else:
                target = None
        pending = PendingStart(id_tag, "remote", authorize_first=authorize_first)
        pending.parent_id_tag = self.authorizer.parent_of(id_tag)  # a reservation of its group admits it
        pending.charging_profile = payload.get("chargingProfile")
        if target is not None:
            target.pending = pending
            if not target.plugged:
                pending.deadline_mono = self.now() + self.key_int("ConnectionTimeOut")
                self._timers[f"remote:{target.connector_id}"] = pending.deadline_mono
        else:
            self.remote_any = pending
            pending.deadline_mono = self.now() + self.key_int("ConnectionTimeOut")
            self._timers["remote:any"] = pending.deadline_mono
        where = target.connector_id if target is not None else 0
        if authorize_first:
            self.send("Authorize", {"idTag": id_tag}, ("authorize", where, id_tag))
            if not self.online():
                self._authorize_offline(where, id_tag)
        else:
            self._authorize_result(target, pending, True)
        return "Accepted"

    def _any_can_start(self) -> bool:
        return self.station_operative and any(
            c.operative and not c.has_error() and c.session is None and c.pending is None
            for c in self.connectors.values()
        )

    def _remote_expired(self, which: str) -> None:
        if which == "any":
            if self.remote_any is not None:
                log.info("remote start for %s dropped: no EV plugged in time", self.remote_any.id_tag)
            self.remote_any = None
            return
        c = self.connectors[int(which)]
        if c.pending is not None and c.session is None and not c.plugged:
            log.info("remote start on connector %s dropped: no EV plugged in time", c.connector_id)
            c.pending = None

    # ------------------------------------------------------------ transactions
    def _start(self, c: Connector) -> None:
        if c.pending is None or c.session is not None:
            return
        c.pending.source = c.pending.source  # keep; marks nothing
        self._starting = c.connector_id
        self.emit(cmd.Sample(c.connector_id, "start"))

    def _sampled_for_start(self, c: Connector, e: ev.Sampled) -> None:
        pending = c.pending
        if self.leaving or self.maintenance.installing:
            c.pending = None  # a badge or plug while we stop everything to restart
            return
        if pending is None or c.session is not None or not c.idle_plugged():
            return
        if e.meter is None:
            log.error("cannot start on connector %s: meter unreadable (%s)", c.connector_id, e.error)
            c.pending = None
            self._on_FaultRaised(ev.FaultRaised(METER_FAILURE_DTC, c.connector_id))
            return
        reservation = self._reservation_used_by(c, pending)
        if reservation is False:
            log.info("connector %s is reserved for another idTag: %s may not start", c.connector_id, pending.id_tag)
            c.pending = None
            return
        reservation_id = reservation.reservation_id if isinstance(reservation, Reservation) else None
        meter_start = int(e.meter.energy_wh)
        stamp = self.stamp()
        start_payload: dict[str, Any] = {
            "connectorId": c.connector_id, "idTag": pending.id_tag, "meterStart": meter_start, "timestamp": stamp,
        }
        if reservation_id is not None:
            start_payload["reservationId"] = reservation_id
        with self.store.atomic():
            rec = self.store.begin_transaction(c.connector_id, pending.id_tag, meter_start, stamp, reservation_id)
            self.store.enqueue("StartTransaction", start_payload, rec.local_id)
            if reservation_id is not None:
                self.reservations.remove(reservation_id)
        self._bound_queue()
        c.session = Session(rec.local_id, pending.id_tag, meter_start, self.now())
        c.session.parent_id_tag = pending.parent_id_tag
        c.session.reservation_id = reservation_id
        c.session.started_wall = self.clock.wall()
        if pending.charging_profile is not None:  # RemoteStartTransaction's TxProfile (R-SC)
            self.profiles.install_for_transaction(c.connector_id, pending.charging_profile, self.clock.wall())
        c.pending = None
        c.cost = None
        self._timers.pop(f"remote:{c.connector_id}", None)
        log.info(
            "transaction %s started on connector %s for %s at %d Wh", rec.local_id, c.connector_id,
            pending.id_tag, meter_start, extra={"connector": c.connector_id, "transaction_id": rec.local_id},
        )
        self._stop_txn_sample(c, "Transaction.Begin", e)
        self.emit(cmd.EnablePower(c.connector_id))
        self.emit(cmd.WakeOutbox())
        self._schedule_samples(c)

    def _stop(self, c: Connector, reason: str, id_tag: str | None = None) -> None:
        s = c.session
        if s is None or s.stopping:
            return
        s.stopping, s.stop_reason, s.stop_id_tag = True, reason, id_tag
        self._cancel_connector_timers(c.connector_id)
        log.info("stopping transaction %s on connector %s (%s)", s.local_id, c.connector_id, reason)
        self.emit(cmd.DisablePower(c.connector_id))
        self.emit(cmd.Sample(c.connector_id, "stop"))

    def _finish_stop(self, c: Connector) -> None:
        s = c.session
        if s is None or not s.stopping:
            return
        meter = c.last_meter
        # never below what was already reported: a meter that lost its last second
        # of energy in a power cut must not make the CSMS see energy flow backwards
        meter_stop = max(
            int(meter.energy_wh) if meter is not None else (c.energy_wh or 0), s.meter_start_wh, s.reported_wh
        )
        stamp = self.stamp()
        payload: dict[str, Any] = {"meterStop": meter_stop, "timestamp": stamp, "reason": s.stop_reason}
        if s.stop_id_tag:
            payload["idTag"] = s.stop_id_tag
        if meter is not None:
            self._stop_txn_sample(c, "Transaction.End", ev.Sampled(c.connector_id, "stop", meter, None))
        if s.stop_txn_data:
            payload["transactionData"] = s.stop_txn_data
        with self.store.atomic():
            self.store.end_transaction(s.local_id, meter_stop, stamp, s.stop_reason, s.stop_id_tag)
            self.store.enqueue("StopTransaction", payload, s.local_id)
        self._bound_queue()
        log.info(
            "transaction %s stopped on connector %s at %d Wh (%s)", s.local_id, c.connector_id, meter_stop,
            s.stop_reason, extra={"connector": c.connector_id, "transaction_id": s.transaction_id or s.local_id},
        )
        c.session = None
        c.finishing = c.plugged
        c.power_w = 0.0
        self.profiles.end_of_transaction(c.connector_id)
        if c.scheduled_operative is not None:
            c.operative, c.scheduled_operative = c.scheduled_operative, None
        self.emit(cmd.WakeOutbox())
        self._maybe_leave()

    def _maybe_leave(self) -> None:
        """After a reset request or a power fail, leave once every stop is on disk."""
        if any(c.session is not None for c in self.connectors.values()):
            return
        if self.resetting is not None:
            self.emit(cmd.Restart(self.resetting))
            self.resetting = None
        elif self.power_lost and self.model.power_loss == "before_shutdown":
            self.emit(cmd.Restart("power_lost"))
            self.power_lost = False

    def _stop_txn_sample(self, c: Connector, context: str, e: ev.Sampled) -> None:
        s = c.session
        if s is None:
            return
        aligned = context == "Sample.Clock"
        measurands = self.keys.get_csl("StopTxnAlignedData" if aligned else "StopTxnSampledData")
        if not measurands:
            return
        values = sampled_values(measurands, context, e.meter, e.power, False)
        if values:
            s.stop_txn_data.append({"timestamp": self.stamp(), "sampledValue": values})

    def _queue_meter_values(self, c: Connector, purpose: str, e: ev.Sampled) -> None:
        s = c.session
        assert s is not None
        context = "Sample.Clock" if purpose == "clock" else "Sample.Periodic"
        key = "MeterValuesAlignedData" if purpose == "clock" else "MeterValuesSampledData"
        values = sampled_values(
            self.keys.get_csl(key), context, e.meter, e.power, self.key_bool("EnableMeterValuesContainVoltage")
        )
        self._stop_txn_sample(c, context, e)
        if not values or s.stopping:
            return
        if e.meter is not None:  # meterStop never goes below what the CSMS was told
            s.reported_wh = max(s.reported_wh, int(e.meter.energy_wh))
        beside = (
            not self.key_bool("OfflineTxMsgQueueEnable") and self.online() and s.transaction_id is not None
            and self.store.count() > 0
        )
        row = self.store.enqueue(
            "MeterValues",
            {"connectorId": c.connector_id, "meterValue": [{"timestamp": self.stamp(), "sampledValue": values}]},
            s.local_id,
        )
        self._bound_queue()
        if beside:
            # guide: with OfflineTxMsgQueueEnable false, live meter values go out beside the
            # backlog instead of behind it (faster, at the price of strict order). It stays
            # queued on disk until answered: a lost link or a kill never loses it, it then
            # waits its turn in the queue (R-TX 4)
            self.send("MeterValues", {**row.payload, "transactionId": s.transaction_id}, (BESIDE_BACKLOG, row.seq))
            return
        self.emit(cmd.WakeOutbox())

    def _bound_queue(self) -> None:
        """After every enqueue: keep the on-disk queue within ``max_queued_messages``."""
        if self.store.count() > self.max_queued_messages:
            dropped = self.store.trim_outbox(self.max_queued_messages)
            log.error("message queue full: %d oldest messages dropped (Start/StopTransaction never)", dropped)

    def _send_triggered_meter_values(self, c: Connector, e: ev.Sampled) -> None:
        values = sampled_values(
            self.keys.get_csl("MeterValuesSampledData"), "Trigger", e.meter, e.power,
            self.key_bool("EnableMeterValuesContainVoltage"),
        )
        payload: dict[str, Any] = {
            "connectorId": c.connector_id,
            "meterValue": [{"timestamp": self.stamp(), "sampledValue": values}],
        }
        if c.session is not None and c.session.transaction_id is not None:
            payload["transactionId"] = c.session.transaction_id
        if values:
            self.send("MeterValues", payload, triggered=True)

    def _on_TxMessageDelivered(self, e: ev.TxMessageDelivered) -> None:
        with self.store.atomic():
            self.store.remove(e.seq)
            if e.action == "StartTransaction" and e.tx_local_id is not None:
                tx_id = e.reply.get("transactionId")
                if isinstance(tx_id, int):
                    self.store.set_transaction_id(e.tx_local_id, tx_id)
                    self._start_answered(e.tx_local_id, tx_id, e.reply.get("idTagInfo") or {})
            elif e.action == "StopTransaction" and e.tx_local_id is not None:
                rec = self.store.transaction(e.tx_local_id)
                if rec is not None:
                    self.authorizer.remember(rec.stop_id_tag or rec.id_tag, e.reply.get("idTagInfo"))
                self.store.forget_transaction(e.tx_local_id)

    def _start_answered(self, local_id: int, tx_id: int, id_tag_info: dict[str, Any]) -> None:
        for c in self.connectors.values():
            s = c.session
            if s is None or s.local_id != local_id:
                continue
            s.transaction_id = tx_id
            self.authorizer.remember(s.id_tag, id_tag_info)
            s.parent_id_tag = id_tag_info.get("parentIdTag") or s.parent_id_tag
            status = id_tag_info.get("status")
            if status != "Accepted" and not s.stopping:
                if self.key_bool("StopTransactionOnInvalidId"):
                    log.warning("transaction %s: idTag %s is %s; stopping", tx_id, s.id_tag, status)
                    self._stop(c, "DeAuthorized")
                else:
                    log.warning("transaction %s: idTag %s is %s; continuing", tx_id, s.id_tag, status)

    def _on_TxMessageFailed(self, e: ev.TxMessageFailed) -> None:
        self.store.record_attempt(e.seq)
        row = next((r for r in self.store.pending() if r.seq == e.seq), None)
        attempts = row.attempts if row is not None else 1
        decision = after_error(
            attempts, self.key_int("TransactionMessageAttempts"), self.key_int("TransactionMessageRetryInterval")
        )
        if isinstance(decision, Drop):
            log.error("dropping queued %s #%s: %s", e.action, e.seq, decision.reason)
            self.store.remove(e.seq)
            self.emit(cmd.WakeOutbox())
        else:
            self.emit(cmd.WakeOutbox(decision.delay_s))

    # ------------------------------------------------------------ status
    def _mark_reserved(self) -> None:
        """Which connectors show Reserved: their own reservation, or the station's
        (connector 0) reservations holding the last free connectors."""
        for c in self.connectors.values():
            c.reserved = self.reservations.on_connector(c.connector_id) is not None
        station_wide = len(self.reservations.station_wide())
        if station_wide:
            free = [c for c in self.connectors.values() if self._free_for_reservation(c)]
            if len(free) <= station_wide:
                for c in free:
                    c.reserved = True

    def _free_for_reservation(self, c: Connector) -> bool:
        return (
            c.operative and not c.has_error() and c.session is None and c.pending is None
            and not c.plugged and not c.finishing and self.reservations.on_connector(c.connector_id) is None
        )

    def _reservation_admits(self, c: Connector, id_tag: str, parent: str | None) -> bool:
        r = self.reservations.on_connector(c.connector_id)
        if r is not None:
            return r.admits(id_tag, parent)
        if any(r.admits(id_tag, parent) for r in self.reservations.station_wide()):
            return True
        # the station's reservations keep enough connectors free for their holders
        free = [x for x in self.connectors.values() if self._free_for_reservation(x) or x is c]
        return len(free) > len(self.reservations.station_wide())

    def _reservation_used_by(self, c: Connector, pending: PendingStart) -> Reservation | bool | None:
        """The reservation this start uses, None when none is involved, False when refused."""
        r = self.reservations.on_connector(c.connector_id)
        if r is not None:
            return r if r.admits(pending.id_tag, pending.parent_id_tag) else False
        for r in self.reservations.station_wide():
            if r.admits(pending.id_tag, pending.parent_id_tag):
                return r
        return None if self._reservation_admits(c, pending.id_tag, pending.parent_id_tag) else False

    def _view(self, c: Connector) -> ConnectorView:
        s = c.session
        running = s is not None and not s.stopping
        return ConnectorView(
            c.connector_id, c.connector_type, c.max_power_w, c.voltage_v,
            s.started_wall if running and s is not None else None,
            s.transaction_id if running and s is not None else None,
        )

    def _apply_limits(self) -> None:
        """Give each power stage the limit in force; arm one timer for the next change (R-SC 6)."""
        wall = self.clock.wall()
        soonest: datetime | None = None
        for c in self.connectors.values():
            power, nxt = self.profiles.setpoint(self._view(c), wall)
            if power != c.limit_w:
                c.limit_w = power
                log.info("connector %s set-point %s", c.connector_id, "max" if power is None else f"{power:.0f} W")
                self.emit(cmd.SetPowerLimit(c.connector_id, power))
            if nxt is not None and (soonest is None or nxt < soonest):
                soonest = nxt
        if soonest is None:
            self._timers.pop("limits", None)
        else:
            self._timers["limits"] = self.now() + max(0.0, (soonest - wall).total_seconds())

    def _schedule_reservation_expiry(self) -> None:
        nxt = self.reservations.next_expiry()
        if nxt is None:
            self._timers.pop("reservation", None)
        else:
            self._timers["reservation"] = self.now() + max(0.0, (nxt - self.clock.wall()).total_seconds())

    def _refresh_status(self) -> None:
        self._mark_reserved()
        now = self.now()
        minimum = self.key_int("MinimumStatusDuration")
        station_error = any(sev == "error" for sev in self.station_faults.values())
        station_status = FAULTED if station_error else ("Available" if self.station_operative else "Unavailable")
        for cid, reporter in self.reporters.items():
            if cid == 0:
                status, faults = station_status, self.station_faults
            else:
                c = self.connectors[cid]
                status = derive_status(c, station_error, self.station_operative, now)
                faults = c.faults or self.station_faults
            reporter.observe(status, now)
            reporter.error_code, reporter.vendor_error_code, reporter.info = _error_fields(faults)
            self._timers.pop(f"status:{cid}", None)
            if not self.online():
                continue
            if reporter.due(now, minimum):
                self._send_status(cid, reporter)
            else:
                deadline = reporter.deadline(minimum)
                if deadline is not None:
                    self._timers[f"status:{cid}"] = deadline

    def _send_status(self, cid: int, reporter: StatusReporter, triggered: bool = False) -> None:
        payload: dict[str, Any] = {
            "connectorId": cid,
            "errorCode": reporter.error_code,
            "status": reporter.candidate,
            "timestamp": self.stamp(),
        }
        if reporter.vendor_error_code:
            payload["vendorErrorCode"] = reporter.vendor_error_code
        if reporter.info:
            payload["info"] = reporter.info
        self.send("StatusNotification", payload, triggered=triggered)
        reporter.mark_reported()

    # ------------------------------------------------------------ CSMS requests
    def request(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Answer a CSMS request (already schema-valid). Commands wait in take_commands().

        A request that needs blocking I/O before its answer (a picture DataTransfer)
        gets a :class:`~controller.core.deferred.DeferredReply` instead of the dict."""
        handler = getattr(self, "_req_" + action, None)
        if handler is None:
            raise NotImplementedError(action)
        reply = handler(payload)
        self._fire_due_timers()
        self._refresh_status()
        self._apply_limits()
        return reply

    def handles(self, action: str) -> bool:
        return hasattr(self, "_req_" + action)

    def _req_GetConfiguration(self, p: dict[str, Any]) -> dict[str, Any]:
        items, unknown = self.keys.configuration(p.get("key") or None)
        items, unknown = limit_keys(items, unknown, self.key_int("GetConfigurationMaxKeys"))
        reply: dict[str, Any] = {
            "configurationKey": [{"key": k, "readonly": ro, "value": v} for k, ro, v in items]
        }
        if unknown:
            reply["unknownKey"] = unknown
        return reply

    def _req_ChangeConfiguration(self, p: dict[str, Any]) -> dict[str, Any]:
        key = p["key"].lower()
        if key == "securityprofile" and not self._profile_possible(p["value"]):
            return {"status": "Rejected"}
        result = self.keys.change(p["key"], p["value"])
        self._persist_keys()
        if result in (ChangeResult.ACCEPTED, ChangeResult.REBOOT_REQUIRED):
            self._key_changed(key)
        return {"status": _CHANGE_STATUS[result]}

    def _profile_possible(self, value: str) -> bool:
        """R-SEC 1: a profile is taken only when the credentials it needs are there."""
        try:
            profile = int(value)
        except ValueError:
            return False  # KeyStore answers the type error the same way
        sec = self.security
        if profile >= 1 and not self.keys.get("AuthorizationKey") and profile != 3:
            return False
        if profile >= 2 and (sec is None or not sec.has_central_root()):
            return False
        if profile == 3 and (sec is None or not sec.has_client_certificate()):
            return False
        return True

    # ------------------------------------------------------------ security (R-SEC)
    def security_event(self, type_: str, tech_info: str | None = None) -> None:
        """Record in the security log always; notify the CSMS (queued on disk) when enabled."""
        security_log.info("%s %s", type_, tech_info or "")
        if not self.key_bool("SecurityEventsEnabled"):
            return
        payload: dict[str, Any] = {"type": type_, "timestamp": self.stamp()}
        if tech_info:
            payload["techInfo"] = tech_info[:255]
        self.store.enqueue("SecurityEventNotification", payload, None)
        self._bound_queue()
        self.emit(cmd.WakeOutbox())

    def _on_SecurityEventOccurred(self, e: ev.SecurityEventOccurred) -> None:
        self.security_event(e.type, e.tech_info)

    def _on_ProfileConnected(self, e: ev.ProfileConnected) -> None:
        self.profile_failures = 0
        url = str(self.keys.get("SupervisionUrl") or "")
        if self.store.get_meta("security_profile_ok") != str(e.profile):
            self.store.set_meta("security_profile_ok", str(e.profile))
        if self.store.get_meta("supervision_url_ok") != url:
            self.store.set_meta("supervision_url_ok", url)

    def _on_ProfileFailed(self, e: ev.ProfileFailed) -> None:
        self.profile_failures += 1
        last_ok = self.store.get_meta("security_profile_ok")
        if last_ok is None or int(last_ok) == e.profile or self.profile_failures < PROFILE_ATTEMPTS:
            return
        log.error("security profile %s failed %d times: back to profile %s", e.profile, self.profile_failures, last_ok)
        self.keys.fall_back_security_profile(int(last_ok))
        good_url = self.store.get_meta("supervision_url_ok")
        if good_url and good_url != self.keys.get("SupervisionUrl"):
            self.keys.change("SupervisionUrl", good_url)  # the URL that worked with that profile
        self._persist_keys()
        self.profile_failures = 0
        self.security_event(
            "ReconfigurationOfSecurityParameters", f"profile {e.profile} failed; back to profile {last_ok}"
        )

    def _req_InstallCertificate(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.security is None:
            return {"status": "Rejected"}
        status = self.security.install(p["certificateType"], p["certificate"])
        if status == "Accepted":
            self.security_event("ReconfigurationOfSecurityParameters", f"{p['certificateType']} installed")
        return {"status": status}

    def _req_DeleteCertificate(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.security is None:
            return {"status": "NotFound"}
        protect = self.key_int("SecurityProfile") >= 2
        return {"status": self.security.delete(p["certificateHashData"], protect_last_central_root=protect)}

    def _req_GetInstalledCertificateIds(self, p: dict[str, Any]) -> dict[str, Any]:
        ids = self.security.installed_ids(p["certificateType"]) if self.security is not None else []
        return {"status": "Accepted", "certificateHashData": ids} if ids else {"status": "NotFound"}

    def _req_CertificateSigned(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.security is None:
            return {"status": "Rejected"}
        status = self.security.accept_signed(p["certificateChain"])
        self._timers.pop("certsign", None)
        if status != "Accepted":
            self.security_event("InvalidChargePointCertificate", "CertificateSigned refused")
        elif self.key_int("SecurityProfile") == 3:
            self.emit(cmd.Reconnect())  # use the new certificate at once
        return {"status": status}

    def sign_certificate(self) -> bool:
        """Send a SignCertificate with a CSR for our own key (R-SEC 3)."""
        if self.security is None:
            return False
        csr = self.security.make_csr(
            common_name=str(self.keys.get("BoxIdentifier")),
            organization=str(self.keys.get("CpoName") or self.model.charge_point_vendor),
            serial_number_attr=self.identity.serial_number,
        )
        self.send("SignCertificate", {"csr": csr}, "sign_certificate", triggered=True)
        wait = self.key_int("CertSigningWaitMinimum")
        if wait > 0 and self.cert_sign_retries < self.key_int("CertSigningRepeatTimes"):
            self._timers["certsign"] = self.now() + wait * (2 ** self.cert_sign_retries)
        return True

    def _persist_keys(self) -> None:
        changes = self.keys.take_changes()
        if changes:
            self.store.set_keys(changes)

    def _key_changed(self, key: str) -> None:
        if key == "heartbeatinterval":
            self._schedule_heartbeat()
        elif key == "websocketpinginterval":
            self.emit(cmd.SetPingInterval(self.key_int("WebSocketPingInterval")))
        elif key in ("metervaluesampleinterval", "clockaligneddatainterval", "disconnectedmetervaluesampleinterval"):
            for c in self.connectors.values():
                if c.session is not None and not c.session.stopping:
                    self._schedule_samples(c, "periodic" if "aligned" not in key else "clock")
        elif key == "securityprofile":
            self.security_event("ReconfigurationOfSecurityParameters", f"SecurityProfile {self.key_int('SecurityProfile')}")
            self.emit(cmd.Reconnect())  # connect with the new profile; falls back if it fails
        elif key == "authorizationkey":  # OCA TC_073: reconnect at once with the new password
            self.security_event("ReconfigurationOfSecurityParameters", "AuthorizationKey changed")
            if self.key_int("SecurityProfile") in (1, 2):
                self.emit(cmd.Reconnect())

    def _req_RemoteStartTransaction(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.leaving or self.maintenance.installing or not self.online():  # not while Pending (§4.2)
            return {"status": "Rejected"}
        raw = p.get("chargingProfile")
        if raw is not None:
            cid = p.get("connectorId") or 1
            c = self.connectors.get(cid)
            try:  # TC_060: only a TxProfile, and only on a connector that takes profiles
                self.profiles.parse(cid, raw, self.clock.wall(), ("TxProfile",))
            except ProfileError as e:
                log.warning("RemoteStartTransaction refused: its charging profile %s", e)
                return {"status": "Rejected"}
            if c is not None and c.connector_type == "CHAdeMO" and p.get("connectorId"):
                return {"status": "Rejected"}
            if not self.profiles.has_room_for(cid, raw):
                return {"status": "Rejected"}  # MaxChargingProfilesInstalled: its profile could not be kept
        return {"status": self._remote_start(p)}

    def _req_RemoteStopTransaction(self, p: dict[str, Any]) -> dict[str, Any]:
        for c in self.connectors.values():
            s = c.session
            if s is not None and not s.stopping and s.transaction_id == p["transactionId"]:
                self._stop(c, "Remote")
                return {"status": "Accepted"}
        return {"status": "Rejected"}

    def _req_ChangeAvailability(self, p: dict[str, Any]) -> dict[str, Any]:
        cid, operative = p["connectorId"], p["type"] == "Operative"
        if cid != 0 and cid not in self.connectors:
            return {"status": "Rejected"}
        targets = list(self.connectors.values()) if cid == 0 else [self.connectors[cid]]
        scheduled = False
        if cid == 0:
            self.station_operative = operative
            if not operative:
                self.remote_any = None  # out of service: starts waiting for a plug are cancelled
                self._timers.pop("remote:any", None)
        for c in targets:
            if c.session is not None:
                c.scheduled_operative = operative
                scheduled = True
            else:
                c.operative = operative
                if not operative:
                    c.pending = None
                    self._timers.pop(f"remote:{c.connector_id}", None)
        with self.store.atomic():
            for target_id in [cid] if cid != 0 else [0, *self.connectors]:
                self.store.set_availability(target_id, "Operative" if operative else "Inoperative")
        return {"status": "Scheduled" if scheduled else "Accepted"}

    def _req_SetChargingProfile(self, p: dict[str, Any]) -> dict[str, Any]:
        cid = p["connectorId"]
        c = self.connectors.get(cid)
        status = self.profiles.install(cid, p["csChargingProfiles"], self.clock.wall(), self._view(c) if c else None)
        log.info("SetChargingProfile %s on connector %s: %s", p["csChargingProfiles"].get("chargingProfileId"), cid, status)
        return {"status": status}

    def _req_ClearChargingProfile(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": self.profiles.clear(p)}

    def _req_GetCompositeSchedule(self, p: dict[str, Any]) -> dict[str, Any]:
        cid = p["connectorId"]
        if cid != 0 and cid not in self.connectors:
            return {"status": "Rejected"}
        if not 0 <= p["duration"] <= MAX_COMPOSITE_S:
            return {"status": "Rejected"}
        wall = self.clock.wall()
        if cid == 0:
            volts = max((c.voltage_v for c in self.connectors.values()), default=0.0)
            view = ConnectorView(0, "station", self.model.max_power_kw * 1000.0, volts, None, None)
        else:
            view = self._view(self.connectors[cid])
        schedule = self.profiles.composite(view, wall, p["duration"], p.get("chargingRateUnit"))
        return {
            "status": "Accepted", "connectorId": cid, "scheduleStart": rfc3339(wall), "chargingSchedule": schedule,
        }

    def _req_ClearCache(self, _: dict[str, Any]) -> dict[str, Any]:
        self.authorizer.clear_cache()
        return {"status": "Accepted"}

    def _req_GetLocalListVersion(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"listVersion": self.authorizer.list_version()}

    def _req_SendLocalList(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": self.authorizer.send_local_list(p)}

    def _req_ReserveNow(self, p: dict[str, Any]) -> dict[str, Any]:
        status = self._reserve(p)
        log.info("ReserveNow %s on connector %s for %s: %s", p["reservationId"], p["connectorId"], p["idTag"], status)
        return {"status": status}

    def _reserve(self, p: dict[str, Any]) -> str:
        cid, rid = p["connectorId"], p["reservationId"]
        try:
            expiry = parse_rfc3339(p["expiryDate"])
        except ValueError:
            return "Rejected"
        if expiry <= self.clock.wall() or self.leaving:
            return "Rejected"
        if cid != 0 and cid not in self.connectors:
            return "Rejected"
        if cid == 0 and not self.key_bool("ReserveConnectorZeroSupported"):
            return "Rejected"
        station_error = any(sev == "error" for sev in self.station_faults.values())
        previous = self.reservations.by_id.get(rid)
        if previous is not None:
            self.reservations.by_id.pop(rid)  # a reservation with the same id is replaced
        try:
            if cid == 0:
                if station_error:
                    return "Faulted"
                if not self.station_operative:
                    return "Unavailable"
                free = [c for c in self.connectors.values() if self._free_for_reservation(c)]
                if len(free) <= len(self.reservations.station_wide()):
                    return "Occupied"
            else:
                c = self.connectors[cid]
                if c.has_error() or station_error:
                    return "Faulted"
                if not c.operative or not self.station_operative:
                    return "Unavailable"
                if not self._free_for_reservation(c):
                    return "Occupied"
                others = [x for x in self.connectors.values() if x is not c and self._free_for_reservation(x)]
                if len(others) < len(self.reservations.station_wide()):
                    return "Occupied"  # held for a connector-0 reservation: its last free connector
        finally:
            if previous is not None:
                self.reservations.by_id[rid] = previous
        self.reservations.put(
            Reservation(rid, cid, p["idTag"], p.get("parentIdTag"), expiry), p["expiryDate"]
        )
        self._schedule_reservation_expiry()
        return "Accepted"

    def _req_CancelReservation(self, p: dict[str, Any]) -> dict[str, Any]:
        removed = self.reservations.remove(p["reservationId"])
        self._schedule_reservation_expiry()
        return {"status": "Accepted" if removed is not None else "Rejected"}

    def _req_UnlockConnector(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"status": "NotSupported"}  # the cables are fixed (guide: not applicable)

    def _req_Reset(self, p: dict[str, Any]) -> dict[str, Any]:
        kind = "hard" if p["type"] == "Hard" else "soft"
        self._leave(kind, "HardReset" if kind == "hard" else "SoftReset")
        return {"status": "Accepted"}

    def leave(self, kind: str, reason: str) -> list[cmd.Command]:
        """Stop every transaction with ``reason``, then ask for Restart(kind)."""
        self._leave(kind, reason)
        self._refresh_status()
        return self.take_commands()

    def _leave(self, kind: str, reason: str) -> None:
        if kind in ("soft", "hard"):
            self.security_event("ResetOrReboot", f"{kind} reset requested by the CSMS")
        self.resetting = kind
        self.leaving = True
        for c in self.connectors.values():
            c.pending = None
            if c.session is not None:
                self._stop(c, reason)
        self.remote_any = None
        self._maybe_leave()

    def _req_DataTransfer(self, p: dict[str, Any]) -> dict[str, Any]:
        handlers = self.vendor_handlers.get(p["vendorId"])
        if handlers is None:
            return {"status": "UnknownVendorId"}
        handler = handlers.get(p.get("messageId") or "")
        if handler is None:
            return {"status": "UnknownMessageId"}
        answer = handler(self, p.get("data"))
        if isinstance(answer, DeferredReply):  # a picture download: answered after it (R-DT 2/3)
            return answer.then(_data_transfer_reply)
        return _data_transfer_reply(answer)

    def _req_TriggerMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        what, cid = p["requestedMessage"], p.get("connectorId")
        if cid is not None and cid != 0 and cid not in self.connectors:
            return {"status": "Rejected"}
        if what == "BootNotification":
            if self.online():
                self._send_boot_trigger()
            else:  # Pending/Rejected: the answer to this one decides our registration (R-BOOT 2)
                self._send_boot()
        elif what == "Heartbeat":
            self.send("Heartbeat", {}, "heartbeat", triggered=True)
        elif what == "StatusNotification":
            for target in [cid] if cid is not None else list(self.reporters):
                reporter = self.reporters[target]
                if reporter.candidate is not None:
                    self._send_status(target, reporter, triggered=True)
        elif what == "MeterValues":
            for target in [cid] if cid else list(self.connectors):
                self.emit(cmd.Sample(target, "trigger"))
        elif what == "DiagnosticsStatusNotification":
            self.maintenance.trigger_diagnostics()
        elif what == "FirmwareStatusNotification":
            self.maintenance.trigger_firmware()
        else:
            return {"status": "NotImplemented"}
        return {"status": "Accepted"}

    def _req_ExtendedTriggerMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        """R-TRIG: the security extension's triggers (FirmwareStatusNotification here means
        SignedFirmwareStatusNotification)."""
        what, cid = p["requestedMessage"], p.get("connectorId")
        if cid is not None and cid != 0 and cid not in self.connectors:
            return {"status": "Rejected"}
        if what == "LogStatusNotification":
            self.maintenance.trigger_log()
        elif what == "FirmwareStatusNotification":
            status = self.maintenance._current_firmware_status()
            self.send("SignedFirmwareStatusNotification", {"status": status}, triggered=True)
        elif what in ("BootNotification", "Heartbeat", "MeterValues", "StatusNotification"):
            basic = {"requestedMessage": what, **({"connectorId": cid} if cid is not None else {})}
            return self._req_TriggerMessage(basic)
        elif what == "SignChargePointCertificate":
            self.cert_sign_retries = 0
            if not self.sign_certificate():
                return {"status": "Rejected"}
        else:
            return {"status": "NotImplemented"}
        return {"status": "Accepted"}

    def _req_UpdateFirmware(self, p: dict[str, Any]) -> dict[str, Any]:
        return self.maintenance.update_firmware(p)

    def _req_SignedUpdateFirmware(self, p: dict[str, Any]) -> dict[str, Any]:
        """R-FW 2: the signing certificate must chain to an installed ManufacturerRootCertificate."""
        problem = (
            self.security.signing_certificate_problem(p["firmware"]["signingCertificate"])
            if self.security is not None else "no certificate store"
        )
        return self.maintenance.signed_update_firmware(p, problem)

    def _req_GetDiagnostics(self, p: dict[str, Any]) -> dict[str, Any]:
        return self.maintenance.get_diagnostics(p)

    def _req_GetLog(self, p: dict[str, Any]) -> dict[str, Any]:
        return self.maintenance.get_log(p)

    def _on_FirmwareTrial(self, e: ev.FirmwareTrial) -> None:
        self.maintenance.trial = e.state

    def _on_FirmwareDownloaded(self, e: ev.FirmwareDownloaded) -> None:
        self.maintenance.firmware_downloaded(e.ok, e.path, e.error, e.signature_ok)

    def _on_FirmwareInstallFailed(self, e: ev.FirmwareInstallFailed) -> None:
        self.maintenance.firmware_install_failed(e.error)

    def _on_UploadFinished(self, e: ev.UploadFinished) -> None:
        self.maintenance.upload_finished(e.kind, e.request_id, e.ok, e.error)

    def _send_boot_trigger(self) -> None:
        payload = {
            "chargePointVendor": self.model.charge_point_vendor,
            "chargePointModel": self.model.charge_point_model,
            "chargePointSerialNumber": self.identity.serial_number,
            "chargeBoxSerialNumber": self.identity.serial_number,
            "firmwareVersion": self.identity.firmware_version,
        }
        self.send("BootNotification", payload, "boot_trigger")

    # ------------------------------------------------------------ views
    def _connector(self, cid: int) -> Connector | None:
        c = self.connectors.get(cid)
        if c is None:
            log.warning("event for unknown connector %s ignored", cid)
        return c

    def snapshot(self) -> dict[str, Any]:
        """The state shown by ``evsectl status --json`` (and later the screen)."""
        station_error = any(sev == "error" for sev in self.station_faults.values())
        connectors = []
        for c in self.connectors.values():
            s = c.session
            energy = 0 if s is None or c.energy_wh is None else max(0, c.energy_wh - s.meter_start_wh)
            connectors.append({
                "id": c.connector_id,
                "type": c.connector_type,
                "status": derive_status(c, station_error, self.station_operative, self.now()),
                "plugged": c.plugged,
                "transaction_id": s.transaction_id if s is not None else None,
                "id_tag": s.id_tag if s is not None else None,
                "energy_wh": energy,
                "meter_wh": c.energy_wh,
                "power_w": round(c.power_w) if s is not None else 0,
                "soc": c.soc_pct,
                "duration_s": round(self.now() - s.started_mono) if s is not None else None,
                "cost": c.cost,
                "error": _fault_view(c.faults or self.station_faults),
                "operative": c.operative,
                "reservation": _reservation_view(self.reservations.on_connector(c.connector_id)),
                "limit_w": c.limit_w,  # the charging-profile set-point (None = connector maximum)
                "offered_w": round(c.offered_w),
                "qr_url": self.keys.get(f"QRcode{c.connector_id}") or None,
            })
        return {
            "link": self.link,
            "model": self.model.name,
            "serial_number": self.identity.serial_number,
            "box_identifier": self.keys.get("BoxIdentifier"),
            "selected_connector": self.selected,
            "auth_options": self.keys.auth_options(),
            "connectors": connectors,
            "station_reservations": [_reservation_view(r) for r in self.reservations.station_wide()],
            "local_list_version": self.authorizer.list_version(),
            "queued_messages": self.store.count(),
            # why the state is held in memory ("disk full", ...) after a storage fault, else None
            "storage_fault": getattr(self.store, "storage_fault", None),
            "config_error": self.config_error,
            "last_error": self.last_error,
            "station_operative": self.station_operative,
            "pictures": self.pictures,
        }


_CHANGE_STATUS = {
    ChangeResult.ACCEPTED: "Accepted",
    ChangeResult.REJECTED: "Rejected",
    ChangeResult.REBOOT_REQUIRED: "RebootRequired",
    ChangeResult.NOT_SUPPORTED: "NotSupported",
}


def _norm_dtc(code: str) -> str:
    """``"0x" + UPPERCASE hex`` for any DTC, known or not; other text upper-cased."""
    try:
        return normalise_code(code)
    except ValueError:
        return code.upper()


def _error_fields(faults: dict[str, str]) -> tuple[str, str | None, str | None]:
    """errorCode, vendorErrorCode, info for the most recent active fault (R-STATUS 2)."""
    if not faults:
        return "NoError", None, None
    code = list(faults)[-1]
    d = lookup(code)
    if d is None:
        return "OtherError", code, None
    return d.error_code, d.code, d.description[:50]


def _fault_view(faults: dict[str, str]) -> dict[str, Any] | None:
    if not faults:
        return None
    error_code, dtc, info = _error_fields(faults)
    return {"error_code": error_code, "dtc": dtc, "info": info}


def _reservation_view(r: Reservation | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"reservation_id": r.reservation_id, "id_tag": r.id_tag, "expiry": rfc3339(r.expiry)}


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _lenient_json(text: str) -> Any:
    """JSON, also in the guide's own example form with unquoted keys ({currency:"EUR",...})."""
    try:
        return json.loads(text)
    except ValueError:
        return json.loads(re.sub(r'([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:', r'\1"\2":', text))


def _on_cost_updated(charger: Charger, data: Any) -> tuple[str, str | None]:
    """com.se.cost / CostUpdated (R-DT 1): remember the running cost for the screen."""
    try:
        body = _lenient_json(data) if isinstance(data, str) else data
        cid = int(body["connectID"])
        cost = {
            "currency": str(body.get("currency", "")),
            "total_cost": _finite(float(body["totalCost"])),
            "transaction_id": body.get("transactionId", body.get("TransactionId")),
            "method": body.get("method"),
        }
    except (ValueError, TypeError, KeyError):
        return "Rejected", None
    c = charger.connectors.get(cid)
    if c is None:
        return "Rejected", None
    s = c.session
    tx = cost["transaction_id"]
    if tx is not None and s is not None and s.transaction_id is not None and str(tx) != str(s.transaction_id):
        # the cost of another transaction than the one running here: never shown (R-DT 1)
        return "Rejected", json.dumps({"reason": "UnknownTransaction"})
    c.cost = cost
    return "Accepted", None


def _data_transfer_reply(answer: tuple[str, str | None]) -> dict[str, Any]:
    status, data = answer
    return {"status": status} if data is None else {"status": status, "data": data}


__all__ = ["Charger", "Identity", "Clock", "DEFAULT_VENDOR_IDS", "timedelta"]
