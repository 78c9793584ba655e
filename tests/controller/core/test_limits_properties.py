"""R-SC 2/3/5 properties of controller.core.limits, checked against a brute force.

The brute force below is written independently of the module: it works in whole
seconds on the raw profile data the strategy generated, evaluates every second of the
window by scanning the periods, and applies the rules as the module docstring states
them (highest stack level in force per purpose, ties → lower limit; connector's own
TxDefaultProfile in force hides connector 0's; TxProfile over TxDefaultProfile; min with
ChargePointMaxProfile and the connector maximum; A × V; no profile → connector maximum;
composite limits rounded down to 0.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.core.limits import composite_schedule, limit_at, parse_profile

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
W0 = int((datetime(2024, 3, 10, 6, 0, tzinfo=timezone.utc) - EPOCH).total_seconds())  # window start
HOUR = 3600
DAY = 86_400
WEEK = 7 * DAY
TX_ID = 7

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def at(s: int) -> datetime:
    return EPOCH + timedelta(seconds=s)


@dataclass(frozen=True)
class Raw:
    """A generated profile, in whole epoch seconds, as the brute force reads it."""

    connector: int
    pid: int
    purpose: str
    stack: int
    kind: str
    recurrency: str | None
    start: int | None
    duration: int | None
    unit: str
    periods: tuple[tuple[int, int], ...]
    valid_from: int | None
    valid_to: int | None
    tx: int | None

    def ocpp(self) -> dict:
        sched: dict = {
            "chargingRateUnit": self.unit,
            "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim} for s, lim in self.periods],
        }
        if self.start is not None:
            sched["startSchedule"] = at(self.start).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.duration is not None:
            sched["duration"] = self.duration
        d: dict = {
            "chargingProfileId": self.pid,
            "stackLevel": self.stack,
            "chargingProfilePurpose": self.purpose,
            "chargingProfileKind": self.kind,
            "chargingSchedule": sched,
        }
        if self.recurrency:
            d["recurrencyKind"] = self.recurrency
        if self.valid_from is not None:
            d["validFrom"] = at(self.valid_from).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.valid_to is not None:
            d["validTo"] = at(self.valid_to).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.tx is not None:
            d["transactionId"] = self.tx
        return d


@st.composite
def raw_profiles(draw, pid: int) -> Raw:
    purpose = draw(
        st.sampled_from(
            ["TxDefaultProfile", "TxDefaultProfile", "TxProfile", "ChargePointMaxProfile"]
        )
    )
    if purpose == "ChargePointMaxProfile":
        connector = 0
    elif purpose == "TxProfile":
        connector = draw(st.sampled_from([1, 1, 1, 2]))
    else:
        connector = draw(st.sampled_from([0, 1, 1, 2]))
    kind = draw(st.sampled_from(["Absolute", "Recurring", "Relative"]))
    recurrency = None
    length = None
    if kind == "Recurring":
        recurrency = draw(st.sampled_from(["Daily", "Weekly"]))
        length = DAY if recurrency == "Daily" else WEEK
        # a start k recurrences ago, a few hours around the window start: wraps land in the window
        start = W0 - draw(st.integers(0, 2)) * length + draw(st.integers(-2 * HOUR, 3 * HOUR))
    elif kind == "Absolute":
        start = W0 + draw(st.integers(-2 * HOUR, 3 * HOUR))
    else:
        start = None
    offsets = draw(st.lists(st.integers(1, 4 * HOUR), max_size=4))
    if length is not None:  # periods near the end of a recurrence show up before a wrap
        offsets += draw(st.lists(st.integers(length - 3 * HOUR, length - 1), max_size=3))
    starts = [0] + sorted(set(offsets))
    unit = draw(st.sampled_from(["W", "A"]))
    # sampled_from spreads the limits (integers() would favour 0 and make flat composites);
    # rotated so that the value hypothesis prefers is a middling one
    values = list(range(0, 151, 3)) if unit == "A" else list(range(0, 120_001, 2000))
    limit = st.sampled_from(values[len(values) // 4 :] + values[: len(values) // 4])
    periods = tuple((s, draw(limit)) for s in starts)
    duration_choices = [st.none(), st.integers(1, 5 * HOUR)]
    if length is not None:
        duration_choices.append(st.integers(length - 2 * HOUR, length + 2 * HOUR))
    duration = draw(st.one_of(*duration_choices))
    vf = draw(st.one_of(st.none(), st.none(), st.integers(W0 - HOUR, W0 + 3 * HOUR)))
    vt = draw(st.one_of(st.none(), st.none(), st.integers(W0 - HOUR, W0 + 4 * HOUR)))
    if vf is not None and vt is not None and vf >= vt:
        vf, vt = (vt, vf) if vt < vf else (vf, None)
    tx = draw(st.sampled_from([None, TX_ID, TX_ID, TX_ID + 1])) if purpose == "TxProfile" else None
    return Raw(
        connector,
        pid,
        purpose,
        draw(st.integers(0, 3)),
        kind,
        recurrency,
        start,
        duration,
        unit,
        periods,
        vf,
        vt,
        tx,
    )


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 6))
    raws = [draw(raw_profiles(pid)) for pid in range(1, n + 1)]
    tx_start = draw(
        st.one_of(
            st.none(),
            st.integers(W0 - 2 * HOUR, W0 + 2 * HOUR),
            st.integers(W0 - HOUR, W0 + HOUR),
            st.integers(W0 - HOUR, W0 + HOUR),
        )
    )
    tx_id = draw(st.sampled_from([TX_ID, TX_ID, None])) if tx_start is not None else None
    return {
        "raws": raws,
        "connector": draw(st.sampled_from([1, 1, 1, 2, 0])),
        "tx_start": tx_start,
        "tx_id": tx_id,
        "voltage": draw(st.sampled_from([400, 380, 500, 0])),
        "max_w": draw(st.sampled_from([150_000, 150_000, 90_000])),
        "duration": draw(st.integers(HOUR // 2, 3 * HOUR)),
    }


# --------------------------------------------------------------------------- brute force


def raw_limit_w(r: Raw, t: int, tx_start: int | None, volts: int) -> int | None:
    """The watts of ``r`` at second t, or None when it is not in force."""
    if r.valid_from is not None and t < r.valid_from:
        return None
    if r.valid_to is not None and t >= r.valid_to:
        return None
    if r.kind == "Relative":
        if tx_start is None:
            return None
        origin = tx_start
    else:
        origin = r.start
    if t < origin:
        return None
    off = t - origin
    if r.kind == "Recurring":
        length = DAY if r.recurrency == "Daily" else WEEK
        off %= length
        end = length if r.duration is None else min(r.duration, length)
    else:
        end = math.inf if r.duration is None else r.duration
    if off >= end:
        return None
    current = None
    for s, lim in r.periods:
        if s <= off:
            current = lim
    return current * volts if r.unit == "A" else current


def winner(raws: list[Raw], t: int, tx_start: int | None, volts: int) -> int | None:
    in_force = [(r.stack, w) for r in raws if (w := raw_limit_w(r, t, tx_start, volts)) is not None]
    if not in_force:
        return None
    top = max(s for s, _ in in_force)
    return min(w for s, w in in_force if s == top)


def brute_at(sc: dict, t: int) -> int | None:
    """The limit in force at second t before the connector maximum (None: no profile)."""
    c, tx_start, tx_id = sc["connector"], sc["tx_start"], sc["tx_id"]
    volts = sc["voltage"] or 400
    raws = sc["raws"]
    tx = []
    if c != 0 and tx_start is not None:
        tx = [
            r
            for r in raws
            if r.purpose == "TxProfile" and r.connector == c and r.tx in (None, tx_id)
        ]
    own = [r for r in raws if r.purpose == "TxDefaultProfile" and c != 0 and r.connector == c]
    station = [r for r in raws if r.purpose == "TxDefaultProfile" and r.connector == 0]
    cap = [r for r in raws if r.purpose == "ChargePointMaxProfile"]
    base = winner(tx, t, tx_start, volts)
    if base is None:
        base = winner(own, t, tx_start, volts)
    if base is None:
        base = winner(station, t, tx_start, volts)
    limit = winner(cap, t, tx_start, volts)
    if base is not None and (limit is None or base < limit):
        limit = base
    return limit


def tenth_floor(x: Fraction) -> Fraction:
    return Fraction(math.floor(x * 10), 10)


def brute_composite(sc: dict, unit: str) -> list[tuple[int, Fraction]]:
    volts = sc["voltage"] or 400
    out: list[tuple[int, Fraction]] = []
    for k in range(sc["duration"]):
        v = brute_at(sc, W0 + k)
        w = sc["max_w"] if v is None else min(v, sc["max_w"])
        x = tenth_floor(Fraction(w) if unit == "W" else Fraction(w, volts))
        if not out or out[-1][1] != x:
            out.append((k, x))
    return out


def parsed(sc: dict):
    return [parse_profile(r.connector, r.ocpp()) for r in sc["raws"]]


def args(sc: dict):
    tx_start = at(sc["tx_start"]) if sc["tx_start"] is not None else None
    return {
        "connector_id": sc["connector"],
        "tx_start": tx_start,
        "tx_id": sc["tx_id"],
        "voltage_v": sc["voltage"],
        "connector_max_w": sc["max_w"],
    }


# --------------------------------------------------------------------------- properties


@SETTINGS
@given(scenarios(), st.sampled_from(["W", "W", "A"]))
def test_r_sc_5_composite_equals_per_second_brute_force(sc, unit):
    comp = composite_schedule(parsed(sc), at(W0), sc["duration"], unit=unit, **args(sc))
    got = [(p.start_s, Fraction(p.limit).limit_denominator(10)) for p in comp.periods]
    assert got == brute_composite(sc, unit)
    assert comp.duration_s == sc["duration"] and comp.unit == unit


@SETTINGS
@given(scenarios())
def test_r_sc_5_composite_never_exceeds_the_winning_profiles(sc):
    """Weaker than equality, stated on its own: no instant of the composite is above the
    highest-stack in-force profile of the purpose that applies, nor above a cap."""
    comp = composite_schedule(parsed(sc), at(W0), sc["duration"], unit="W", **args(sc))
    starts = [p.start_s for p in comp.periods] + [sc["duration"]]
    for i, p in enumerate(comp.periods):
        for k in range(starts[i], starts[i + 1]):
            v = brute_at(sc, W0 + k)
            assert p.limit <= sc["max_w"]
            if v is not None:
                assert p.limit <= v


@SETTINGS
@given(scenarios(), st.data())
def test_r_sc_6_next_change_is_ahead_and_nothing_changes_before_it(sc, data):
    profiles = parsed(sc)
    kw = args(sc)
    now_s = W0 + data.draw(st.integers(0, sc["duration"]))
    frac_us = data.draw(st.sampled_from([0, 0, 1, 500_000, 999_999]))
    now = at(now_s) + timedelta(microseconds=frac_us)
    lim = limit_at(profiles, now, **kw)
    # the value itself agrees with the brute force at whole seconds
    if now == at(now_s):
        v = brute_at(sc, now_s)
        assert lim.power_w == (None if v is None else min(v, sc["max_w"]))
    assert lim.next_change is None or lim.next_change > now
    horizon = lim.next_change if lim.next_change is not None else now + timedelta(days=8)
    span_us = (horizon - now) // timedelta(microseconds=1)
    samples = {1, span_us - 1, span_us // 2}
    samples |= set(data.draw(st.lists(st.integers(1, max(1, span_us - 1)), max_size=8)))
    for us in sorted(s for s in samples if 0 < s < span_us):
        t = now + timedelta(microseconds=us)
        other = limit_at(profiles, t, **kw)
        assert (other.power_w, other.unit) == (lim.power_w, lim.unit), (t, lim, other)
        # and the next change seen from inside the interval is the same instant
        assert other.next_change == lim.next_change


@SETTINGS
@given(scenarios())
def test_r_sc_2_profiles_round_trip_through_to_ocpp(sc):
    for r, p in zip(sc["raws"], parsed(sc), strict=True):
        assert parse_profile(r.connector, p.to_ocpp()) == p
