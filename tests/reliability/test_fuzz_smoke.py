"""R-OPS 3: mutated and random OCPP-J frames for every CSMS → charge point action against the
real daemon with a running charge (2 000-frame smoke of ``bench/fuzz.py``; the 1 000 000-frame
run is ``python bench/fuzz.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import fuzz
import pytest
from daemon_harness import Daemon

from controller.csms import CentralSystem

BOX = "CP-TEST"


@pytest.mark.timeout(120)
async def test_r_ops_3_fuzz_smoke_2000_frames_answered_link_kept_charge_goes_on() -> None:
    stats = await fuzz.run(frames=2000, seed=2026, skip_known_bugs=True)
    assert stats.sent == 2000
    assert stats.answered == stats.expecting > 1000
    assert stats.meter_values_during > 0
    assert not stats.failures, "\n".join(stats.failures[:20])
    assert stats.seconds < 60


@pytest.fixture
async def booted(tmp_path: Path) -> AsyncIterator[tuple[CentralSystem, Daemon]]:
    """Our CSMS and the daemon, booted and connected."""
    async with CentralSystem("127.0.0.1", 0) as csms:
        d = Daemon(tmp_path, csms.url)
        try:
            await d.start()
            await d.until(lambda s: s["link"] == "connected", timeout_s=20, what="boot")
            yield csms, d
        finally:
            if d.proc is not None and d.proc.returncode is None:
                d.proc.kill()
                await d.proc.wait()


async def answer_to(csms: CentralSystem, text: str, uid: str) -> Any:
    """Send ``text`` as is; the CALLRESULT / CALLERROR with ``uid`` as a list (no link drop)."""
    since = await csms.send_raw(BOX, text)
    frame = await csms.wait_frame(
        BOX, lambda f: isinstance(f.json(), list) and len(f.json()) > 1 and f.json()[1] == uid,
        since=since, timeout=5)
    return frame.json()


async def still_connected(csms: CentralSystem, connects: int) -> None:
    reply = await csms.call(BOX, "GetConfiguration", {"key": ["HeartbeatInterval"]}, timeout=5)
    assert reply["configurationKey"]
    assert len(csms.events(BOX, "connect")) == connects and not csms.events(BOX, "disconnect")


@pytest.mark.timeout(60)
async def test_r_ops_3_deeply_nested_json_frame_keeps_the_link(booted) -> None:
    csms, _ = booted
    connects = len(csms.events(BOX, "connect"))
    depth = 20_000
    bomb = '[2,"bomb-1","GetConfiguration",' + '{"a":' * depth + "1" + "}" * depth + "]"
    # past the recorder: our CSMS's Frame.message() cannot parse this frame either
    await csms._session(BOX).ws.send(bomb)
    await still_connected(csms, connects)


@pytest.mark.timeout(60)
async def test_r_ops_3_huge_charging_limit_keeps_the_link(booted) -> None:
    csms, _ = booted
    connects = len(csms.events(BOX, "connect"))
    text = ('[2,"huge-1","SetChargingProfile",{"connectorId":1,"csChargingProfiles":{'
            '"chargingProfileId":3,"stackLevel":0,"chargingProfilePurpose":"TxDefaultProfile",'
            '"chargingProfileKind":"Absolute","chargingSchedule":{"startSchedule":"2020-01-01T00:00:00Z",'
            '"chargingRateUnit":"W","chargingSchedulePeriod":[{"startPeriod":0,"limit":1e30}]}}}]')
    reply = await answer_to(csms, text, "huge-1")
    assert reply[0] in (3, 4)
    await still_connected(csms, connects)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("duration", [-1, 2**63])
async def test_r_sc_5_absurd_composite_duration_is_refused_not_internal_error(booted, duration) -> None:
    csms, _ = booted
    reply = await answer_to(csms, f'[2,"dur-1","GetCompositeSchedule",{{"connectorId":1,'
                                  f'"duration":{duration},"chargingRateUnit":"W"}}]', "dur-1")
    assert reply[0] == 3 and reply[2]["status"] == "Rejected" or (
        reply[0] == 4 and reply[2] == "PropertyConstraintViolation"), reply


@pytest.mark.timeout(60)
async def test_r_res_reservation_id_beyond_64_bits_is_refused_not_internal_error(booted) -> None:
    csms, _ = booted
    reply = await answer_to(csms, '[2,"res-1","ReserveNow",{"connectorId":0,"expiryDate":'
                                  '"2030-01-01T00:00:00Z","idTag":"TAG","reservationId":'
                                  + str(10**30) + '}]', "res-1")
    assert reply[0] == 3 and reply[2]["status"] == "Rejected" or (
        reply[0] == 4 and reply[2] == "PropertyConstraintViolation"), reply
