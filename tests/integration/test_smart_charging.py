"""Smart charging end to end (R-SC): the real daemon, the mock power stage, our CSMS on 127.0.0.1.

SetChargingProfile / ClearChargingProfile / GetCompositeSchedule and RemoteStartTransaction
with a chargingProfile go over OCPP; what reaches the power stage is read from
``evsectl status --json`` (``limit_w``: the set-point the core sent to the power-stage
driver, None = the connector maximum; ``offered_w`` / ``power_w``: what the mock power
stage reports) and from the MeterValues the CSMS receives (Power.Offered).

Time: the daemon runs on the simulated clock (``daemon.advance(s)`` moves its monotonic
and wall time together). :class:`Wall` keeps the test's estimate of the daemon's wall
clock (calibrated from GetCompositeSchedule's ``scheduleStart``), so a test can put a
period boundary at an exact daemon instant and step to just before / just after it.
Our CSMS answers BootNotification/Heartbeat with real time, which would pull the
daemon's wall clock back after an advance past the heartbeat interval: this module's
``csms`` answers with a heartbeat interval of a week, so no Heartbeat is due while a test
runs.

Models: "EVlink Pro DC 180" (the default): connector 1 CCS2 150 kW, connector 2 CHAdeMO
150 kW, station 180 kW. The mock: ramp 20 kW/s up / 50 kW/s down; CCS2 set-point 0 W
leaves 0.5 A per 30 kW power module (5 modules on 150 kW) at the battery voltage
(400 V + 0.5 V per SoC %, SoC 20 % at plug-in); a non-zero set-point under 1 kW is 1 kW.

Test names carry the requirement (R-SC n) and, where one applies, the OCA OCPP 1.6
compliance test case (TC_0xx) whose scenario they play: TC_056 TxDefaultProfile, TC_057
TxProfile, TC_058_1 / TC_058_2 TxProfile without a transaction / with the wrong
transactionId, TC_059 / TC_060 RemoteStartTransaction with a (non-)TxProfile, TC_066
GetCompositeSchedule, TC_067 ClearChargingProfile, TC_072 stacking, TC_082 a profile
changed during a transaction. Product bugs are ``xfail(strict=True)`` with the bug as reason.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core.timefmt import parse_rfc3339, rfc3339
from controller.csms import CentralSystem

BOX = "CP-TEST"
CMAX = 150_000  # connector maximum, EVlink Pro DC 180
STATION_MAX = 180_000
NOMINAL_V = 400.0  # used for A <-> W while the power stage measures no voltage
RESIDUAL_W_MAX = 0.5 * 5 * 460  # 0.5 A x 5 modules at the highest battery voltage (100 % SoC)


@pytest.fixture
async def csms() -> AsyncIterator[CentralSystem]:
    """Our CSMS with a heartbeat interval of a week: no Heartbeat resets the simulated wall clock."""
    async with CentralSystem("127.0.0.1", 0, heartbeat_interval_s=7 * 86400) as central_system:
        yield central_system


# ---------------------------------------------------------------- helpers


def conn(status: dict[str, Any], cid: int) -> dict[str, Any]:
    return next(c for c in status["connectors"] if c["id"] == cid)


def profile(
    pid: int,
    periods: Any = ((0, 20000),),
    *,
    purpose: str = "TxDefaultProfile",
    stack: int = 0,
    kind: str = "Absolute",
    unit: str = "W",
    start: datetime | None = None,
    duration: int | None = None,
    recurrency: str | None = None,
    tx: int | None = None,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
) -> dict[str, Any]:
    """A csChargingProfiles dict (camelCase, as on the wire)."""
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim} for s, lim in periods],
    }
    if duration is not None:
        schedule["duration"] = duration
    if start is not None:
        schedule["startSchedule"] = rfc3339(start)
    p: dict[str, Any] = {
        "chargingProfileId": pid,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
    }
    if tx is not None:
        p["transactionId"] = tx
    if recurrency is not None:
        p["recurrencyKind"] = recurrency
    if valid_from is not None:
        p["validFrom"] = rfc3339(valid_from)
    if valid_to is not None:
        p["validTo"] = rfc3339(valid_to)
    return p


async def set_profile(csms: CentralSystem, cid: int, p: dict[str, Any]) -> str:
    reply = await csms.call(BOX, "SetChargingProfile", {"connectorId": cid, "csChargingProfiles": p})
    return str(reply["status"])


async def clear(csms: CentralSystem, **criteria: Any) -> str:
    return str((await csms.call(BOX, "ClearChargingProfile", criteria))["status"])


async def composite(
    csms: CentralSystem, cid: int, duration: int, unit: str | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"connectorId": cid, "duration": duration}
    if unit is not None:
        payload["chargingRateUnit"] = unit
    return await csms.call(BOX, "GetCompositeSchedule", payload)


def periods_of(reply: dict[str, Any]) -> list[tuple[int, float]]:
    return [(p["startPeriod"], p["limit"]) for p in reply["chargingSchedule"]["chargingSchedulePeriod"]]


async def remote_start(csms: CentralSystem, cid: int, id_tag: str, p: dict[str, Any]) -> dict[str, Any]:
    payload = {"connectorId": cid, "idTag": id_tag, "chargingProfile": p}
    return await csms.call(BOX, "RemoteStartTransaction", payload)


async def raw_call(csms: CentralSystem, action: str, payload: Any) -> list[Any]:
    """A CALL sent as a raw frame (no schema check on our side); the charger's answer frame."""
    uid = str(uuid.uuid4())
    since = await csms.send_raw(BOX, json.dumps([2, uid, action, payload]))
    frame = await csms.wait_frame(
        BOX, lambda f: isinstance(f.json(), list) and f.json()[0] in (3, 4) and f.json()[1] == uid,
        since=since,
    )
    return frame.json()


