"""Smart charging (R-SC): charging profiles, stacking, the limit in force, the composite schedule.

Owns: the value types of a SetChargingProfile ``csChargingProfiles`` (parsed from the
camelCase dict the adapter has already schema-validated, and written back with
``to_ocpp()`` for the store), the checks the JSON schema cannot make, and the one
implementation of the OCPP 1.6 §3.13 rules that turns a set of installed profiles into
a power limit: ``limit_at`` (the limit in force at an instant and the next instant it
can change, so the runtime arms exactly one timer) and ``composite_schedule`` (what
GetCompositeSchedule.conf reports, built by walking ``limit_at``'s boundaries). It does
not decide what is accepted over OCPP (ChargePointMaxProfile Rejected, TxProfile only
with a matching transaction, CHAdeMO, replacement by id / stack level, the 40-profile
cap) nor apply the CCS2 power-stage rules (0 W residual, 1 kW floor): those belong to
the caller. Pure: no I/O, no clock (``now`` is passed in), stdlib only.

The rules, as implemented (one paragraph per decision; times are half-open intervals,
so at a boundary instant the *new* value is in force):

* **Applicability.** ChargePointMaxProfile: connector 0 only, caps every connector.
  TxDefaultProfile: the connector's own and those on connector 0. TxProfile: the
  connector's own, only during a transaction (``tx_start`` given), and only if its
  transactionId is absent or equals ``tx_id``. Validity is ``validFrom <= t < validTo``.
* **Stacking.** Per purpose, among the applicable profiles *in force at t* (valid, and
  the schedule has a period at t), the highest stackLevel wins; a schedule before its
  start or past its duration is not in force, so a lower stack level shows through.
  Two in force at the same purpose and stack level (SetChargingProfile normally
  replaces one with the other) resolve to the lower limit.
* **Connector 0 vs connector n.** A TxDefaultProfile of the connector itself that is in
  force at t hides every connector-0 TxDefaultProfile at t, whatever their stack levels;
  when none of the connector's own is in force, connector 0's apply (instant by
  instant, like a lower stack level).
* **Purposes.** TxProfile in force overrides TxDefaultProfile; the result is then
  capped by ChargePointMaxProfile (the minimum) and by ``connector_max_w``. No profile
  in force → ``Limit.power_w`` is None (the connector's own maximum applies).
* **Kinds.** Absolute: periods count from startSchedule; a profile received without
  one starts when it was received (``parse_profile(received_at=...)`` fills it in, so
  the stored profile keeps that start across a restart). Recurring: periods count
  from the most recent ``startSchedule + k × 24 h`` (Daily) or ``× 7 d`` (Weekly),
  k ≥ 0, in UTC seconds (no local-time / DST shift); it is not in force before
  startSchedule; a duration longer than the recurrence is cut at the next
  recurrence; without a duration the last period lasts until the next recurrence.
  Relative: periods count from ``tx_start``; without a transaction it does not apply
  (a caller who wants GetCompositeSchedule to show "a transaction starting now" passes
  ``tx_start=start``); a startSchedule sent with it is kept but ignored.
* **Units.** Watts native. A schedule in amperes is converted with the DC output
  voltage the power stage reports: ``W = A × V`` (DC: no phases, numberPhases and
  minChargingRate ignored). A voltage ≤ 0 (not measured yet) uses
  ``NOMINAL_DC_VOLTAGE_V`` (400 V). A composite asked in A divides by the same voltage.
* **Composite.** The period starting at whole second s holds the limit in force at
  ``start + s``; consecutive equal limits are merged; where no profile is in force the
  period carries ``connector_max_w`` (OCPP 1.6 has no gaps in a schedule); limits are
  rounded *down* to 0.1 (OCPP's one decimal), so a reported limit never exceeds the
  real one. Without a requested unit the composite is in W. For connector 0 (the
  station) only connector-0 profiles count (ChargePointMaxProfile and connector-0
  TxDefaultProfile; never a TxProfile), capped by ``connector_max_w`` (pass the station
  maximum).
* **Parsing leniency.** Fields that mean nothing for the profile's purpose or kind are
  dropped (transactionId outside a TxProfile, recurrencyKind outside Recurring); a
  duration of 0 is read as "no duration" (CSMSs send it meaning open-ended, and a
  zero-length schedule would be meaningless); times are truncated to milliseconds (the
  precision of ``rfc3339``), so ``parse_profile(c, p.to_ocpp()) == p``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, cast

from .timefmt import parse_rfc3339, rfc3339

__all__ = [
    "CHARGE_POINT_MAX_PROFILE",
    "DEFAULT_MAX_PERIODS",
    "DEFAULT_MAX_STACK_LEVEL",
    "KINDS",
    "NOMINAL_DC_VOLTAGE_V",
    "PURPOSES",
    "RECURRENCIES",
    "TX_DEFAULT_PROFILE",
    "TX_PROFILE",
    "UNITS",
    "ChargingProfile",
    "CompositeSchedule",
    "Kind",
    "Limit",
    "ProfileError",
    "Purpose",
    "Recurrency",
    "Schedule",
    "SchedulePeriod",
    "Unit",
    "composite_schedule",
    "limit_at",
    "parse_profile",
]

Unit = Literal["W", "A"]
Purpose = Literal["TxDefaultProfile", "TxProfile", "ChargePointMaxProfile"]
Kind = Literal["Absolute", "Recurring", "Relative"]
Recurrency = Literal["Daily", "Weekly"]

CHARGE_POINT_MAX_PROFILE = "ChargePointMaxProfile"
TX_DEFAULT_PROFILE = "TxDefaultProfile"
TX_PROFILE = "TxProfile"
PURPOSES: tuple[str, ...] = (CHARGE_POINT_MAX_PROFILE, TX_DEFAULT_PROFILE, TX_PROFILE)
KINDS: tuple[str, ...] = ("Absolute", "Recurring", "Relative")
RECURRENCIES: Mapping[str, int] = {"Daily": 86_400, "Weekly": 7 * 86_400}
UNITS: tuple[str, ...] = ("W", "A")

NOMINAL_DC_VOLTAGE_V = 400.0  # used for A <-> W when the power stage reports no voltage yet
DEFAULT_MAX_PERIODS = 50  # ChargingScheduleMaxPeriods
DEFAULT_MAX_STACK_LEVEL = 20  # ChargeProfileMaxStackLevel


class ProfileError(ValueError):
    """A charging profile the schema lets through but OCPP (or this charger) does not.

    ``reason`` is one of: ``invalid`` (missing field / wrong type: data that skipped the
    schema), ``bad-connector``, ``bad-purpose``, ``purpose-not-allowed``, ``bad-kind``,
    ``bad-unit``, ``bad-recurrency``, ``stack-level-out-of-range``, ``no-periods``,
    ``too-many-periods``, ``first-period-not-zero``, ``periods-not-ascending``,
    ``negative-limit``, ``negative-duration``, ``recurring-without-recurrency-kind``,
    ``recurring-without-start-schedule``, ``absolute-without-start-schedule``,
    ``valid-from-not-before-valid-to``, ``tx-profile-on-connector-0``,
    ``max-profile-not-on-connector-0``.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SchedulePeriod:
    start_s: int  # seconds from the schedule's start
    limit: float  # in the schedule's unit


