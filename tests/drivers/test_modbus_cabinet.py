"""ModbusPowerCabinet against a simulated cabinet served by pymodbus on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("pymodbus")

from fake_modbus import FreezableProxy, free_port
from real_stacks import FakeCabinet

from drivers import registry
from drivers.interfaces import (
    CablePlugged,
    CableUnplugged,
    DriverCommunicationError,
    DriverError,
    DriverTimeoutError,
    FaultCleared,
    FaultRaised,
    PowerStatus,
)
from drivers.power.modbus_cabinet import (
    CABINET_LINK_DTC,
    FAULT_BITS,
    CabinetCapabilities,
    ModbusPowerCabinet,
    Reg,
    base,
)

# The station of conftest: CCS2 rated 60 kW, CHAdeMO 50 kW. The cabinet can do 50 kW
# on connector 1 (below the rating) and 62.5 kW on connector 2 (above it).
CABINET = {1: 50_000, 2: 62_500}


@pytest.fixture
async def cabinet():
    sim = FakeCabinet(CABINET)
    port = await sim.serve()
    proxy = FreezableProxy(port)
    await proxy.start()
    yield sim, proxy
    await proxy.stop()
    await sim.stop()


@pytest.fixture
def opts(cabinet):
    _, proxy = cabinet
    return {"host": "127.0.0.1", "port": proxy.port, "poll_interval_s": 0.02, "timeout_s": 0.2}


@pytest.fixture
async def stage(make_ctx, opts):
    driver = registry.load("power", "modbus_cabinet", make_ctx(options=opts))
    await driver.start()
    yield driver
    await driver.close()


async def until(predicate, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def faults(emitted) -> list:
    return [e for e in emitted.events if isinstance(e, FaultRaised | FaultCleared)]


# --------------------------------------------------------------------- options, registry
def test_registered_as_modbus_cabinet():
    assert "modbus_cabinet" in registry.available("power")


@pytest.mark.parametrize(
    "options",
    [{"port": 0}, {"device_id": 300}, {"poll_interval_s": 0}, {"timeout_s": -1}, {"ramp_down_s": "5"}],
)
def test_bad_options_are_driver_errors(make_ctx, options):
    with pytest.raises(DriverError):
        ModbusPowerCabinet(make_ctx(options=options))


def test_fault_bits_are_dtcs_of_the_guide():
    from controller.core.dtc import lookup

    assert all(lookup(dtc) is not None for dtc in FAULT_BITS.values())
    assert lookup(CABINET_LINK_DTC) is not None
    assert len(set(FAULT_BITS.values())) == len(FAULT_BITS)


# --------------------------------------------------------------------- start, capabilities
async def test_r_hw_4_capabilities_read_at_start_before_anything_else(cabinet, make_ctx, opts):
    stage = ModbusPowerCabinet(make_ctx(options=opts))
    assert stage.capabilities == {}
    await stage.start()
    try:
        assert stage.capabilities == {
            1: CabinetCapabilities(50_000.0, 1000.0, 125.0),
            2: CabinetCapabilities(62_500.0, 1000.0, 156.0),
        }
        assert stage.module_counts == {1: 4, 2: 4}
    finally:
        await stage.close()


async def test_wrong_map_version_or_too_few_connectors_fail_start(cabinet, make_ctx, opts):
    sim, _ = cabinet
    await sim.devices.write(1, Reg.CONNECTOR_COUNT, [1])
    with pytest.raises(DriverError, match="connector"):
        await ModbusPowerCabinet(make_ctx(options=opts)).start()
    await sim.devices.write(1, Reg.VERSION, [2, 2])
    with pytest.raises(DriverError, match="version"):
        await ModbusPowerCabinet(make_ctx(options=opts)).start()


async def test_cabinet_down_at_start_is_not_fatal_capabilities_at_first_answer(make_ctx, emitted):
    port = free_port()
    stage = ModbusPowerCabinet(make_ctx(options={"port": port, "poll_interval_s": 0.02, "timeout_s": 0.2}))
    await stage.start()
    sim = FakeCabinet(CABINET)
    try:
        with pytest.raises(DriverCommunicationError):
            await stage.status(1)
        await until(lambda: FaultRaised(CABINET_LINK_DTC, 0) in emitted.events)
        await sim.serve(port)
        await until(lambda: FaultCleared(CABINET_LINK_DTC, 0) in emitted.events)
        assert stage.capabilities[1].max_power_w == 50_000.0
        assert (await stage.status(1)).plugged is False
    finally:
        await stage.close()
        await sim.stop()


# --------------------------------------------------------------------- writes
async def test_r_hw_4_set_point_and_enable_written(cabinet, stage):
    sim, _ = cabinet
    await stage.set_limit(1, 22_000.0)
    assert await sim.registers(base(1) + Reg.SETPOINT, 3) == [0, 22_000, 0]
    await stage.enable(1)
    assert await sim.registers(base(1) + Reg.SETPOINT, 3) == [0, 22_000, 1]
    await stage.set_limit(1, 100_000.0)  # clamped to the cabinet's 50 kW
    assert await sim.registers(base(1) + Reg.SETPOINT, 2) == [0, 50_000]
    await stage.set_limit(1, None)  # the connector's max: the cabinet's 50 kW < the 60 kW rating
    assert await sim.registers(base(1) + Reg.SETPOINT, 2) == [0, 50_000]
    await stage.set_limit(2, None)  # the rating's 50 kW < the cabinet's 62.5 kW
    assert await sim.registers(base(2) + Reg.SETPOINT, 2) == [0, 50_000]
    await stage.disable(1)
    assert await sim.registers(base(1) + Reg.ENABLE, 1) == [0]
    for bad in (-1.0, float("nan"), "1000"):
        with pytest.raises(DriverError):
            await stage.set_limit(1, bad)


async def test_enable_writes_the_set_point_too(cabinet, stage):
    sim, _ = cabinet
    await sim.devices.write(1, base(2) + Reg.SETPOINT, [0, 0])  # e.g. a cabinet that restarted
    await stage.enable(2)
    assert await sim.registers(base(2) + Reg.SETPOINT, 3) == [0, 50_000, 1]  # None = the max


# --------------------------------------------------------------------- readings
async def test_r_hw_4_readings_decoded(cabinet, stage):
    sim, _ = cabinet
    await sim.plug(1)
    await sim.set_ev(1, soc=42, mac=bytes.fromhex("0a1b2c3d4e5f"), contract_id="DE8ACC12E46L89")
    await stage.set_limit(1, 20_000.0)
    await stage.enable(1)
    for _ in range(100):  # the simulated cabinet follows within ~10 ms
        status = await stage.status(1)
        if status.output_power_w == 20_000.0:
            break
        await asyncio.sleep(0.01)
    assert status == PowerStatus(
        plugged=True, output_power_w=20_000.0, voltage_v=400.0, current_a=50.0, offered_w=20_000.0,
        soc_pct=42, ev_mac="0A:1B:2C:3D:4E:5F", contract_id="DE8ACC12E46L89",
    )
    await stage.disable(1)  # returns once the output is safe
    assert (await stage.status(1)).output_power_w == 0.0
    other = await stage.status(2)
    assert (other.plugged, other.soc_pct, other.ev_mac, other.contract_id) == (False, None, None, None)


async def test_disable_times_out_when_the_output_stays_live(cabinet, make_ctx, opts):
    sim, _ = cabinet
    await sim.stop()  # nobody plays the cabinet: the output we write stays
    port = await sim.devices.serve_tcp()
    from fake_modbus import words

    await sim.devices.write(1, base(1) + Reg.POWER, words("f", 30_000.0))
    stage = ModbusPowerCabinet(make_ctx(options={**opts, "port": port, "ramp_down_s": 0.2}))
    await stage.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(DriverTimeoutError, match="30000 W"):
            await stage.disable(1)
        assert time.monotonic() - t0 < 1.0
    finally:
        await stage.close()
        await sim.devices.stop()


async def test_garbage_contract_id_is_comm_error(cabinet, stage):
    sim, _ = cabinet
    await sim.devices.write(1, base(1) + Reg.CONTRACT_ID, [0xC3A9])
    with pytest.raises(DriverCommunicationError):
        await stage.status(1)


# --------------------------------------------------------------------- events
async def test_r_hw_4_plug_changes_are_events(cabinet, make_ctx, opts, emitted):
    sim, _ = cabinet
    await sim.plug(2)
    stage = ModbusPowerCabinet(make_ctx(options=opts))
    await stage.start()
    try:
        assert emitted.events == [CablePlugged(2)]  # plugged at start: reported by start()
        await sim.plug(1)
        await until(lambda: CablePlugged(1) in emitted.events)
        await sim.plug(2, False)
        await until(lambda: CableUnplugged(2) in emitted.events)
        await asyncio.sleep(0.1)  # polled many times since: one event per change
        assert emitted.events == [CablePlugged(2), CablePlugged(1), CableUnplugged(2)]
    finally:
        await stage.close()


async def test_close_cancels_the_poll(cabinet, make_ctx, opts, emitted):
    sim, _ = cabinet
    stage = ModbusPowerCabinet(make_ctx(options=opts))
    await stage.start()
    await stage.close()
    before = stage.requests
    await sim.plug(1)
    await asyncio.sleep(0.1)
    assert stage.requests == before and emitted.events == []
    with pytest.raises(DriverError):
        await stage.status(1)


async def test_r_hw_4_fault_bits_raise_and_clear_dtcs(cabinet, stage, emitted):
    sim, _ = cabinet
    await sim.set_faults(1, 1 << 3 | 1 << 16)  # output relay + cabinet emergency stop
    status = await stage.status(1)  # status() polls the fault word
    assert status.plugged is False
    assert sorted(faults(emitted), key=str) == sorted(
        [FaultRaised("0x100208", 1), FaultRaised("0x200202", 1)], key=str
    )
    await sim.set_faults(1, 1 << 16)
    await stage.status(1)
    await sim.set_faults(2, 1 << 4)
    await until(lambda: FaultRaised("0x10020A", 2) in emitted.events)  # the background poll too
    await sim.set_faults(1, 0)
    await until(lambda: FaultCleared("0x200202", 1) in emitted.events)
    assert faults(emitted)[2:] == [
        FaultCleared("0x100208", 1), FaultRaised("0x10020A", 2), FaultCleared("0x200202", 1)
    ]


async def test_unmapped_fault_bit_is_ignored(cabinet, stage, emitted):
    sim, _ = cabinet
    await sim.set_faults(1, 1 << 31)
    await stage.status(1)
    assert faults(emitted) == []


# --------------------------------------------------------------------- failures
async def test_cabinet_not_answering_is_timeout_dtc_then_recovers(cabinet, stage, emitted):
    sim, proxy = cabinet
    assert (await stage.status(1)).plugged is False
    proxy.frozen = True
    t0 = time.monotonic()
    for call in (lambda: stage.status(1), lambda: stage.set_limit(1, 1000.0), lambda: stage.enable(1)):
        with pytest.raises(DriverTimeoutError):
            await call()
    assert time.monotonic() - t0 < 3.0
    await until(lambda: FaultRaised(CABINET_LINK_DTC, 0) in emitted.events)
    await sim.plug(1)
    proxy.frozen = False
    await until(lambda: FaultCleared(CABINET_LINK_DTC, 0) in emitted.events)
    assert (await stage.status(1)).plugged is True
    assert CablePlugged(1) in emitted.events


async def test_server_gone_is_comm_error_then_recovers(cabinet, stage):
    sim, proxy = cabinet
    await stage.status(1)
    await sim.stop()
    with pytest.raises(DriverCommunicationError):
        await stage.status(1)
    await sim.serve(proxy.target_port)
    for _ in range(50):
        try:
            assert (await stage.status(1)).plugged is False
            break
        except DriverCommunicationError:
            await asyncio.sleep(0.02)
    else:
        pytest.fail("no recovery")
