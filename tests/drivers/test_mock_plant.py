"""The mock station's physics, its persisted energy register and the mock meter.

Time is a FakeMonotonic moved by hand: nothing here sleeps.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

from drivers import mock_plant
from drivers.interfaces import ConnectorSpec, DriverCommunicationError, DriverError
from drivers.meter.mock import MockMeter
from drivers.mock_plant import MockPlant, plant_for
from drivers.power.mock import MockPowerStage

CCS2 = 1
CHADEMO = 2


@pytest.fixture
def plant(ctx):
    return MockPlant(ctx)


def charging(plant: MockPlant, cid: int = CCS2) -> MockPlant:
    plant.plug(cid)
    plant.enable(cid)
    return plant


def power(plant: MockPlant, cid: int = CCS2) -> float:
    return plant.status(cid).output_power_w


def register_file(ctx) -> dict[str, float]:
    return json.loads((ctx.state_dir / mock_plant.STATE_FILE).read_text())["energy_wh"]


# ----------------------------------------------------------------- ramp and limits
def test_r_hw_4_power_ramps_up_at_20_kw_per_s(plant, clock):
    charging(plant)
    assert power(plant) == 0.0
    clock.advance(0.5)
    assert power(plant) == pytest.approx(10_000.0)
    clock.advance(0.5)
    assert power(plant) == pytest.approx(20_000.0)
    clock.advance(1.0)
    assert power(plant) == pytest.approx(40_000.0)


def test_r_hw_4_power_capped_by_connector_max(plant, clock):
    charging(plant)
    clock.advance(30.0)
    status = plant.status(CCS2)
    assert status.output_power_w == pytest.approx(60_000.0)
    assert status.offered_w == pytest.approx(60_000.0)


def test_r_hw_4_power_capped_by_setpoint_and_ramps_down_at_50_kw_per_s(plant, clock):
    plant.set_limit(CCS2, 25_000.0)
    charging(plant)
    clock.advance(10.0)
    assert power(plant) == pytest.approx(25_000.0)
    assert plant.status(CCS2).offered_w == pytest.approx(25_000.0)
    plant.set_limit(CCS2, None)
    clock.advance(10.0)
    assert power(plant) == pytest.approx(60_000.0)
    plant.set_limit(CCS2, 10_000.0)
    clock.advance(0.5)
    assert power(plant) == pytest.approx(35_000.0)
    clock.advance(0.5)
    assert power(plant) == pytest.approx(10_000.0)
    clock.advance(5.0)
    assert power(plant) == pytest.approx(10_000.0)


def test_r_sc_4_ccs2_zero_setpoint_leaves_residual_of_half_amp_per_module(plant, clock):
    charging(plant)
    plant.set_limit(CCS2, 0.0)
    clock.advance(5.0)
    status = plant.status(CCS2)
    modules = 2  # 60 kW connector, one module per 30 kW
    residual_w = 0.5 * modules * status.voltage_v
    assert status.voltage_v == pytest.approx(400.0 + 0.5 * 20.0, abs=0.01)
    assert status.output_power_w == pytest.approx(residual_w, rel=1e-4)
    assert status.current_a == pytest.approx(0.5 * modules, rel=1e-4)
    assert status.offered_w == pytest.approx(residual_w, rel=1e-4)


def test_r_sc_4_ccs2_residual_scales_with_module_count(make_ctx, clock):
    connectors = (ConnectorSpec(1, "CCS2", 180_000.0),)
    plant = MockPlant(make_ctx(connectors=connectors, station_max_power_w=180_000.0))
    charging(plant)
    plant.set_limit(1, 0.0)
    clock.advance(5.0)
    status = plant.status(1)
    assert status.current_a == pytest.approx(0.5 * 6, rel=1e-4)  # 180 kW = 6 modules


@pytest.mark.parametrize("setpoint_w", [1.0, 500.0, 999.0])
def test_r_sc_4_ccs2_nonzero_setpoint_under_1_kw_raised_to_1_kw(plant, clock, setpoint_w):
    charging(plant)
    plant.set_limit(CCS2, setpoint_w)
    clock.advance(5.0)
    status = plant.status(CCS2)
    assert status.output_power_w == pytest.approx(1000.0)
    assert status.offered_w == pytest.approx(1000.0)


@pytest.mark.parametrize("setpoint_w", [0.0, 500.0, 10_000.0])
def test_r_sc_4_chademo_ignores_setpoint(plant, clock, setpoint_w):
    plant.set_limit(CHADEMO, setpoint_w)
    charging(plant, CHADEMO)
    clock.advance(10.0)
    status = plant.status(CHADEMO)
    assert status.output_power_w == pytest.approx(50_000.0)
    assert status.offered_w == pytest.approx(50_000.0)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "100", True])
def test_r_hw_4_bad_setpoint_is_driver_error(plant, bad):
    with pytest.raises(DriverError):
        plant.set_limit(CCS2, bad)


# ----------------------------------------------------------------- the EV
def test_r_hw_4_soc_rises_with_delivered_energy(plant, clock):
    charging(plant)
    clock.advance(61.5)  # 1.5 s lost to the 3 s ramp, then 60 s at 60 kW = 1000 Wh
    assert plant.soc_pct(CCS2) == pytest.approx(20.0 + 1000.0 / 60_000.0 * 100.0)
    assert plant.status(CCS2).soc_pct == 21
    assert plant.reading(CCS2).energy_wh in (999, 1000)


def test_r_hw_4_voltage_and_current_follow_soc(plant, clock):
    plant.set_ev(CCS2, soc=50.0, capacity_wh=1e12)  # huge battery: SoC stays put
    assert plant.reading(CCS2).voltage_v == 0.0  # contactors open
    charging(plant)
    clock.advance(10.0)
    reading = plant.reading(CCS2)
    assert reading.voltage_v == pytest.approx(425.0)
    assert reading.current_a == pytest.approx(60_000.0 / 425.0)


def test_r_hw_4_acceptance_tapers_linearly_above_80_pct(plant, clock):
    expected = {
        80.0: 60_000.0,
        90.0: 60_000.0 * (1 - 0.95 * 0.5),
        99.0: 60_000.0 * (1 - 0.95 * 0.95),
    }
    charging(plant)
    for soc, want_w in expected.items():
        plant.set_ev(CCS2, soc=soc, capacity_wh=1e12)
        clock.advance(10.0)
        assert power(plant) == pytest.approx(want_w, rel=1e-6), soc


def test_r_hw_4_full_battery_takes_no_power(plant, clock):
    plant.set_ev(CCS2, soc=100.0)
    charging(plant)
    clock.advance(10.0)
    assert power(plant) == 0.0
    assert plant.reading(CCS2).energy_wh == 0


def test_r_hw_4_charging_stops_at_100_pct(plant, clock):
    plant.set_ev(CCS2, soc=99.9, capacity_wh=10_000.0)  # 10 Wh to go, at ~3.6 kW
    charging(plant)
    clock.advance(60.0)
    status = plant.status(CCS2)
    assert status.soc_pct == 100
    assert status.output_power_w == 0.0
    energy = plant.reading(CCS2).energy_wh
    clock.advance(600.0)
    assert plant.reading(CCS2).energy_wh == energy


def test_r_hw_4_ev_identity_defaults_and_changes(plant):
    assert plant.status(CCS2).ev_mac is None  # nothing plugged
    plant.plug(CCS2)
    plant.plug(CHADEMO)
    s1, s2 = plant.status(CCS2), plant.status(CHADEMO)
    assert s1.soc_pct == 20 and s1.contract_id is None
    assert s1.ev_mac == mock_plant.default_ev_mac(1) and s2.ev_mac == mock_plant.default_ev_mac(2)
    assert s1.ev_mac != s2.ev_mac
    plant.set_ev(CCS2, mac="aa-bb-cc-dd-ee-ff", contract_id="DE8AA001234567")
    s1 = plant.status(CCS2)
    assert (s1.ev_mac, s1.contract_id) == ("AA:BB:CC:DD:EE:FF", "DE8AA001234567")
    plant.set_ev(CCS2, contract_id="", mac="")
    s1 = plant.status(CCS2)
    assert (s1.ev_mac, s1.contract_id) == (None, None)


@pytest.mark.parametrize(
    "kwargs", [{"soc": 101}, {"soc": -1}, {"mac": "AA:BB"}, {"capacity_wh": 0}, {"soc": "50"}]
)
def test_r_hw_4_bad_ev_values_are_driver_errors(plant, kwargs):
    with pytest.raises(DriverError):
        plant.set_ev(CCS2, **kwargs)


def test_r_hw_4_unplug_disables_and_drops_power(plant, clock):
    charging(plant)
    clock.advance(5.0)
    assert plant.unplug(CCS2) is True
    assert plant.unplug(CCS2) is False
    assert not plant.is_enabled(CCS2)
    status = plant.status(CCS2)
    assert (status.plugged, status.output_power_w, status.soc_pct) == (False, 0.0, None)
    plant.plug(CCS2)
    clock.advance(5.0)
    assert power(plant) == 0.0  # a new plug-in needs a new enable


def test_r_hw_4_enable_without_ev_delivers_nothing(plant, clock):
    plant.enable(CCS2)
    clock.advance(5.0)
    assert power(plant) == 0.0


@pytest.mark.parametrize("cid", [0, 3, -1, True, "1"])
def test_r_hw_4_unknown_connector_is_driver_error(plant, cid):
    for call in (plant.reading, plant.status, plant.enable, plant.disable, plant.plug):
        with pytest.raises(DriverError):
            call(cid)


# ----------------------------------------------------------------- station limit
def two_ccs2(make_ctx, station_max_w=90_000.0, state_dir=None):
    connectors = (ConnectorSpec(1, "CCS2", 60_000.0), ConnectorSpec(2, "CCS2", 60_000.0))
    return MockPlant(
        make_ctx(connectors=connectors, station_max_power_w=station_max_w, state_dir=state_dir)
    )


def test_r_model_1_second_connector_gets_what_the_first_leaves(make_ctx, clock):
    plant = two_ccs2(make_ctx)
    charging(plant, 1)
    clock.advance(5.0)
    charging(plant, 2)
    assert plant.status(2).offered_w == pytest.approx(30_000.0)
    for _ in range(40):
        clock.advance(0.25)
        assert power(plant, 1) + power(plant, 2) <= 90_000.0 + 1e-6
    assert power(plant, 1) == pytest.approx(60_000.0)
    assert power(plant, 2) == pytest.approx(30_000.0)
    plant.disable(1)
    clock.advance(1.5)
    assert power(plant, 2) == pytest.approx(60_000.0)


def test_r_model_1_connectors_starting_together_share_station_max(make_ctx, clock):
    plant = two_ccs2(make_ctx)
    charging(plant, 1)
    charging(plant, 2)
    clock.advance(1.0)
    assert power(plant, 1) == power(plant, 2) == pytest.approx(20_000.0)
    clock.advance(1.25)
    assert power(plant, 1) == power(plant, 2) == pytest.approx(45_000.0)
    clock.advance(10.0)
    assert power(plant, 1) + power(plant, 2) == pytest.approx(90_000.0)


def test_r_model_1_freed_power_goes_to_the_other_connector(make_ctx, clock):
    plant = two_ccs2(make_ctx)
    charging(plant, 1)
    clock.advance(5.0)
    charging(plant, 2)
    clock.advance(5.0)
    plant.set_limit(1, 40_000.0)  # 1 drops at 50 kW/s, 2 climbs at 20 kW/s into the gap
    clock.advance(0.5)
    assert power(plant, 1) == pytest.approx(40_000.0)
    assert power(plant, 2) == pytest.approx(40_000.0)
    clock.advance(0.5)
    assert power(plant, 2) == pytest.approx(50_000.0)
    assert power(plant, 1) + power(plant, 2) == pytest.approx(90_000.0)


def test_r_hw_4_reading_often_or_rarely_gives_the_same_result(make_ctx, clock, tmp_path):
    """The model is a function of the inputs and the clock, not of who looked when."""
    plants = [two_ccs2(make_ctx, state_dir=tmp_path / name) for name in ("fine", "coarse")]
    for p in plants:
        p.set_ev(1, soc=70.0, capacity_wh=2_000.0)
        p.set_ev(2, soc=10.0, capacity_wh=50_000.0)
        charging(p, 1)
    start = clock.now_s
    script = {
        3.3: lambda p: charging(p, 2),
        7.1: lambda p: p.set_limit(2, 12_345.0),
        12.6: lambda p: p.set_limit(2, None),
    }
    t = 0.0
    while t < 30.0:
        t = round(t + 0.1, 10)
        clock.now_s = start + t
        plants[0].reading(1)  # the fine one is read every 0.1 s
        if t in script:
            for p in plants:
                script[t](p)
    fine, coarse = plants
    for cid in (1, 2):
        assert fine.soc_pct(cid) == pytest.approx(coarse.soc_pct(cid), rel=1e-9)
        assert power(fine, cid) == pytest.approx(power(coarse, cid), rel=1e-9)
        # whole Wh of the same float may differ by one when it sits on an integer
        assert fine.reading(cid).energy_wh == pytest.approx(coarse.reading(cid).energy_wh, abs=1)
    assert 80.0 < fine.soc_pct(1) < 100.0  # the run went through the taper


def test_r_hw_4_long_idle_gap_is_cheap(plant, clock):
    plant.plug(CCS2)
    clock.advance(365 * 24 * 3600.0)
    assert plant.reading(CCS2).energy_wh == 0


# ----------------------------------------------------------------- energy register (R-HW 5)
def test_r_hw_5_energy_register_only_grows(plant, clock):
    rng = random.Random(20240605)
    last = {CCS2: 0, CHADEMO: 0}
    for _ in range(400):
        cid = rng.choice((CCS2, CHADEMO))
        op = rng.randrange(7)
        if op == 0:
            plant.plug(cid)
        elif op == 1:
            plant.unplug(cid)
        elif op == 2:
            plant.enable(cid)
        elif op == 3:
            plant.disable(cid)
        elif op == 4:
            plant.set_limit(cid, rng.choice([None, 0.0, 500.0, 20_000.0]))
        elif op == 5:
            plant.set_ev(cid, soc=rng.uniform(0.0, 100.0))
        clock.advance(rng.uniform(0.0, 3.0))
        for c in (CCS2, CHADEMO):
            now = plant.reading(c).energy_wh
            assert isinstance(now, int)
            assert now >= last[c]
            last[c] = now
    assert last[CCS2] > 0 and last[CHADEMO] > 0


def test_r_hw_5_mock_plant_energy_survives_restart(ctx, clock):
    plant = charging(MockPlant(ctx))
    clock.advance(120.0)
    before = plant.reading(CCS2).energy_wh
    assert before > 0
    plant.close()
    reborn = MockPlant(ctx)
    assert reborn.reading(CCS2).energy_wh == before
    assert reborn.reading(CHADEMO).energy_wh == 0
    charging(reborn)
    clock.advance(10.0)
    assert reborn.reading(CCS2).energy_wh > before


async def test_r_hw_5_mock_meter_energy_survives_restart(ctx, clock):
    meter, stage = MockMeter(ctx), MockPowerStage(ctx)
    await meter.start()
    await stage.start()
    stage.plug(CCS2)
    await stage.enable(CCS2)
    clock.advance(60.0)
    before = (await meter.read(CCS2)).energy_wh
    await stage.close()
    await meter.close()
    # a new daemon: new backends, new plant loaded from the state directory
    meter2, stage2 = MockMeter(ctx), MockPowerStage(ctx)
    assert meter2.plant is stage2.plant is not meter.plant
    await meter2.start()
    assert (await meter2.read(CCS2)).energy_wh == before
    await meter2.close()
    await stage2.close()


def test_r_hw_5_register_survives_a_crash_up_to_the_last_second(ctx, clock):
    plant = charging(MockPlant(ctx))
    for _ in range(30):
        clock.advance(0.5)
        plant.reading(CCS2)
    shown = plant.reading(CCS2).energy_wh
    # killed here: no close; a new plant loads what was saved at most 1 s ago
    reborn = MockPlant(ctx)
    lost = shown - reborn.reading(CCS2).energy_wh
    assert 0 <= lost <= 60_000.0 / 3600.0 + 1


def test_r_hw_5_register_saved_at_most_once_per_second(plant, ctx, clock):
    charging(plant)  # enable saves
    assert register_file(ctx)["1"] == 0.0
    clock.advance(0.5)
    plant.reading(CCS2)
    assert register_file(ctx)["1"] == 0.0  # changed, but saved 0.5 s ago
    clock.advance(0.5)
    plant.reading(CCS2)
    saved = register_file(ctx)["1"]
    assert saved == pytest.approx(20_000.0 / 2 / 3600.0)
    clock.advance(0.9)
    plant.reading(CCS2)
    assert register_file(ctx)["1"] == saved
    clock.advance(0.1)
    plant.reading(CCS2)
    assert register_file(ctx)["1"] > saved


def test_r_hw_5_register_saved_on_enable_disable_and_close(plant, ctx, clock):
    charging(plant)
    clock.advance(0.3)
    plant.disable(CCS2)
    assert register_file(ctx)["1"] == pytest.approx(6_000.0 * 0.3 / 2 / 3600.0)
    plant.enable(CCS2)
    clock.advance(0.2)
    plant.reading(CCS2)
    plant.close()
    assert register_file(ctx)["1"] == pytest.approx(plant.reading(CCS2).energy_wh, abs=1) and (
        register_file(ctx)["1"] > 6_000.0 * 0.3 / 2 / 3600.0
    )


def test_r_hw_5_register_file_is_replaced_atomically(plant, ctx, clock, monkeypatch):
    charging(plant)
    clock.advance(10.0)
    plant.save()
    good = register_file(ctx)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mock_plant.os, "replace", broken_replace)
    clock.advance(10.0)
    with pytest.raises(DriverError, match="No space left"):
        plant.save()
    assert register_file(ctx) == good  # the old file is intact
    assert [p.name for p in ctx.state_dir.iterdir()] == [mock_plant.STATE_FILE]  # no temp left


def test_r_hw_5_failed_periodic_save_is_logged_not_raised(plant, ctx, clock, monkeypatch, caplog):
    charging(plant)

    def broken_replace(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(mock_plant.os, "replace", broken_replace)
    with caplog.at_level(logging.WARNING, logger="drivers.mock_plant"):
        clock.advance(2.0)
        assert plant.reading(CCS2).power_w > 0
    assert "cannot write" in caplog.text


@pytest.mark.parametrize("content", ["{", "[]", '{"energy_wh": {"1": -5}}', '{"energy_wh": 3}'])
def test_r_hw_5_unreadable_register_file_is_driver_error(ctx, content):
    ctx.state_dir.mkdir(parents=True)
    (ctx.state_dir / mock_plant.STATE_FILE).write_text(content)
    with pytest.raises(DriverError, match="mock-meter.json"):
        MockPlant(ctx)


def test_r_hw_5_registers_of_unconfigured_connectors_are_kept(ctx):
    ctx.state_dir.mkdir(parents=True)
    (ctx.state_dir / mock_plant.STATE_FILE).write_text('{"energy_wh": {"1": 10.5, "7": 99.0}}')
    plant = MockPlant(ctx)
    assert plant.reading(CCS2).energy_wh == 10
    plant.save()
    assert register_file(ctx) == {"1": 10.5, "2": 0.0, "7": 99.0}


# ----------------------------------------------------------------- sharing
def test_r_hw_5_meter_and_power_stage_share_one_plant_per_state_dir(make_ctx, tmp_path):
    a1, a2 = plant_for(make_ctx()), plant_for(make_ctx())
    other = plant_for(make_ctx(state_dir=tmp_path / "other"))
    assert a1 is a2 and other is not a1
    with pytest.raises(DriverError, match="one station"):
        plant_for(make_ctx(station_max_power_w=1.0))
    a1.release()
    assert plant_for(make_ctx()) is a1  # still referenced once
    a1.release()
    a1.release()
    assert plant_for(make_ctx()) is not a1  # last release forgot it
    other.release()


@pytest.mark.parametrize(
    "connectors",
    [
        (),
        (ConnectorSpec(1, "Type2", 22_000.0),),
        (ConnectorSpec(1, "CCS2", 0.0),),
        (ConnectorSpec(1, "CCS2", 1.0), ConnectorSpec(1, "CCS2", 1.0)),
    ],
)
def test_r_model_1_bad_station_description_is_driver_error(make_ctx, connectors):
    with pytest.raises(DriverError):
        MockPlant(make_ctx(connectors=connectors))


# ----------------------------------------------------------------- mock meter
async def test_r_hw_1_mock_meter_comm_fault_injection(ctx, clock):
    meter, stage = MockMeter(ctx), MockPowerStage(ctx)
    await meter.start()
    await stage.start()
    stage.plug(CCS2)
    await stage.enable(CCS2)
    clock.advance(5.0)
    first = await meter.read(CCS2)
    assert first.power_w == pytest.approx(60_000.0)
    meter.fail(True)
    with pytest.raises(DriverCommunicationError):
        await meter.read(CCS2)
    clock.advance(60.0)
    meter.fail(False)
    later = await meter.read(CCS2)
    assert later.energy_wh >= first.energy_wh + 60_000 * 60 // 3600 - 1  # kept counting
    with pytest.raises(DriverError):
        await meter.read(9)
    await stage.close()
    await meter.close()


async def test_r_hw_1_mock_meter_reads_only_while_running(ctx):
    meter = MockMeter(ctx)
    with pytest.raises(DriverError, match="not started"):
        await meter.read(CCS2)
    await meter.start()
    reading = await meter.read(CCS2)
    assert isinstance(reading.energy_wh, int)
    await meter.close()
    await meter.close()
    with pytest.raises(DriverError, match="closed"):
        await meter.read(CCS2)


def test_r_hw_5_state_file_lives_in_state_dir(plant, ctx):
    assert plant.state_path == Path(ctx.state_dir) / "mock-meter.json"