def _periods_to_ocpp(periods: Sequence[SchedulePeriod]) -> list[dict[str, Any]]:
    return [{"startPeriod": p.start_s, "limit": p.limit} for p in periods]


@dataclass(frozen=True, slots=True)
class Schedule:
    unit: Unit
    periods: tuple[SchedulePeriod, ...]
    duration_s: int | None  # None: the last period lasts (until the next recurrence)
    start: datetime | None  # startSchedule (None only for Relative)

    def to_ocpp(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.duration_s is not None:
            d["duration"] = self.duration_s
        if self.start is not None:
            d["startSchedule"] = rfc3339(self.start)
        d["chargingRateUnit"] = self.unit
        d["chargingSchedulePeriod"] = _periods_to_ocpp(self.periods)
        return d


@dataclass(frozen=True, slots=True)
class ChargingProfile:
    profile_id: int
    connector_id: int  # 0: the station (ChargePointMaxProfile), every connector (TxDefaultProfile)
    stack_level: int
    purpose: Purpose
    kind: Kind
    recurrency: Recurrency | None  # Recurring only
    valid_from: datetime | None
    valid_to: datetime | None
    transaction_id: int | None  # TxProfile only
    schedule: Schedule

    def to_ocpp(self) -> dict[str, Any]:
        """The ``csChargingProfiles`` dict (camelCase, as on the wire), without the connectorId."""
        d: dict[str, Any] = {"chargingProfileId": self.profile_id}
        if self.transaction_id is not None:
            d["transactionId"] = self.transaction_id
        d["stackLevel"] = self.stack_level
        d["chargingProfilePurpose"] = self.purpose
        d["chargingProfileKind"] = self.kind
        if self.recurrency is not None:
            d["recurrencyKind"] = self.recurrency
        if self.valid_from is not None:
            d["validFrom"] = rfc3339(self.valid_from)
        if self.valid_to is not None:
            d["validTo"] = rfc3339(self.valid_to)
        d["chargingSchedule"] = self.schedule.to_ocpp()
        return d


@dataclass(frozen=True, slots=True)
class Limit:
    power_w: float | None  # None: no profile in force, the connector's own maximum applies
    unit: Unit | None  # unit of the schedule that sets power_w ("W" when connector_max_w does)
    next_change: datetime | None  # the next instant power_w can change; None: never (on its own)


@dataclass(frozen=True, slots=True)
class CompositeSchedule:
    start: datetime
    duration_s: int
    unit: Unit
    periods: list[SchedulePeriod]

    def to_ocpp(self) -> dict[str, Any]:
        """The ``chargingSchedule`` of GetCompositeSchedule.conf."""
        return {
            "duration": self.duration_s,
            "startSchedule": rfc3339(self.start),
            "chargingRateUnit": self.unit,
            "chargingSchedulePeriod": _periods_to_ocpp(self.periods),
        }


# --------------------------------------------------------------------------- parsing


def _ms(dt: datetime) -> datetime:
    return dt.replace(microsecond=dt.microsecond - dt.microsecond % 1000)


def _time(d: Mapping[str, Any], key: str) -> datetime | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, datetime):
        if v.tzinfo is None or v.utcoffset() is None:
            raise ProfileError("invalid", f"{key} without a time zone")
        return _ms(v.astimezone(timezone.utc))
    if not isinstance(v, str):
        raise ProfileError("invalid", f"{key} is not a date-time")
    try:
        return _ms(parse_rfc3339(v))
    except ValueError as exc:
        raise ProfileError("invalid", f"{key}: {exc}") from None


