"""Real stacks the contract suite starts for real backends: (kind, name) -> an async
context manager taking the test's tmp_path and yielding the backend's options."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

StackFactory = Callable[[Path], AbstractAsyncContextManager[dict[str, Any]]]


@asynccontextmanager
async def modbus_meter_tcp(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    from fake_modbus import FakeModbusMeter

    sim = FakeModbusMeter(unit_ids=(1, 2))
    port = await sim.serve_tcp()
    await sim.set(1, energy_wh=1000, power_w=10.0, voltage_v=400.0, current_a=0.025)
    await sim.set(2, energy_wh=2000, power_w=0.0, voltage_v=0.0, current_a=0.0)
    try:
        yield {"host": "127.0.0.1", "port": port, "device_ids": {"1": 1, "2": 2}, "timeout_s": 0.5}
    finally:
        await sim.stop()


REAL_STACKS: dict[tuple[str, str], StackFactory] = {
    ("meter", "modbus"): modbus_meter_tcp,
}


@asynccontextmanager
async def pcscd_with_virtual_reader(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    import pytest
    from fake_pcsc import Pcscd, why_unavailable

    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    daemon = Pcscd()
    daemon.start()
    try:
        yield {"wait_s": 0.2}
    finally:
        daemon.stop()


REAL_STACKS["rfid", "pcsc"] = pcscd_with_virtual_reader


@asynccontextmanager
async def gpiozero_mock_factory(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    yield {"pin_factory": "mock", "door_pin": 27, "contactor_pins": {"1": 22}, "run": lambda argv: None}


REAL_STACKS["platform", "gpiozero"] = gpiozero_mock_factory