class Wall:
    """The test's estimate of the daemon's (simulated) wall clock, good to a few ms."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.offset = timedelta(0)
        advance = daemon.advance

        def advance_and_follow(seconds: float) -> None:  # every advance, whoever makes it
            advance(seconds)
            self.offset += timedelta(seconds=seconds)

        daemon.advance = advance_and_follow

    async def calibrate(self, csms: CentralSystem) -> None:
        before = datetime.now(UTC)
        reply = await composite(csms, 1, 1)
        after = datetime.now(UTC)
        self.offset = parse_rfc3339(reply["scheduleStart"]) - (before + (after - before) / 2)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.daemon.advance(seconds)

    def advance_to(self, t: datetime) -> None:
        delta = (t - self.now()).total_seconds()
        assert delta > 0, f"{t} is already past ({-delta:.3f} s ago)"
        self.advance(delta)


@pytest.fixture
async def wall(daemon: Any, csms: CentralSystem) -> Wall:
    # no heartbeats: a Heartbeat answer sets the charger's clock back to the CSMS's real time,
    # which would undo the simulated days these tests jump over
    reply = await csms.call(BOX, "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "0"})
    assert reply == {"status": "Accepted"}
    w = Wall(daemon)
    await w.calibrate(csms)
    return w


async def start_session(d: Any, csms: CentralSystem, cid: int = 1, tag: str = "TAG1") -> int:
    mark = csms.mark()
    d.plug(cid)
    d.badge(tag)
    await csms.wait_for("StartTransaction", since=mark)
    c = await d.until(lambda s: conn(s, cid)["transaction_id"] is not None and conn(s, cid), what="tx id")
    return int(c["transaction_id"])


async def stop_session(d: Any, csms: CentralSystem, tx: int) -> None:
    mark = csms.mark()
    assert (await csms.call(BOX, "RemoteStopTransaction", {"transactionId": tx})) == {"status": "Accepted"}
    await csms.wait_for("StopTransaction", since=mark)
    await d.until(lambda s: all(c["transaction_id"] is None for c in s["connectors"]), what="stopped")


def limit_w(d: Any, cid: int = 1) -> float | None:
    return conn(d.status(), cid)["limit_w"]


async def triggered_meter_values(csms: CentralSystem, cid: int) -> Any:
    """TriggerMessage MeterValues for ``cid``; the MeterValues it causes (context Trigger)."""
    mark = csms.mark()
    reply = await csms.call(BOX, "TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": cid})
    assert reply == {"status": "Accepted"}

    def triggered(r: Any) -> bool:
        values = [sv for mv in r.payload["meterValue"] for sv in mv["sampledValue"]]
        return r.payload.get("connectorId") == cid and any(sv.get("context") == "Trigger" for sv in values)

    return await csms.wait_for("MeterValues", since=mark, predicate=triggered)


async def settle(d: Any, csms: CentralSystem, cid: int, seconds: int = 3) -> dict[str, Any]:
    """Advance ``seconds`` in 1 s steps (a live sample each), then return the connector as the
    power stage reports it *now*: the triggered sample runs on the connector's hardware worker
    after the live ones, and the status is read once the CSMS has its MeterValues."""
    for _ in range(seconds):
        d.advance(1.0)
    await triggered_meter_values(csms, cid)
    return conn(d.status(), cid)


async def wait_offered(d: Any, cid: int, expected: float, tol: float = 1.0) -> dict[str, Any]:
    """Advance 1 s at a time until the power stage offers ``expected`` (the set-point reached it)."""
    for _ in range(20):
        d.advance(1.0)
        try:
            return await d.until(
                lambda s: abs(conn(s, cid)["offered_w"] - expected) <= tol and conn(s, cid),
                timeout_s=0.5, what=f"offered {expected} W",
            )
        except AssertionError:
            continue
    raise AssertionError(f"the power stage never offered {expected} W: {conn(d.status(), cid)}")


def sampled(record: Any, measurand: str) -> list[float]:
    return [
        float(sv["value"])
        for mv in record.payload["meterValue"]
        for sv in mv["sampledValue"]
        if sv.get("measurand") == measurand
    ]


# ---------------------------------------------------------------- R-SC 1/6: a limit reaches the power stage


async def test_r_sc_1_6_tc_056_tx_default_profile_reaches_the_power_stage(daemon, csms):
    assert limit_w(daemon) is None
    assert await set_profile(csms, 1, profile(1, ((0, 20000),))) == "Accepted"
    # no transaction needed: the set-point is there before the EV is (TxDefaultProfile)
    assert limit_w(daemon) == 20000
    assert limit_w(daemon, 2) is None  # the other connector is untouched

    await start_session(daemon, csms)
    c = await wait_offered(daemon, 1, 20000)
    assert c["limit_w"] == 20000
    for _ in range(4):  # ramp at 20 kW/s up to the limit, never above it
        daemon.advance(1.0)
        c = conn(daemon.status(), 1)
        assert c["power_w"] <= 20000 and c["offered_w"] <= 20000
    c = await settle(daemon, csms, 1)
    assert 19000 <= c["power_w"] <= 20000, c
    assert c["offered_w"] == 20000

    # Power.Offered in the periodic MeterValues (MeterValueSampleInterval 60 s)
    mark = csms.mark()
    daemon.advance(61)
    mv = await csms.wait_for(
        "MeterValues", since=mark, predicate=lambda r: sampled(r, "Power.Offered") != []
    )
    assert sampled(mv, "Power.Offered") == [20000]
    assert all(p <= 20000 for p in sampled(mv, "Power.Active.Import"))


async def test_r_sc_1_6_tc_082_profile_changed_during_a_transaction_lowers_power(daemon, csms):
    tx = await start_session(daemon, csms)
    await wait_offered(daemon, 1, CMAX)
    c = await settle(daemon, csms, 1, 8)  # up to 150 kW at 20 kW/s
    assert c["power_w"] > 100_000
    # a TxDefaultProfile set during the transaction applies to it at once
    assert await set_profile(csms, 1, profile(1, ((0, 30000),))) == "Accepted"
    assert limit_w(daemon) == 30000
    c = await wait_offered(daemon, 1, 30000)
    c = await settle(daemon, csms, 1, 3)  # 50 kW/s down: at most 3 s from 150 to 30 kW
    assert 29000 <= c["power_w"] <= 30000, c
    # replaced by id with a higher limit: power goes back up, never above the limit
    assert await set_profile(csms, 1, profile(1, ((0, 45000),))) == "Accepted"
    assert limit_w(daemon) == 45000
    c = await settle(daemon, csms, 1, 2)
    assert c["power_w"] <= 45000 and c["offered_w"] == 45000
    # ClearChargingProfile: back to the connector maximum
    assert await clear(csms, id=1) == "Accepted"
    assert limit_w(daemon) is None
    await wait_offered(daemon, 1, CMAX)
    await stop_session(daemon, csms, tx)


async def test_r_sc_6_period_boundaries_apply_on_time(daemon, csms, wall):
    t0 = wall.now() - timedelta(seconds=1)
    p = profile(1, ((0, 30000), (120, 10000), (240, 5000)), start=t0)
    assert await set_profile(csms, 1, p) == "Accepted"
    assert limit_w(daemon) == 30000
    wall.advance_to(t0 + timedelta(seconds=119.5))
    assert limit_w(daemon) == 30000
    wall.advance_to(t0 + timedelta(seconds=120.5))
    assert limit_w(daemon) == 10000
    # the next boundary with no event at all: the daemon's own timer applies it on time
    wall.advance_to(t0 + timedelta(seconds=239.7))
    assert limit_w(daemon) == 10000
    await daemon.until(lambda s: conn(s, 1)["limit_w"] == 5000, timeout_s=2.0, what="the 240 s boundary")
    late = (wall.now() - (t0 + timedelta(seconds=240))).total_seconds()
    assert late < 0.5, f"applied {late:.3f} s after the boundary"


async def test_r_sc_6_period_boundary_during_a_transaction_reaches_the_power_stage(daemon, csms, wall):
    await start_session(daemon, csms)
    w = wall
    t0 = w.now() - timedelta(seconds=1)
    assert await set_profile(csms, 1, profile(1, ((0, 40000), (30, 12000)), start=t0)) == "Accepted"
    await wait_offered(daemon, 1, 40000)
    w.advance_to(t0 + timedelta(seconds=29.5))
    assert limit_w(daemon) == 40000
    w.advance_to(t0 + timedelta(seconds=30.5))
    assert limit_w(daemon) == 12000
    c = await wait_offered(daemon, 1, 12000)
    c = await settle(daemon, csms, 1, 2)
    assert c["power_w"] <= 12000


async def test_r_sc_2_valid_from_and_valid_to(daemon, csms, wall):
    t0 = wall.now()
    p = profile(1, ((0, 25000),), start=t0 - timedelta(seconds=10),
                valid_from=t0 + timedelta(seconds=60), valid_to=t0 + timedelta(seconds=120))
    assert await set_profile(csms, 1, p) == "Accepted"
    assert limit_w(daemon) is None
    wall.advance_to(t0 + timedelta(seconds=59.5))
    assert limit_w(daemon) is None
    wall.advance_to(t0 + timedelta(seconds=60.5))
    assert limit_w(daemon) == 25000
    wall.advance_to(t0 + timedelta(seconds=119.5))
    assert limit_w(daemon) == 25000
    wall.advance_to(t0 + timedelta(seconds=120.5))
    assert limit_w(daemon) is None


# ---------------------------------------------------------------- R-SC 1: TxProfile


async def test_r_sc_1_tc_057_tx_profile_during_a_transaction(daemon, csms):
    assert await set_profile(csms, 1, profile(1, ((0, 20000),))) == "Accepted"
    tx = await start_session(daemon, csms)
    txp = profile(2, ((0, 8000),), purpose="TxProfile", tx=tx)
    assert await set_profile(csms, 1, txp) == "Accepted"
    assert limit_w(daemon) == 8000  # TxProfile over TxDefaultProfile
    assert periods_of(await composite(csms, 1, 60)) == [(0, 8000)]
    await wait_offered(daemon, 1, 8000)
    # a TxProfile without transactionId is for the ongoing transaction too (replaces id 2)
    assert await set_profile(csms, 1, profile(2, ((0, 9000),), purpose="TxProfile")) == "Accepted"
    assert limit_w(daemon) == 9000
    # the transaction ends: its TxProfile goes with it, the TxDefaultProfile is back
    await stop_session(daemon, csms, tx)
    assert limit_w(daemon) == 20000
    assert periods_of(await composite(csms, 1, 60)) == [(0, 20000)]
    assert await clear(csms, chargingProfilePurpose="TxProfile") == "Unknown"


async def test_r_sc_1_tc_058_1_tx_profile_without_a_transaction_is_rejected(daemon, csms):
    before = periods_of(await composite(csms, 1, 60))
    assert await set_profile(csms, 1, profile(1, ((0, 8000),), purpose="TxProfile", tx=1)) == "Rejected"
    assert await set_profile(csms, 1, profile(2, ((0, 8000),), purpose="TxProfile")) == "Rejected"
    # a TxProfile on connector 0 (the station has no transaction)
    assert await set_profile(csms, 0, profile(3, ((0, 8000),), purpose="TxProfile")) == "Rejected"
    assert limit_w(daemon) is None
    assert periods_of(await composite(csms, 1, 60)) == before == [(0, CMAX)]
    assert await clear(csms) == "Unknown"


async def test_r_sc_1_tc_058_2_tx_profile_with_the_wrong_transaction_id_is_rejected(daemon, csms):
    tx = await start_session(daemon, csms)
    assert await set_profile(csms, 1, profile(1, ((0, 8000),), purpose="TxProfile", tx=tx + 1)) == "Rejected"
    assert limit_w(daemon) is None
    assert await clear(csms) == "Unknown"
    await stop_session(daemon, csms, tx)


async def test_r_sc_1_tc_059_remote_start_with_a_tx_profile(daemon, csms, wall):
    daemon.plug(1)
    await daemon.until(lambda s: conn(s, 1)["status"] == "Preparing", what="Preparing")
    txp = profile(7, ((0, 9000), (60, 12000)), purpose="TxProfile", kind="Relative")
    mark = csms.mark()
    reply = await remote_start(csms, 1, "REMOTE1", txp)
    assert reply == {"status": "Accepted"}
    await csms.wait_for("StartTransaction", since=mark)
    t_start = wall.now()
    c = await daemon.until(lambda s: conn(s, 1)["transaction_id"] is not None and conn(s, 1), what="tx id")
    tx = c["transaction_id"]
    assert limit_w(daemon) == 9000  # applied to the started transaction
    await wait_offered(daemon, 1, 9000)
    # Relative: the 60 s period counts from the transaction start
    wall.advance_to(t_start + timedelta(seconds=62))
    assert limit_w(daemon) == 12000
    got = periods_of(await composite(csms, 1, 120))
    assert got == [(0, 12000)]
    # removed with its transaction
    await stop_session(daemon, csms, tx)
    assert limit_w(daemon) is None
    assert periods_of(await composite(csms, 1, 120)) == [(0, CMAX)]
    assert await clear(csms, id=7) == "Unknown"


async def test_r_sc_1_tc_060_remote_start_with_a_non_tx_profile_is_rejected(daemon, csms):
    daemon.plug(1)
    await daemon.until(lambda s: conn(s, 1)["status"] == "Preparing", what="Preparing")
    mark = csms.mark()
    for purpose in ("TxDefaultProfile", "ChargePointMaxProfile"):
        p = profile(7, ((0, 9000),), purpose=purpose)
        reply = await remote_start(csms, 1, "R", p)
        assert reply == {"status": "Rejected"}, purpose
    # nothing started, nothing installed: prove the link is idle with a round trip after them
    await csms.call(BOX, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    await csms.wait_for("Heartbeat", since=mark)
    assert [r for r in csms.calls("Authorize") + csms.calls("StartTransaction") if r.seq > mark] == []
    assert conn(daemon.status(), 1)["transaction_id"] is None
    assert await clear(csms) == "Unknown"


async def test_r_sc_1_charge_point_max_profile_is_rejected(daemon, csms):
    p = profile(1, ((0, 50000),), purpose="ChargePointMaxProfile")
    assert await set_profile(csms, 0, p) == "Rejected"
    assert await set_profile(csms, 1, p) == "Rejected"
    assert limit_w(daemon) is None
    assert periods_of(await composite(csms, 0, 60)) == [(0, STATION_MAX)]
    assert await clear(csms) == "Unknown"


# ---------------------------------------------------------------- R-SC 4: connector types


async def test_r_sc_4_chademo_connector_rejects_profiles(daemon, csms):
    assert conn(daemon.status(), 2)["type"] == "CHAdeMO"
    assert await set_profile(csms, 2, profile(1, ((0, 20000),))) == "Rejected"
    daemon.plug(2)
    await daemon.until(lambda s: conn(s, 2)["status"] == "Preparing", what="Preparing")
    txp = profile(2, ((0, 9000),), purpose="TxProfile")
    reply = await remote_start(csms, 2, "R", txp)
    assert reply == {"status": "Rejected"}
    assert await clear(csms) == "Unknown"
    # a station-wide TxDefaultProfile is taken (connector 1 is CCS2) but never reaches CHAdeMO
    assert await set_profile(csms, 0, profile(3, ((0, 20000),))) == "Accepted"
    assert limit_w(daemon, 1) == 20000
    assert limit_w(daemon, 2) is None
    tx = await start_session(daemon, csms, 2)
    c = await wait_offered(daemon, 2, CMAX)
    assert c["limit_w"] is None
    await stop_session(daemon, csms, tx)


async def test_r_sc_4_5_chademo_composite_is_the_limit_in_force(daemon, csms):
    assert await set_profile(csms, 0, profile(3, ((0, 20000),))) == "Accepted"
    assert limit_w(daemon, 2) is None  # the CHAdeMO power stage keeps its maximum
    reply = await composite(csms, 2, 60)
    assert reply["status"] == "Rejected" or periods_of(reply) == [(0, CMAX)], reply


async def test_r_sc_4_ccs2_300_w_raised_to_1_kw_and_0_w_leaves_the_residual(daemon, csms):
    await start_session(daemon, csms)
    await wait_offered(daemon, 1, CMAX)
    await settle(daemon, csms, 1, 3)
    assert await set_profile(csms, 1, profile(1, ((0, 300),))) == "Accepted"
    assert limit_w(daemon) == 1000  # the set-point sent to the power stage
    c = await wait_offered(daemon, 1, 1000)
    c = await settle(daemon, csms, 1, 3)
    assert 900 <= c["power_w"] <= 1000, c
    # the composite reports the profile's 300 W: the 1 kW floor is the power stage's rule,
    # applied to the set-point only (ProfileBook.setpoint); this pins today's choice
    assert periods_of(await composite(csms, 1, 60)) == [(0, 300)]

    assert await set_profile(csms, 1, profile(1, ((0, 0),))) == "Accepted"
    assert limit_w(daemon) == 0
    c = await settle(daemon, csms, 1, 3)
    # 0.5 A per power module (5 on 150 kW) at the battery voltage: ~1 kW, not 0
    assert 0 < c["power_w"] <= RESIDUAL_W_MAX, c
    assert 0 < c["offered_w"] <= RESIDUAL_W_MAX, c
    mark = csms.mark()
    daemon.advance(61)
    mv = await csms.wait_for("MeterValues", since=mark, predicate=lambda r: sampled(r, "Power.Offered") != [])
    assert 0 < sampled(mv, "Power.Offered")[0] <= RESIDUAL_W_MAX


# ---------------------------------------------------------------- R-SC 3: units


async def test_r_sc_3_amperes_converted_with_the_dc_voltage(daemon, csms):
    keys = await csms.call(BOX, "GetConfiguration", {"key": ["ChargingScheduleAllowedChargingRateUnit"]})
    assert keys["configurationKey"][0]["value"] == "Current,Power"
    change = {"key": "EnableMeterValuesContainVoltage", "value": "true"}
    assert (await csms.call(BOX, "ChangeConfiguration", change)) == {"status": "Accepted"}
    amps = 50.0
    assert await set_profile(csms, 1, profile(1, ((0, amps),), unit="A")) == "Accepted"
    # contactors open, no voltage measured yet: the nominal 400 V
    assert limit_w(daemon) == pytest.approx(amps * NOMINAL_V)
    assert periods_of(await composite(csms, 1, 60, "A")) == [(0, amps)]

    await start_session(daemon, csms)
    daemon.advance(3)
    mv = await triggered_meter_values(csms, 1)
    (volts,) = sampled(mv, "Voltage")
    assert 405 <= volts <= 415  # SoC ~20 %: 400 V + 0.5 V per %
    c = conn(daemon.status(), 1)
    assert c["limit_w"] == pytest.approx(amps * volts, abs=amps * 0.1)  # the voltage is sent to 0.1 V
    assert c["offered_w"] == pytest.approx(amps * volts, abs=amps * 0.2)
    # the composite in W uses the same voltage; in A it gives the profile's amperes back
    (start, watts), = periods_of(await composite(csms, 1, 60, "W"))
    assert watts == pytest.approx(amps * volts, abs=amps * 0.2)
    (_, back), = periods_of(await composite(csms, 1, 60, "A"))
    assert back == pytest.approx(amps, abs=0.1)


async def test_r_sc_3_composite_in_amperes_of_a_watt_profile(daemon, csms):
    assert await set_profile(csms, 1, profile(1, ((0, 20000),))) == "Accepted"
    reply = await composite(csms, 1, 60, "A")
    assert reply["chargingSchedule"]["chargingRateUnit"] == "A"
    assert periods_of(reply) == [(0, 20000 / NOMINAL_V)]


# ---------------------------------------------------------------- R-SC 2: stacking, replacing


async def test_r_sc_2_tc_072_stack_levels(daemon, csms, wall):
    t0 = wall.now() - timedelta(seconds=0.2)
    vf, vt = t0 - timedelta(seconds=1), t0 + timedelta(seconds=401)
    low = profile(1, ((0, 6000), (100, 8000), (200, 10000)), stack=0, start=t0, duration=400,
                  valid_from=vf, valid_to=vt)
    high = profile(2, ((0, 10000), (100, 6000)), stack=1, start=t0, duration=150, valid_from=vf, valid_to=vt)
    assert await set_profile(csms, 1, low) == "Accepted"
    assert await set_profile(csms, 1, high) == "Accepted"
    # 0-100 high 10 kW, 100-150 high 6 kW, 150-200 low 8 kW, 200-400 low 10 kW, then none
    assert periods_of(await composite(csms, 1, 450)) == [
        (0, 10000), (100, 6000), (150, 8000), (200, 10000), (400, CMAX)
    ]
    assert limit_w(daemon) == 10000
    for at, expected in ((100.5, 6000), (150.5, 8000), (200.5, 10000), (400.5, None)):
        wall.advance_to(t0 + timedelta(seconds=at - 1.0))
        before = limit_w(daemon)
        wall.advance_to(t0 + timedelta(seconds=at))
        assert limit_w(daemon) == expected, at
        assert before != expected, at


async def test_r_sc_2_tc_072_connector_profile_hides_connector_0_profiles(daemon, csms, wall):
    t0 = wall.now() - timedelta(seconds=0.2)
    station = profile(1, ((0, 4000),), stack=5, start=t0)
    own = profile(2, ((0, 6000),), stack=0, start=t0, duration=150)
    assert await set_profile(csms, 0, station) == "Accepted"
    assert await set_profile(csms, 1, own) == "Accepted"
    assert periods_of(await composite(csms, 1, 300)) == [(0, 6000), (150, 4000)]
    assert limit_w(daemon) == 6000
    wall.advance_to(t0 + timedelta(seconds=150.5))
    assert limit_w(daemon) == 4000


async def test_r_sc_2_replacing_by_id_and_by_stack_level_and_purpose(daemon, csms):
    assert await set_profile(csms, 1, profile(1, ((0, 20000),), stack=0)) == "Accepted"
    # same id, another stack level: replaces it (nothing left at stack level 0)
    assert await set_profile(csms, 1, profile(1, ((0, 10000),), stack=3)) == "Accepted"
    assert periods_of(await composite(csms, 1, 60)) == [(0, 10000)]
    assert limit_w(daemon) == 10000
    assert await clear(csms, stackLevel=0) == "Unknown"
    # another id, same connector, stack level and purpose: replaces id 1
    assert await set_profile(csms, 1, profile(2, ((0, 7000),), stack=3)) == "Accepted"
    assert limit_w(daemon) == 7000
    assert await clear(csms, id=1) == "Unknown"
    # same stack level and purpose on connector 0: not a replacement, both stay
    assert await set_profile(csms, 0, profile(3, ((0, 5000),), stack=3)) == "Accepted"
    assert limit_w(daemon) == 7000  # connector 1's own profile hides connector 0's
    assert await clear(csms, id=2) == "Accepted"
    assert limit_w(daemon) == 5000
    assert await clear(csms, id=3) == "Accepted"
    assert limit_w(daemon) is None


async def test_r_sc_2_recurring_daily_over_midnight(daemon, csms, wall):
    now = wall.now() + timedelta(seconds=5)  # (if it is 23:59:55 or later, take tomorrow's midnight)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = midnight - timedelta(days=2)  # a past midnight: Daily repeats from there
    p = profile(1, ((0, 7000), (6 * 3600, 15000), (22 * 3600, 9000)), kind="Recurring",
                recurrency="Daily", start=start)
    assert await set_profile(csms, 1, p) == "Accepted"
    next_midnight = midnight + timedelta(days=1)
    wall.advance_to(next_midnight - timedelta(seconds=1))  # 23:59:59, in the 22:00 period
    assert limit_w(daemon) == 9000
    wall.advance_to(next_midnight + timedelta(seconds=1))  # 00:00:01: the day starts over
    assert limit_w(daemon) == 7000
    wall.advance_to(next_midnight + timedelta(hours=6, seconds=-1))
    assert limit_w(daemon) == 7000
    wall.advance_to(next_midnight + timedelta(hours=6, seconds=1))
    assert limit_w(daemon) == 15000
    # the composite over the next day wraps at the following midnight
    reply = await composite(csms, 1, 86400)
    got = periods_of(reply)
    assert [lim for _, lim in got] == [15000, 9000, 7000, 15000]
    s0 = parse_rfc3339(reply["chargingSchedule"]["startSchedule"])
    expected = [0] + [
        (next_midnight + timedelta(hours=h) - s0).total_seconds() for h in (22, 24, 30)
    ]
    assert all(abs(a - b) <= 1 for (a, _), b in zip(got, expected, strict=True)), (got, expected)


async def test_r_sc_2_recurring_weekly_wraps(daemon, csms, wall):
    t0 = wall.now()
    start = t0 - timedelta(days=7) + timedelta(seconds=100)  # the week restarts 100 s from now
    p = profile(1, ((0, 11000), (3600, 22000)), kind="Recurring", recurrency="Weekly", start=start)
    assert await set_profile(csms, 1, p) == "Accepted"
    assert limit_w(daemon) == 22000
    wall.advance_to(t0 + timedelta(seconds=100.5))
    assert limit_w(daemon) == 11000
    wall.advance_to(t0 + timedelta(seconds=100 + 3600.5))
    assert limit_w(daemon) == 22000


# ---------------------------------------------------------------- R-SC 5: GetCompositeSchedule


async def test_r_sc_5_tc_066_get_composite_schedule(daemon, csms, wall):
    t0 = wall.now() - timedelta(seconds=0.2)
    station = profile(1, ((0, 12000),), start=t0, duration=600)
    own = profile(2, ((0, 9000), (300, 11000)), start=t0, duration=400)
    assert await set_profile(csms, 0, station) == "Accepted"
    assert await set_profile(csms, 1, own) == "Accepted"

    reply = await composite(csms, 1, 900)
    assert reply["status"] == "Accepted" and reply["connectorId"] == 1
    sched = reply["chargingSchedule"]
    assert sched["duration"] == 900
    assert sched["chargingRateUnit"] == "W"  # no unit asked: W
    assert sched["startSchedule"] == reply["scheduleStart"]
    start = parse_rfc3339(reply["scheduleStart"])
    assert abs((start - wall.now()).total_seconds()) < 0.5
    assert periods_of(reply) == [(0, 9000), (300, 11000), (400, 12000), (600, CMAX)]

    reply = await composite(csms, 1, 900, "W")
    assert periods_of(reply) == [(0, 9000), (300, 11000), (400, 12000), (600, CMAX)]
    reply = await composite(csms, 1, 900, "A")  # idle: no voltage measured, the nominal 400 V
    assert reply["chargingSchedule"]["chargingRateUnit"] == "A"
    assert periods_of(reply) == [(0, 22.5), (300, 27.5), (400, 30.0), (600, CMAX / NOMINAL_V)]
    reply = await composite(csms, 1, 200)  # a shorter duration: only what falls in it
    assert reply["chargingSchedule"]["duration"] == 200
    assert periods_of(reply) == [(0, 9000)]

    # connector 0: the station's own profiles, capped by the station maximum
    reply = await composite(csms, 0, 900)
    assert reply["status"] == "Accepted" and reply["connectorId"] == 0
    assert periods_of(reply) == [(0, 12000), (600, STATION_MAX)]
    reply = await composite(csms, 0, 900, "A")
    assert periods_of(reply) == [(0, 30.0), (600, STATION_MAX / NOMINAL_V)]

    # no such connector
    assert (await composite(csms, 3, 60))["status"] == "Rejected"


async def test_r_sc_5_tc_066_composite_with_a_tx_profile(daemon, csms):
    assert await set_profile(csms, 1, profile(1, ((0, 9000),))) == "Accepted"
    tx = await start_session(daemon, csms)
    txp = profile(2, ((0, 8000), (100, 12000), (200, 6000)), purpose="TxProfile", tx=tx, duration=300)
    assert await set_profile(csms, 1, txp) == "Accepted"
    got = periods_of(await composite(csms, 1, 400))
    # the TxProfile (received now, no startSchedule: it starts when received), then the default
    assert [lim for _, lim in got] == [8000, 12000, 6000, 9000]
    assert all(abs(a - b) <= 1 for (a, _), b in zip(got, (0, 100, 200, 300), strict=True)), got
    # the station's composite never shows a TxProfile
    assert periods_of(await composite(csms, 0, 400)) == [(0, STATION_MAX)]
    await stop_session(daemon, csms, tx)


# ---------------------------------------------------------------- R-SC 5: ClearChargingProfile


async def test_r_sc_5_tc_067_clear_charging_profile_by_each_filter(daemon, csms):
    async def install() -> None:
        for cid, pid, stack, lim in ((1, 1, 0, 11000), (1, 2, 1, 12000), (0, 3, 0, 13000), (0, 4, 2, 14000)):
            assert await set_profile(csms, cid, profile(pid, ((0, lim),), stack=stack)) == "Accepted"

    await install()
    # nothing matches: Unknown, nothing removed
    assert await clear(csms, id=99) == "Unknown"
    assert await clear(csms, connectorId=2) == "Unknown"
    assert await clear(csms, stackLevel=7) == "Unknown"
    assert await clear(csms, chargingProfilePurpose="TxProfile") == "Unknown"
    assert await clear(csms, connectorId=1, stackLevel=2) == "Unknown"
    assert await clear(csms, connectorId=0, chargingProfilePurpose="TxDefaultProfile",
                       stackLevel=1) == "Unknown"
    assert limit_w(daemon) == 12000
    # by id
    assert await clear(csms, id=2) == "Accepted"
    assert limit_w(daemon) == 11000
    assert await clear(csms, id=2) == "Unknown"
    # by connectorId + stackLevel
    assert await clear(csms, connectorId=0, stackLevel=2) == "Accepted"
    assert await clear(csms, id=4) == "Unknown"
    assert await clear(csms, id=3) == "Accepted"  # id 3 was not touched
    # by connectorId
    assert await clear(csms, connectorId=1) == "Accepted"
    assert limit_w(daemon) is None
    assert await clear(csms, id=1) == "Unknown"

    await install()
    # by stackLevel (every connector)
    assert await clear(csms, stackLevel=0) == "Accepted"
    assert periods_of(await composite(csms, 1, 60)) == [(0, 12000)]
    assert await clear(csms, id=1) == "Unknown" and await clear(csms, id=3) == "Unknown"
    # by purpose + connectorId
    assert await clear(csms, connectorId=1, chargingProfilePurpose="TxDefaultProfile") == "Accepted"
    assert periods_of(await composite(csms, 1, 60)) == [(0, 14000)]  # connector 0's shows through
    # by purpose
    assert await clear(csms, chargingProfilePurpose="TxDefaultProfile") == "Accepted"
    assert periods_of(await composite(csms, 1, 60)) == [(0, CMAX)]

    await install()
    # no criteria: everything
    assert await clear(csms) == "Accepted"
    assert await clear(csms) == "Unknown"
    assert limit_w(daemon) is None
    assert periods_of(await composite(csms, 0, 60)) == [(0, STATION_MAX)]


async def test_r_sc_5_tc_067_clear_a_tx_profile_during_the_transaction(daemon, csms):
    assert await set_profile(csms, 1, profile(1, ((0, 20000),))) == "Accepted"
    tx = await start_session(daemon, csms)
    assert await set_profile(csms, 1, profile(2, ((0, 5000),), purpose="TxProfile", tx=tx)) == "Accepted"
    assert limit_w(daemon) == 5000
    assert await clear(csms, connectorId=1, chargingProfilePurpose="TxProfile") == "Accepted"
    assert limit_w(daemon) == 20000
    await stop_session(daemon, csms, tx)


# ---------------------------------------------------------------- R-SC 2: limits of this range


async def test_r_sc_2_charge_profile_max_stack_level(daemon, csms):
    keys = await csms.call(BOX, "GetConfiguration", {"key": ["ChargeProfileMaxStackLevel"]})
    assert keys["configurationKey"][0]["value"] == "20"
    assert await set_profile(csms, 1, profile(1, ((0, 20000),), stack=21)) == "Rejected"
    assert await clear(csms) == "Unknown"
    assert await set_profile(csms, 1, profile(1, ((0, 20000),), stack=20)) == "Accepted"


async def test_r_sc_2_charging_schedule_max_periods(daemon, csms):
    keys = await csms.call(BOX, "GetConfiguration", {"key": ["ChargingScheduleMaxPeriods"]})
    assert keys["configurationKey"][0]["value"] == "50"
    fifty_one = [(i * 60, 10000 + 100 * i) for i in range(51)]
    assert await set_profile(csms, 1, profile(1, fifty_one)) == "Rejected"
    assert limit_w(daemon) is None
    assert await clear(csms) == "Unknown"
    assert await set_profile(csms, 1, profile(1, fifty_one[:50])) == "Accepted"
    assert limit_w(daemon) == 10000


async def test_r_sc_2_max_charging_profiles_installed(daemon, csms):
    keys = await csms.call(BOX, "GetConfiguration", {"key": ["MaxChargingProfilesInstalled"]})
    assert keys["configurationKey"][0]["value"] == "40"
    slots = [(1, s) for s in range(21)] + [(0, s) for s in range(19)]  # 40 distinct places
    for pid, (cid, stack) in enumerate(slots, start=1):
        assert await set_profile(csms, cid, profile(pid, ((0, 1000 * pid),), stack=stack)) == "Accepted", pid
    assert await set_profile(csms, 0, profile(41, ((0, 5000),), stack=19)) == "Rejected"
    assert await clear(csms, id=41) == "Unknown"
    # a replacement does not add one: by id, and by stack level + purpose
    assert await set_profile(csms, 0, profile(40, ((0, 6000),), stack=18)) == "Accepted"
    assert await set_profile(csms, 0, profile(42, ((0, 7000),), stack=18)) == "Accepted"
    assert await clear(csms, id=40) == "Unknown"
    assert await clear(csms, id=1) == "Accepted"
    assert await set_profile(csms, 0, profile(41, ((0, 5000),), stack=19)) == "Accepted"
    assert limit_w(daemon) == 21000  # connector 1, stack level 20: id 21


# ---------------------------------------------------------------- R-SC 2: bad input, nothing stored


BAD_PERIODS = {
    "periods_out_of_order": [(0, 10000), (200, 8000), (100, 9000)],
    "start_period_repeated": [(0, 10000), (100, 8000), (100, 9000)],
    "first_period_not_at_0": [(60, 10000), (120, 8000)],
    "negative_limit": [(0, 10000), (60, -1)],
}


@pytest.mark.parametrize("case", sorted(BAD_PERIODS))
async def test_r_sc_2_bad_periods_rejected_nothing_stored(daemon, csms, case):
    assert await set_profile(csms, 1, profile(1, ((0, 15000),), stack=0)) == "Accepted"
    before = periods_of(await composite(csms, 1, 600))
    reply = await raw_call(csms, "SetChargingProfile", {
        "connectorId": 1, "csChargingProfiles": profile(2, BAD_PERIODS[case], stack=1)})
    assert reply[0] == 3 and reply[2] == {"status": "Rejected"} or (
        reply[0] == 4 and reply[2] in ("PropertyConstraintViolation", "FormationViolation",
                                       "TypeConstraintViolation", "OccurenceConstraintViolation")), reply
    assert periods_of(await composite(csms, 1, 600)) == before
    assert limit_w(daemon) == 15000
    assert await clear(csms, id=2) == "Unknown"


@pytest.mark.parametrize("field,value", [
    ("chargingProfilePurpose", "SiteMaxProfile"),
    ("chargingProfileKind", "Sometimes"),
    ("recurrencyKind", "Monthly"),
])
async def test_r_sc_2_unknown_enum_is_a_schema_callerror_nothing_stored(daemon, csms, field, value):
    before = periods_of(await composite(csms, 1, 60))
    p = profile(1, ((0, 5000),), kind="Recurring", recurrency="Daily", start=datetime.now(UTC))
    p[field] = value
    reply = await raw_call(csms, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": p})
    assert reply[0] == 4, reply
    assert reply[2] in ("PropertyConstraintViolation", "FormationViolation", "TypeConstraintViolation"), reply
    assert periods_of(await composite(csms, 1, 60)) == before == [(0, CMAX)]
    assert limit_w(daemon) is None
    assert await clear(csms) == "Unknown"


async def test_r_sc_2_other_refusals_store_nothing(daemon, csms, wall):
    t0 = wall.now()
    cases = {
        "recurring without recurrencyKind": profile(1, kind="Recurring", start=t0),
        "recurring without startSchedule": profile(2, kind="Recurring", recurrency="Daily"),
        "validFrom after validTo": profile(3, valid_from=t0 + timedelta(hours=1), valid_to=t0),
        "no connector 3": None,
    }
    for what, p in cases.items():
        if p is None:
            status = await set_profile(csms, 3, profile(4))
        else:
            status = await set_profile(csms, 1, p)
        assert status == "Rejected", what
    assert limit_w(daemon) is None
    assert await clear(csms) == "Unknown"


# ---------------------------------------------------------------- R-SC 2: persisted


async def test_r_sc_2_profiles_persist_across_a_restart(daemon, csms, wall):
    t0 = wall.now() - timedelta(seconds=1)
    absolute = profile(1, ((0, 21000), (86400, 8000)), start=t0, stack=2)
    assert await set_profile(csms, 1, absolute) == "Accepted"
    midnight = t0.replace(hour=0, minute=0, second=0, microsecond=0)
    daily = profile(2, ((0, 13000),), kind="Recurring", recurrency="Daily",
                    start=midnight - timedelta(days=1))
    assert await set_profile(csms, 0, daily) == "Accepted"
    assert await set_profile(csms, 1, profile(3, ((0, 15000),), unit="A", stack=5,
                                              valid_from=t0 + timedelta(days=30))) == "Accepted"
    # a replacement and a clear are stored too: id 4 takes id 5's place (same stack level and
    # purpose on connector 0), id 6 is cleared
    later = t0 + timedelta(days=30)
    assert await set_profile(csms, 0, profile(5, ((0, 3000),), stack=7, valid_from=later)) == "Accepted"
    assert await set_profile(csms, 0, profile(4, ((0, 4000),), stack=7, valid_from=later)) == "Accepted"
    assert await set_profile(csms, 1, profile(6, ((0, 6000),), stack=9, valid_from=later)) == "Accepted"
    assert await clear(csms, id=6) == "Accepted"
    c1 = periods_of(await composite(csms, 1, 600))
    c0 = periods_of(await composite(csms, 0, 600))
    assert c1 == [(0, 21000)] and c0 == [(0, 13000)]

    assert await daemon.stop() == 0
    mark = csms.mark()
    await daemon.start()
    await csms.wait_for("BootNotification", since=mark, timeout=15)
    await daemon.until(lambda s: s["link"] == "connected", what="boot accepted")
    assert limit_w(daemon) == 21000  # applied at start, before any OCPP message
    assert periods_of(await composite(csms, 1, 600)) == c1
    assert periods_of(await composite(csms, 0, 600)) == c0
    # the same profiles, with their ids, stack levels and purposes
    assert await clear(csms, id=3, stackLevel=5) == "Accepted"
    assert await clear(csms, id=5) == "Unknown" and await clear(csms, id=6) == "Unknown"
    assert await clear(csms, id=4, connectorId=0, stackLevel=7) == "Accepted"
    assert await clear(csms, connectorId=0, chargingProfilePurpose="TxDefaultProfile") == "Accepted"
    assert await clear(csms, id=1, stackLevel=2) == "Accepted"
    assert await clear(csms) == "Unknown"


async def test_r_sc_1_schema_callerror_for_a_charging_profile_without_schedule(daemon, csms):
    p = profile(1)
    del p["chargingSchedule"]
    with pytest.raises(ValueError):  # our CSMS refuses to send it: check the charger with a raw frame
        await csms.call(BOX, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": p})
    reply = await raw_call(csms, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": p})
    assert reply[0] == 4 and reply[2] in ("OccurenceConstraintViolation", "FormationViolation",
                                          "PropertyConstraintViolation"), reply
    assert await clear(csms) == "Unknown"



# ---------------------------------------------------------------- more of R-SC 1/2/6


async def test_r_sc_2_relative_tx_default_profile_counts_from_the_transaction_start(daemon, csms, wall):
    p = profile(1, ((0, 10000), (60, 20000)), kind="Relative")
    assert await set_profile(csms, 1, p) == "Accepted"
    assert limit_w(daemon) is None  # no transaction: a Relative schedule has no origin yet
    wall.advance(300)
    assert limit_w(daemon) is None
    mark = csms.mark()
    daemon.plug(1)
    daemon.badge("TAG1")
    await csms.wait_for("StartTransaction", since=mark)
    t_start = wall.now()
    await daemon.until(lambda s: conn(s, 1)["limit_w"] == 10000, what="the Relative profile")
    wall.advance_to(t_start + timedelta(seconds=61))
    assert limit_w(daemon) == 20000


async def test_r_sc_1_tx_profiles_stack_above_each_other(daemon, csms):
    tx = await start_session(daemon, csms)
    assert await set_profile(csms, 1, profile(1, ((0, 30000),), purpose="TxProfile", stack=0)) == "Accepted"
    higher = profile(2, ((0, 40000),), purpose="TxProfile", stack=1, duration=60)
    assert await set_profile(csms, 1, higher) == "Accepted"
    assert limit_w(daemon) == 40000  # the higher stack level, even with a higher limit
    got = periods_of(await composite(csms, 1, 120))
    assert [lim for _, lim in got] == [40000, 30000] and abs(got[1][0] - 60) <= 1, got
    daemon.advance(61)
    assert limit_w(daemon) == 30000
    await stop_session(daemon, csms, tx)
    assert limit_w(daemon) is None
    assert await clear(csms) == "Unknown"  # both TxProfiles ended with the transaction


async def test_r_sc_1_a_limit_above_the_connector_maximum_is_the_maximum(daemon, csms):
    assert await set_profile(csms, 1, profile(1, ((0, 400000),))) == "Accepted"
    assert limit_w(daemon) in (None, CMAX)
    assert periods_of(await composite(csms, 1, 60)) == [(0, CMAX)]


async def test_r_sc_1_station_profile_on_two_ccs2_connectors(csms, make_daemon):
    d = make_daemon(csms.url, model="Schneider StarCharge Fast 180")
    await d.start()
    await csms.wait_for("BootNotification", identity=BOX, timeout=15)
    await d.until(lambda s: s["link"] == "connected", what="boot accepted")
    assert [c["type"] for c in d.status()["connectors"]] == ["CCS2", "CCS2"]
    assert await set_profile(csms, 0, profile(1, ((0, 30000),))) == "Accepted"
    assert limit_w(d, 1) == 30000 and limit_w(d, 2) == 30000
    assert await set_profile(csms, 2, profile(2, ((0, 50000),))) == "Accepted"
    assert limit_w(d, 1) == 30000 and limit_w(d, 2) == 50000  # connector 2's own hides connector 0's
    assert await set_profile(csms, 2, profile(3, ((0, 400),), stack=1)) == "Accepted"
    assert limit_w(d, 2) == 1000  # CCS2: raised to 1 kW on either connector
    assert periods_of(await composite(csms, 2, 60)) == [(0, 400)]
    assert periods_of(await composite(csms, 0, 60)) == [(0, 30000)]


async def test_r_sc_6_a_csms_clock_correction_moves_the_boundary(daemon, csms, wall):
    t0 = wall.now() - timedelta(seconds=1)
    assert await set_profile(csms, 1, profile(1, ((0, 10000), (3600, 5000)), start=t0)) == "Accepted"
    assert limit_w(daemon) == 10000
    # the CSMS says it is 2 h later than the charger thinks: past the boundary at once
    csms.respond("Heartbeat", {"currentTime": rfc3339(wall.now() + timedelta(hours=2))}, once=True)
    mark = csms.mark()
    await csms.call(BOX, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    await csms.wait_for("Heartbeat", since=mark)
    await daemon.until(lambda s: conn(s, 1)["limit_w"] == 5000, timeout_s=2.0, what="after a jump forward")
    # and back to the charger's first idea of the time: before the boundary again
    csms.respond("Heartbeat", {"currentTime": rfc3339(t0 + timedelta(seconds=3600 - 2))}, once=True)
    mark = csms.mark()
    await csms.call(BOX, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    await csms.wait_for("Heartbeat", since=mark)
    await daemon.until(lambda s: conn(s, 1)["limit_w"] == 10000, timeout_s=2.0, what="after a jump back")
    # 2 s to the boundary by the corrected clock: the timer was re-armed for it
    await daemon.until(lambda s: conn(s, 1)["limit_w"] == 5000, timeout_s=4.0, what="the boundary, on time")


async def test_r_sc_2_absolute_profile_without_start_keeps_its_start_across_a_restart(daemon, csms, wall):
    received = wall.now()
    assert await set_profile(csms, 1, profile(1, ((0, 21000), (600, 8000)))) == "Accepted"
    reply = await composite(csms, 1, 900)
    (_, first), (at, second) = periods_of(reply)
    boundary = parse_rfc3339(reply["scheduleStart"]) + timedelta(seconds=at)
    assert (first, second) == (21000, 8000)
    assert abs((boundary - (received + timedelta(seconds=600))).total_seconds()) <= 1.0

    assert await daemon.stop() == 0
    mark = csms.mark()
    await daemon.start()
    await csms.wait_for("BootNotification", since=mark, timeout=15)
    await daemon.until(lambda s: s["link"] == "connected", what="boot accepted")
    reply = await composite(csms, 1, 900)
    (_, first), (at, second) = periods_of(reply)
    assert (first, second) == (21000, 8000)
    again = parse_rfc3339(reply["scheduleStart"]) + timedelta(seconds=at)
    # still received + 600 s, not restart + 600 s
    assert abs((again - boundary).total_seconds()) <= 1.0, (again, boundary)
    # and the fresh power stage gets the set-point again
    assert limit_w(daemon) == 21000
    await start_session(daemon, csms)
    await wait_offered(daemon, 1, 21000)


async def test_r_sc_1_2_a_tx_profile_does_not_outlive_its_transaction_across_a_restart(daemon, csms):
    assert await set_profile(csms, 1, profile(1, ((0, 20000),))) == "Accepted"
    tx = await start_session(daemon, csms)
    assert await set_profile(csms, 1, profile(2, ((0, 5000),), purpose="TxProfile", tx=tx)) == "Accepted"
    assert limit_w(daemon) == 5000
    await daemon.kill9()  # power cut: the transaction is closed at the next boot
    mark = csms.mark()
    await daemon.start()
    await csms.wait_for("StopTransaction", since=mark, timeout=15)
    await daemon.until(lambda s: s["link"] == "connected", what="boot accepted")
    assert limit_w(daemon) == 20000
    assert await clear(csms, chargingProfilePurpose="TxProfile") == "Unknown"
    assert await clear(csms, id=1) == "Accepted"


async def test_r_sc_1_tc_059_remote_start_tx_profile_with_the_profile_book_full(daemon, csms):
    slots = [(1, s) for s in range(21)] + [(0, s) for s in range(19)]
    for pid, (cid, stack) in enumerate(slots, start=1):
        assert await set_profile(csms, cid, profile(pid, ((0, 100000),), stack=stack)) == "Accepted"
    daemon.plug(1)
    await daemon.until(lambda s: conn(s, 1)["status"] == "Preparing", what="Preparing")
    txp = profile(77, ((0, 9000),), purpose="TxProfile")
    mark = csms.mark()
    reply = await remote_start(csms, 1, "R", txp)
    if reply == {"status": "Rejected"}:
        return  # refusing the request is a correct answer too
    await csms.wait_for("StartTransaction", since=mark)
    await daemon.until(lambda s: conn(s, 1)["transaction_id"] is not None, what="tx id")
    assert limit_w(daemon) == 9000


async def test_r_sc_4_tc_059_remote_start_for_any_connector_lands_on_chademo(daemon, csms):
    daemon.plug(2)
    await daemon.until(lambda s: conn(s, 2)["status"] == "Preparing", what="Preparing")
    txp = profile(7, ((0, 9000),), purpose="TxProfile")
    mark = csms.mark()
    reply = await csms.call(BOX, "RemoteStartTransaction", {"idTag": "R", "chargingProfile": txp})
    if reply == {"status": "Rejected"}:
        return  # refusing a profile it cannot apply is a correct answer too
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start.payload["connectorId"] == 2
    await daemon.until(lambda s: conn(s, 2)["transaction_id"] is not None, what="tx id")
    assert limit_w(daemon, 2) is None  # CHAdeMO: no set-point
    assert periods_of(await composite(csms, 2, 60)) == [(0, CMAX)]
    assert await clear(csms, id=7) == "Unknown"  # not stored on a connector that takes no profiles