def _int(d: Mapping[str, Any], key: str, *, required: bool = True) -> int | None:
    v = d.get(key)
    if v is None:
        if required:
            raise ProfileError("invalid", f"{key} missing")
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ProfileError("invalid", f"{key} is not an integer")
    return v


def _choice(d: Mapping[str, Any], key: str, allowed: Collection[str], reason: str) -> str:
    v = d.get(key)
    if v not in allowed:
        raise ProfileError(reason, f"{key}={v!r}")
    return str(v)


def parse_profile(
    connector_id: int,
    d: Mapping[str, Any],
    *,
    received_at: datetime | None = None,
    max_periods: int = DEFAULT_MAX_PERIODS,
    max_stack_level: int = DEFAULT_MAX_STACK_LEVEL,
    purposes: Collection[str] = PURPOSES,
) -> ChargingProfile:
    """A ``csChargingProfiles`` dict for ``connector_id`` as a ChargingProfile, or ProfileError.

    ``received_at`` becomes the startSchedule of an Absolute profile sent without one
    (without it, such a profile is refused). ``purposes`` narrows the accepted purposes
    (RemoteStartTransaction: TxProfile only).
    """
    if not isinstance(d, Mapping):
        raise ProfileError("invalid", "chargingProfile is not an object")
    if isinstance(connector_id, bool) or not isinstance(connector_id, int) or connector_id < 0:
        raise ProfileError("bad-connector", f"connectorId={connector_id!r}")
    profile_id = _int(d, "chargingProfileId")
    stack_level = _int(d, "stackLevel")
    assert profile_id is not None and stack_level is not None
    purpose = _choice(d, "chargingProfilePurpose", PURPOSES, "bad-purpose")
    if purpose not in purposes:
        raise ProfileError("purpose-not-allowed", purpose)
    kind = _choice(d, "chargingProfileKind", KINDS, "bad-kind")
    if not 0 <= stack_level <= max_stack_level:
        raise ProfileError("stack-level-out-of-range", f"{stack_level} not in 0..{max_stack_level}")
    if purpose == TX_PROFILE and connector_id == 0:
        raise ProfileError("tx-profile-on-connector-0")
    if purpose == CHARGE_POINT_MAX_PROFILE and connector_id != 0:
        raise ProfileError("max-profile-not-on-connector-0", f"connectorId={connector_id}")

    recurrency: Recurrency | None = None
    if kind == "Recurring":
        if d.get("recurrencyKind") is None:
            raise ProfileError("recurring-without-recurrency-kind")
        rk = _choice(d, "recurrencyKind", tuple(RECURRENCIES), "bad-recurrency")
        recurrency = cast(Recurrency, rk)
    transaction_id = _int(d, "transactionId", required=False) if purpose == TX_PROFILE else None

    valid_from = _time(d, "validFrom")
    valid_to = _time(d, "validTo")
    if valid_from is not None and valid_to is not None and valid_from >= valid_to:
        detail = f"{rfc3339(valid_from)} >= {rfc3339(valid_to)}"
        raise ProfileError("valid-from-not-before-valid-to", detail)

    sd = d.get("chargingSchedule")
    if not isinstance(sd, Mapping):
        raise ProfileError("invalid", "chargingSchedule missing")
    unit = _choice(sd, "chargingRateUnit", UNITS, "bad-unit")
    duration = _int(sd, "duration", required=False)
    if duration is not None and duration < 0:
        raise ProfileError("negative-duration", f"duration={duration}")
    if duration == 0:
        duration = None
    start = _time(sd, "startSchedule")
    if start is None:
        if kind == "Recurring":
            raise ProfileError("recurring-without-start-schedule")
        if kind == "Absolute":
            if received_at is None:
                raise ProfileError("absolute-without-start-schedule")
            if received_at.tzinfo is None or received_at.utcoffset() is None:
                raise ValueError("received_at must be an aware datetime")
            start = _ms(received_at.astimezone(timezone.utc))

    raw = sd.get("chargingSchedulePeriod")
    if not isinstance(raw, (list, tuple)):
        raise ProfileError("invalid", "chargingSchedulePeriod is not a list")
    if not raw:
        raise ProfileError("no-periods")
    if len(raw) > max_periods:
        raise ProfileError("too-many-periods", f"{len(raw)} > {max_periods}")
    periods: list[SchedulePeriod] = []
    for i, pd in enumerate(raw):
        if not isinstance(pd, Mapping):
            raise ProfileError("invalid", f"chargingSchedulePeriod[{i}] is not an object")
        sp = _int(pd, "startPeriod")
        assert sp is not None
        lim = pd.get("limit")
        if isinstance(lim, bool) or not isinstance(lim, (int, float)) or not math.isfinite(lim):
            raise ProfileError("invalid", f"chargingSchedulePeriod[{i}].limit is not a number")
        if i == 0 and sp != 0:
            raise ProfileError("first-period-not-zero", f"startPeriod={sp}")
        if i > 0 and sp <= periods[-1].start_s:
            detail = f"startPeriod {sp} after {periods[-1].start_s}"
            raise ProfileError("periods-not-ascending", detail)
        if lim < 0:
            raise ProfileError("negative-limit", f"chargingSchedulePeriod[{i}].limit={lim}")
        periods.append(SchedulePeriod(sp, float(lim)))

    return ChargingProfile(
        profile_id=profile_id,
        connector_id=connector_id,
        stack_level=stack_level,
        purpose=cast(Purpose, purpose),
        kind=cast(Kind, kind),
        recurrency=recurrency,
        valid_from=valid_from,
        valid_to=valid_to,
        transaction_id=transaction_id,
        schedule=Schedule(
            unit=cast(Unit, unit), periods=tuple(periods), duration_s=duration, start=start
        ),
    )


