"""ModbusMeter against a real pymodbus server: TCP on 127.0.0.1 and RTU over a socat pty pair."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("pymodbus")

from fake_modbus import FakeModbusMeter, FreezableProxy, SocatPair  # noqa: E402

from drivers import registry  # noqa: E402
from drivers.interfaces import (  # noqa: E402
    DriverCommunicationError,
    DriverError,
    DriverTimeoutError,
    MeterReading,
)
from drivers.meter.modbus import MAPS_DIR, ModbusMeter, decode, load_map, plan_reads  # noqa: E402


# --------------------------------------------------------------------- maps, offline
@pytest.mark.parametrize("name", sorted(p.stem for p in MAPS_DIR.glob("*.toml")))
def test_r_hw_1_shipped_maps_load_and_batch(name):
    regmap = load_map(name)
    assert any(q.name == "energy" for q in regmap.quantities)
    blocks = plan_reads(regmap)
    assert all(b.count <= regmap.max_registers for b in blocks)
    covered = {q.name for b in blocks for q in b.quantities}
    assert covered == {q.name for q in regmap.quantities}


def test_r_hw_1_generic_map_reads_all_four_quantities_in_one_request():
    blocks = plan_reads(load_map("generic"))
    assert len(blocks) == 1 and blocks[0].address == 0 and blocks[0].count == 10


def test_batching_respects_gap_and_size(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(
        '[meter]\nmax_registers = 6\nmax_gap = 2\n'
        '[quantities.energy]\naddress = 0\ntype = "uint32"\n'
        '[quantities.power]\naddress = 4\ntype = "uint16"\n'  # gap 2: joins
        '[quantities.voltage]\naddress = 10\ntype = "uint16"\n'  # gap 5: new block
        '[quantities.current]\naddress = 11\ntype = "uint64"\n'  # would make 5 > ... fits 6? 10..15
    )
    blocks = plan_reads(load_map(path))
    assert [(b.address, b.count) for b in blocks] == [(0, 5), (10, 5)]


def test_decode_types_word_order_scale_units(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(
        '[meter]\nword_order = "little"\n'
        '[quantities.energy]\naddress = 0\ntype = "uint32"\nscale = 0.1\nunit = "kWh"\n'
        '[quantities.current]\naddress = 2\ntype = "int16"\nunit = "mA"\n'
    )
    regmap = load_map(path)
    energy, current = sorted(regmap.quantities, key=lambda q: q.address)
    assert decode(energy, [0x0002, 0x0001]) == pytest.approx(0x00010002 * 0.1 * 1000)
    assert decode(current, [0xFFFF]) == pytest.approx(-0.001)


@pytest.mark.parametrize(
    "text",
    [
        "[quantities.power]\naddress = 0\ntype = 'float32'\n",  # no energy
        "[quantities.energy]\naddress = 0\ntype = 'float16'\n",
        "[quantities.energy]\naddress = 0\ntype = 'uint32'\nunit = 'MWh'\n",
        "[meter]\nfunction = 'coil'\n[quantities.energy]\naddress = 0\ntype = 'uint32'\n",
        "[quantities.energy]\naddress = -1\ntype = 'uint32'\n",
        "not toml [",
    ],
)
def test_bad_maps_are_driver_errors(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DriverError):
        load_map(path)


def test_unknown_map_name_lists_maps():
    with pytest.raises(DriverError, match="generic"):
        load_map("no_such_meter")


@pytest.mark.parametrize(
    "options",
    [
        {"transport": "can"},
        {"timeout_s": 0},
        {"retries": -1},
        {"device_ids": {"7": 3}},
        {"device_id": 300},
        {"transport": "rtu"},  # no serial_port: at start
    ],
)
async def test_bad_options_are_driver_errors(make_ctx, options):
    with pytest.raises(DriverError):
        meter = ModbusMeter(make_ctx(options=options))
        await meter.start()


def test_registered_as_modbus():
    assert "modbus" in registry.available("meter")


# --------------------------------------------------------------------- TCP
@pytest.fixture
async def tcp_meter():
    sim = FakeModbusMeter(unit_ids=(1, 2))
    port = await sim.serve_tcp()
    proxy = FreezableProxy(port)
    await proxy.start()
    await sim.set(1, energy_wh=12_345, power_w=50_000.0, voltage_v=400.0, current_a=125.0)
    await sim.set(2, energy_wh=7, power_w=0.0, voltage_v=0.0, current_a=0.0)
    yield sim, proxy
    await proxy.stop()
    await sim.stop()


async def test_r_hw_1_tcp_reads_and_follows_changes(tcp_meter, make_ctx):
    sim, proxy = tcp_meter
    meter = registry.load(
        "meter", "modbus",
        make_ctx(options={"host": "127.0.0.1", "port": proxy.port, "device_ids": {"1": 1, "2": 2},
                          "timeout_s": 0.3}),
    )
    await meter.start()
    try:
        assert await meter.read(1) == MeterReading(12_345, 50_000.0, 400.0, 125.0)
        assert (await meter.read(2)).energy_wh == 7
        before = meter.requests
        await meter.read(1)
        assert meter.requests - before == 1  # energy, power, voltage, current: one request
        await sim.set(1, energy_wh=12_400, power_w=49_000.0)
        reading = await meter.read(1)
        assert (reading.energy_wh, reading.power_w) == (12_400, 49_000.0)
        with pytest.raises(DriverError):
            await meter.read(3)
    finally:
        await meter.close()


async def test_r_hw_1_tcp_no_answer_is_timeout_then_recovers(tcp_meter, make_ctx):
    sim, proxy = tcp_meter
    meter = ModbusMeter(make_ctx(options={"port": proxy.port, "timeout_s": 0.2, "retries": 1}))
    await meter.start()
    try:
        assert (await meter.read(1)).energy_wh == 12_345
        proxy.frozen = True
        t0 = time.monotonic()
        with pytest.raises(DriverTimeoutError):
            await meter.read(1)
        assert time.monotonic() - t0 < 2.0
        await sim.set(1, energy_wh=12_500)
        proxy.frozen = False
        assert (await meter.read(1)).energy_wh == 12_500
    finally:
        await meter.close()


async def test_r_hw_1_tcp_server_gone_is_comm_error_then_recovers(tcp_meter, make_ctx):
    sim, proxy = tcp_meter
    meter = ModbusMeter(make_ctx(options={"port": proxy.port, "timeout_s": 0.3}))
    await meter.start()
    try:
        await meter.read(1)
        port = proxy.target_port
        await sim.stop()
        with pytest.raises(DriverCommunicationError):
            await meter.read(1)
        await sim.serve_tcp(port)
        assert (await meter.read(1)).energy_wh == 12_345
    finally:
        await meter.close()


async def test_r_hw_1_unknown_unit_is_comm_error(tcp_meter, make_ctx):
    _, proxy = tcp_meter
    meter = ModbusMeter(make_ctx(options={"port": proxy.port, "device_id": 9, "timeout_s": 0.3}))
    await meter.start()
    try:
        with pytest.raises(DriverCommunicationError):
            await meter.read(1)
    finally:
        await meter.close()


async def test_r_hw_1_ocmf_signed_reading(tcp_meter, make_ctx):
    sim, proxy = tcp_meter
    meter = ModbusMeter(make_ctx(options={"port": proxy.port, "timeout_s": 0.3}))
    await meter.start()
    try:
        assert await meter.read_ocmf(1) is None
        signed = "OCMF|" + '{"FV":"1.0","RD":[{"RV":12.345,"RU":"kWh"}]}' * 4 + '|{"SD":"3045"}'
        await sim.set(1, ocmf=signed)
        assert await meter.read_ocmf(1) == signed
    finally:
        await meter.close()


async def test_meter_not_running_at_start_is_not_fatal(make_ctx):
    from fake_modbus import free_port

    port = free_port()
    meter = ModbusMeter(make_ctx(options={"port": port, "timeout_s": 0.2}))
    await meter.start()
    try:
        with pytest.raises(DriverCommunicationError):
            await meter.read(1)
        sim = FakeModbusMeter()
        await sim.serve_tcp(port)
        await sim.set(1, energy_wh=99)
        try:
            assert (await meter.read(1)).energy_wh == 99
        finally:
            await sim.stop()
    finally:
        await meter.close()


# --------------------------------------------------------------------- RTU
@pytest.fixture
async def rtu_pair(tmp_path):
    if not SocatPair.available():
        pytest.skip("socat is not installed")
    pair = SocatPair(tmp_path)
    pair.start()
    sim = FakeModbusMeter(unit_ids=(1, 2))
    await sim.serve_rtu(pair.a)
    await sim.set(1, energy_wh=500, power_w=1000.0, voltage_v=500.0, current_a=2.0)
    yield sim, pair
    await sim.stop()
    pair.stop()


async def test_r_hw_1_rtu_reads_changes_timeout_and_recovery(rtu_pair, make_ctx):
    sim, pair = rtu_pair
    meter = registry.load(
        "meter", "modbus",
        make_ctx(options={"transport": "rtu", "serial_port": pair.b, "baudrate": 115200,
                          "timeout_s": 0.3, "retries": 0}),
    )
    await meter.start()
    try:
        assert await meter.read(1) == MeterReading(500, 1000.0, 500.0, 2.0)
        await sim.set(1, energy_wh=501)
        assert (await meter.read(1)).energy_wh == 501
        await sim.stop()  # nobody answers on the line any more
        with pytest.raises(DriverTimeoutError):
            await meter.read(1)
        await sim.serve_rtu(pair.a)
        await sim.set(1, energy_wh=502)
        for _ in range(20):  # the line may still hold a stale frame: a read or two may fail
            try:
                reading = await meter.read(1)
                break
            except DriverCommunicationError:
                await asyncio.sleep(0.05)
        assert reading.energy_wh == 502
    finally:
        await meter.close()
