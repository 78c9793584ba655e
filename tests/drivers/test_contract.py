"""Every registered backend of every kind keeps the contract of drivers.interfaces.

Parametrized over whatever is installed: a new backend is tested by registering
it. A backend with a real stack the tests can start here (``real_stacks``: a
pymodbus server, pcscd with a virtual card, gpiozero's MockFactory...) runs
against it; any other backend needs its hardware and runs only with
``EVSECTL_TEST_HARDWARE=1`` (and options for the rig in the context).
"""

from __future__ import annotations

import math
import os
from contextlib import AsyncExitStack

import pytest

from real_stacks import REAL_STACKS

from drivers import registry
from drivers.interfaces import (
    DRIVER_KINDS,
    DriverError,
    Meter,
    MeterReading,
    Platform,
    PowerStage,
    PowerStatus,
    RfidReader,
)

CONTRACTS = {"meter": Meter, "rfid": RfidReader, "power": PowerStage, "platform": Platform}
BACKENDS = [(kind, name) for kind in DRIVER_KINDS for name in registry.available(kind)]
NO_SUCH_CONNECTOR = 99


def backends_of(kind: str) -> list[tuple[str, str]]:
    return [(k, n) for k, n in BACKENDS if k == kind]


def ids(params: list[tuple[str, str]]) -> list[str]:
    return [f"{k}-{n}" for k, n in params]


@pytest.fixture
async def backend(request, make_ctx):
    """The backend (kind, name) of the test's parameter, started; closed afterwards."""
    kind, name = request.param
    async with AsyncExitStack() as stack:
        options: dict = {"exec": lambda path, argv: None}  # a platform must not reboot
        if (kind, name) in REAL_STACKS:
            options = await stack.enter_async_context(
                REAL_STACKS[kind, name](request.getfixturevalue("tmp_path"))
            )
        elif name != "mock" and os.environ.get("EVSECTL_TEST_HARDWARE") != "1":
            pytest.skip(f"{kind}/{name} needs hardware (EVSECTL_TEST_HARDWARE=1)")
        ctx = make_ctx(options=options)
        driver = registry.load(kind, name, ctx)
        await driver.start()
        yield kind, driver, ctx
        await driver.close()


every_backend = pytest.mark.parametrize("backend", BACKENDS, ids=ids(BACKENDS), indirect=True)


def test_r_hw_5_all_four_kinds_have_backends():
    assert {kind for kind, _ in BACKENDS} == set(DRIVER_KINDS)


@every_backend
async def test_r_hw_5_backend_provides_its_contract(backend):
    kind, driver, _ = backend
    assert isinstance(driver, CONTRACTS[kind])


@every_backend
async def test_r_hw_5_close_is_idempotent_and_final(backend):
    kind, driver, ctx = backend
    await driver.close()
    await driver.close()
    cid = ctx.connectors[0].connector_id
    calls = {
        "meter": lambda: driver.read(cid),
        "power": lambda: driver.status(cid),
    }
    if kind in calls:
        with pytest.raises(DriverError):
            await calls[kind]()


@pytest.mark.parametrize(
    "backend", backends_of("meter"), ids=ids(backends_of("meter")), indirect=True
)
async def test_r_hw_1_meter_reading_types(backend):
    _, driver, ctx = backend
    for spec in ctx.connectors:
        reading = await driver.read(spec.connector_id)
        assert type(reading) is MeterReading
        assert type(reading.energy_wh) is int and reading.energy_wh >= 0
        for value in (reading.power_w, reading.voltage_v, reading.current_a):
            assert isinstance(value, float) and math.isfinite(value)
    with pytest.raises(DriverError):
        await driver.read(NO_SUCH_CONNECTOR)


@pytest.mark.parametrize(
    "backend", backends_of("power"), ids=ids(backends_of("power")), indirect=True
)
async def test_r_hw_4_power_stage_calls_and_status_types(backend):
    _, driver, ctx = backend
    for spec in ctx.connectors:
        cid = spec.connector_id
        assert await driver.set_limit(cid, 10_000.0) is None
        assert await driver.set_limit(cid, None) is None
        status = await driver.status(cid)
        assert type(status) is PowerStatus
        assert isinstance(status.plugged, bool)
        for value in (status.output_power_w, status.voltage_v, status.current_a, status.offered_w):
            assert isinstance(value, float) and math.isfinite(value)
        assert status.soc_pct is None or isinstance(status.soc_pct, int)
        assert status.ev_mac is None or isinstance(status.ev_mac, str)
        assert status.contract_id is None or isinstance(status.contract_id, str)
        assert await driver.disable(cid) is None
        assert (await driver.status(cid)).output_power_w == 0.0  # disable returns when safe
    for call in (driver.enable, driver.disable, driver.status):
        with pytest.raises(DriverError):
            await call(NO_SUCH_CONNECTOR)
    with pytest.raises(DriverError):
        await driver.set_limit(NO_SUCH_CONNECTOR, 1000.0)