# --------------------------------------------------------------------------- evaluation

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = 1_000_000
_ONE_US = timedelta(microseconds=1)
_NEVER = 1 << 62  # µs; later than any datetime


def _to_us(dt: datetime) -> int:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: times must carry a time zone")
    return (dt - _EPOCH) // _ONE_US


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


class _Entry:
    """One applicable profile, in integer microseconds and watts, with its state cached.

    The state at t is the index of the period in force, or -1; ``_compute(t)`` also
    returns the first instant after t at which that state can change, so the state is
    constant on [lo, hi) and a sweep recomputes it only when it crosses a boundary.
    """

    __slots__ = (
        "stack",
        "unit",
        "vf",
        "vt",
        "origin",
        "rec",
        "span",
        "starts",
        "watts",
        "lo",
        "hi",
        "idx",
    )

    def __init__(
        self,
        stack: int,
        unit: Unit,
        vf: int | None,
        vt: int | None,
        origin: int,
        rec: int,
        span: int,
        starts: list[int],
        watts: list[float],
    ) -> None:
        self.stack = stack
        self.unit = unit
        self.vf = vf
        self.vt = vt
        self.origin = origin
        self.rec = rec  # recurrence length (µs), 0 when not recurring
        self.span = span  # how long each schedule instance is in force (µs), _NEVER if open
        self.starts = starts
        self.watts = watts
        self.lo = 0
        self.hi = -1  # empty cache
        self.idx = -1

    def at(self, t: int) -> tuple[int, int]:
        if self.lo <= t < self.hi:
            return self.idx, self.hi
        idx, hi = self._compute(t)
        self.lo, self.hi, self.idx = t, hi, idx
        return idx, hi

    def _compute(self, t: int) -> tuple[int, int]:
        vt = self.vt
        if vt is not None and t >= vt:
            return -1, _NEVER
        vf = self.vf
        if vf is not None and t < vf:
            idx, hi = self._compute(vf)
            return -1, (vf if idx >= 0 else hi)
        origin = self.origin
        if t < origin:
            if vt is not None and vt <= origin:
                return -1, _NEVER
            return -1, origin
        off = t - origin
        rec = self.rec
        if rec:
            k = off // rec
            base = origin + k * rec
            off -= k * rec
            wrap = base + rec
        else:
            base = origin
            wrap = _NEVER
        span = self.span
        if off >= span:  # between the end of this instance and the next recurrence
            if vt is not None and vt <= wrap:
                return -1, _NEVER
            return -1, wrap
        starts = self.starts
        idx = bisect_right(starts, off) - 1
        if idx + 1 < len(starts):
            hi = base + starts[idx + 1]
        elif rec and span == rec and self.watts[-1] == self.watts[0]:
            # the wrap continues the same limit: the next real change is in the next instance
            hi = wrap + starts[1] if len(starts) > 1 else _NEVER
        else:
            hi = base + span if span != _NEVER else _NEVER
        if vt is not None and vt < hi:
            hi = vt
        return idx, hi


