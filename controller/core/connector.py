"""One connector's state and the OCPP status derived from it, with MinimumStatusDuration.

A :class:`Connector` is plain data that the charger core mutates; ``derive_status``
turns it into one of the OCPP 1.6 ChargePointStatus values, and
:class:`StatusReporter` decides when a StatusNotification is due (debounced by
MinimumStatusDuration; a transition to Faulted is reported at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AVAILABLE = "Available"
PREPARING = "Preparing"
CHARGING = "Charging"
SUSPENDED_EV = "SuspendedEV"
SUSPENDED_EVSE = "SuspendedEVSE"
FINISHING = "Finishing"
RESERVED = "Reserved"
UNAVAILABLE = "Unavailable"
FAULTED = "Faulted"

#: below this output the EV is considered not to draw (SuspendedEV)
DRAWING_THRESHOLD_W = 100.0
#: the first seconds of a session are the power ramp: Charging, not SuspendedEV
RAMP_GRACE_S = 5.0


@dataclass
class Session:
    """A transaction running (or stopping) on a connector."""

    local_id: int
    id_tag: str
    meter_start_wh: int
    started_mono: float
    transaction_id: int | None = None
    stopping: bool = False
    stop_reason: str | None = None
    stop_id_tag: str | None = None
    suspended_evse: bool = False
    next_periodic_mono: float | None = None
    next_clock_mono: float | None = None
    stop_txn_data: list[dict[str, Any]] = field(default_factory=list)
    #: the highest energy register reading already reported for this session
    reported_wh: int = 0
    parent_id_tag: str | None = None
    reservation_id: int | None = None
    started_wall: Any = None  # aware datetime: Relative charging profiles count from it


@dataclass
class PendingStart:
    """An authorization (remote start, badge, free mode) waiting for the plug or for power."""

    id_tag: str
    source: str  # "remote" | "local" | "free" | "autocharge" | "pnc"
    deadline_mono: float | None = None  # remote start waiting for the plug
    authorize_first: bool = False
    authorized: bool = False
    parent_id_tag: str | None = None  # learnt from the CSMS or the local list/cache
    charging_profile: dict[str, Any] | None = None  # TxProfile of a RemoteStartTransaction


@dataclass
class Connector:
    connector_id: int
    connector_type: str
    max_power_w: float
    plugged: bool = False
    operative: bool = True
    scheduled_operative: bool | None = None  # ChangeAvailability Scheduled
    session: Session | None = None
    pending: PendingStart | None = None
    finishing: bool = False  # a transaction ended and the cable is still in
    faults: dict[str, str] = field(default_factory=dict)  # dtc -> severity
    energy_wh: int | None = None
    power_w: float = 0.0
    offered_w: float = 0.0
    voltage_v: float = 0.0
    current_a: float = 0.0
    soc_pct: int | None = None
    ev_mac: str | None = None
    last_meter: Any = None
    cost: dict[str, Any] | None = None
    reserved: bool = False  # held by a reservation (its own, or the station's last free one)
    limit_w: float | None = None  # the set-point last given to the power stage

    def has_error(self) -> bool:
        return any(sev == "error" for sev in self.faults.values())

    def idle_plugged(self) -> bool:
        """Plugged, nothing running, able to start."""
        return (
            self.plugged
            and self.session is None
            and not self.finishing
            and self.operative
            and not self.has_error()
        )


def derive_status(c: Connector, station_error: bool, station_operative: bool, now: float = 0.0) -> str:
    """The OCPP status of a connector, from its state (OCPP 1.6 §4.9 state table)."""
    if c.has_error() or station_error:
        return FAULTED
    s = c.session
    if s is not None and not s.stopping:
        if s.suspended_evse:
            return SUSPENDED_EVSE
        ramping = now - s.started_mono < RAMP_GRACE_S
        if not c.plugged or (c.power_w < DRAWING_THRESHOLD_W and not ramping):
            return SUSPENDED_EV
        return CHARGING
    if not (c.operative and station_operative):
        return UNAVAILABLE
    if s is not None or c.finishing:
        return FINISHING
    if c.plugged or c.pending is not None:
        return PREPARING
    if c.reserved:
        return RESERVED
    return AVAILABLE


@dataclass
class StatusReporter:
    """Debounces status changes of one connector (MinimumStatusDuration)."""

    reported: str | None = None
    candidate: str | None = None
    candidate_since: float = 0.0
    error_code: str = "NoError"
    vendor_error_code: str | None = None
    info: str | None = None
    reported_error: tuple[str, str | None] = ("NoError", None)

    def observe(self, status: str, now: float) -> None:
        if status != self.candidate:
            self.candidate, self.candidate_since = status, now

    def due(self, now: float, minimum_s: float, force: bool = False) -> bool:
        """True when the candidate status (or its error) should be reported now."""
        if self.candidate is None:
            return False
        changed = (self.candidate != self.reported) or (
            (self.error_code, self.vendor_error_code) != self.reported_error
        )
        if not changed and not force:
            return False
        if force or self.candidate == FAULTED or self.reported is None:
            return True
        return now - self.candidate_since >= minimum_s

    def deadline(self, minimum_s: float) -> float | None:
        if self.candidate is None:
            return None
        if self.candidate == self.reported and (self.error_code, self.vendor_error_code) == self.reported_error:
            return None  # nothing new to report (a changed error alone is due too)
        return self.candidate_since + minimum_s

    def mark_reported(self) -> None:
        self.reported = self.candidate
        self.reported_error = (self.error_code, self.vendor_error_code)