def _tiers(entries: list[_Entry]) -> list[list[_Entry]]:
    entries.sort(key=lambda e: -e.stack)
    tiers: list[list[_Entry]] = []
    for e in entries:
        if tiers and tiers[-1][0].stack == e.stack:
            tiers[-1].append(e)
        else:
            tiers.append([e])
    return tiers


def _eval(tiers: list[list[_Entry]], t: int) -> tuple[float | None, Unit | None, int]:
    """The winning limit (W) of one purpose group at t, its unit, and when that can change."""
    nxt = _NEVER
    for tier in tiers:
        best: float | None = None
        unit: Unit | None = None
        for e in tier:
            if e.lo <= t < e.hi:  # the cache of e.at(t), inlined: this loop is the hot path
                idx, hi = e.idx, e.hi
            else:
                idx, hi = e.at(t)
            if hi < nxt:
                nxt = hi
            if idx >= 0:
                w = e.watts[idx]
                if best is None or w < best:
                    best, unit = w, e.unit
        if best is not None:
            return best, unit, nxt
    return None, None, nxt


class _Evaluator:
    """The profiles that apply to one connector and transaction, ready to be evaluated at any t."""

    __slots__ = ("tx", "own", "station", "cap", "max_w")

    def __init__(
        self,
        profiles: Sequence[ChargingProfile],
        connector_id: int,
        tx_start: datetime | None,
        tx_id: int | None,
        voltage_v: float,
        connector_max_w: float,
    ) -> None:
        volts = voltage_v if voltage_v > 0 else NOMINAL_DC_VOLTAGE_V
        tx_start_us = _to_us(tx_start) if tx_start is not None else None
        tx: list[_Entry] = []
        own: list[_Entry] = []
        station: list[_Entry] = []
        cap: list[_Entry] = []
        for p in profiles:
            if p.purpose == CHARGE_POINT_MAX_PROFILE:
                if p.connector_id != 0:
                    continue
                group = cap
            elif p.purpose == TX_DEFAULT_PROFILE:
                if p.connector_id == 0:
                    group = station
                elif p.connector_id == connector_id:
                    group = own
                else:
                    continue
            elif p.purpose == TX_PROFILE:
                if connector_id == 0 or p.connector_id != connector_id or tx_start_us is None:
                    continue
                if p.transaction_id is not None and p.transaction_id != tx_id:
                    continue
                group = tx
            else:
                continue
            entry = _entry(p, tx_start_us, volts)
            if entry is not None:
                group.append(entry)
        self.tx = _tiers(tx)
        self.own = _tiers(own)
        self.station = _tiers(station)
        self.cap = _tiers(cap)
        self.max_w = float(connector_max_w)

    def evaluate(self, t: int) -> tuple[float | None, Unit | None, int]:
        value, unit, nxt = _eval(self.tx, t)
        if value is None:
            value, unit, n = _eval(self.own, t)
            if n < nxt:
                nxt = n
            if value is None:
                value, unit, n = _eval(self.station, t)
                if n < nxt:
                    nxt = n
        if self.cap:
            c, cu, n = _eval(self.cap, t)
            if n < nxt:
                nxt = n
            if c is not None and (value is None or c < value):
                value, unit = c, cu
        if value is not None and value > self.max_w:
            value, unit = self.max_w, "W"
        return value, unit, nxt


def _entry(p: ChargingProfile, tx_start_us: int | None, volts: float) -> _Entry | None:
    s = p.schedule
    if p.kind == "Relative":
        if tx_start_us is None:
            return None
        origin = tx_start_us
    else:
        if s.start is None:
            return None
        origin = _to_us(s.start)
    rec = RECURRENCIES[p.recurrency] * _US if p.kind == "Recurring" and p.recurrency else 0
    span = s.duration_s * _US if s.duration_s else _NEVER
    if rec and span > rec:
        span = rec
    factor = volts if s.unit == "A" else 1.0
    starts: list[int] = []
    watts: list[float] = []
    for period in s.periods:
        at = period.start_s * _US
        if at >= span:
            break
        w = period.limit * factor
        if watts and watts[-1] == w:
            continue  # same limit as the period before: no boundary
        starts.append(at)
        watts.append(w)
    if not starts:
        return None
    return _Entry(
        stack=p.stack_level,
        unit=s.unit,
        vf=_to_us(p.valid_from) if p.valid_from is not None else None,
        vt=_to_us(p.valid_to) if p.valid_to is not None else None,
        origin=origin,
        rec=rec,
        span=span,
        starts=starts,
        watts=watts,
    )


def limit_at(
    profiles: Sequence[ChargingProfile],
    now: datetime,
    connector_id: int,
    tx_start: datetime | None,
    tx_id: int | None,
    voltage_v: float,
    connector_max_w: float,
) -> Limit:
    """The limit in force on ``connector_id`` at ``now`` and the next instant it can change.

    ``next_change`` is strictly after ``now``, and the result is the same at every
    instant in [now, next_change). It may be an instant where nothing visible changes
    (e.g. a hidden ChargePointMaxProfile boundary); it is None when only an outside
    event (a new profile, a transaction starting or ending) can change the limit.
    """
    ev = _Evaluator(profiles, connector_id, tx_start, tx_id, voltage_v, connector_max_w)
    value, unit, nxt = ev.evaluate(_to_us(now))
    return Limit(power_w=value, unit=unit, next_change=_from_us(nxt) if nxt < _NEVER else None)


def _floor_tenth(x: float) -> float:
    return math.floor(round(x * 10, 6)) / 10


def composite_schedule(
    profiles: Sequence[ChargingProfile],
    start: datetime,
    duration_s: int,
    connector_id: int,
    unit: Unit | None,
    tx_start: datetime | None,
    tx_id: int | None,
    voltage_v: float,
    connector_max_w: float,
) -> CompositeSchedule:
    """The composite schedule of ``connector_id`` (0: the station) over [start, start + duration_s).

    Walks the boundaries of the same evaluation ``limit_at`` uses; see the module
    docstring for gaps (connector maximum), units and rounding.
    """
    if duration_s < 0:
        raise ValueError(f"negative duration {duration_s}")
    out_unit: Unit = unit or "W"
    if out_unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}")
    volts = voltage_v if voltage_v > 0 else NOMINAL_DC_VOLTAGE_V
    ev = _Evaluator(profiles, connector_id, tx_start, tx_id, voltage_v, connector_max_w)
    max_w = ev.max_w
    s0 = _to_us(start)
    end = s0 + max(duration_s, 1) * _US  # a zero duration still reports the limit at start
    periods: list[SchedulePeriod] = []
    last: float | None = None
    t = s0
    a = 0  # whole seconds from start of the first instant of [t, ...)
    while t < end:
        value, _, nxt = ev.evaluate(t)
        if nxt <= t:  # cannot happen: every boundary is strictly after t; never loop on it
            raise RuntimeError(f"limits: boundary {nxt} not after {t}")
        seg_end = min(nxt, end)
        b = -((s0 - seg_end) // _US)  # ceil((seg_end - s0) / 1 s)
        if a < b:
            w = max_w if value is None else value
            x = _floor_tenth(w if out_unit == "W" else w / volts)
            if x != last:
                periods.append(SchedulePeriod(a, x))
                last = x
        t = seg_end
        a = b
    return CompositeSchedule(start=start, duration_s=duration_s, unit=out_unit, periods=periods)
