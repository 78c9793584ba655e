"""Real stacks the contract suite starts for real backends: (kind, name) -> an async
context manager taking the test's tmp_path and yielding the backend's options."""

from __future__ import annotations

import asyncio
import contextlib
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


class FakeCabinet:
    """A power cabinet in the map of ``drivers/power/modbus_cabinet.py``, served by a
    pymodbus server (``RegisterDevices``) on 127.0.0.1; a task plays the cabinet:
    it follows the enable flag and the set-point written by the driver (output =
    the set-point, capped by the capability, while enabled and plugged; 0 W else).
    """

    VOLTAGE_V = 400.0

    def __init__(self, connectors: dict[int, int], unit_id: int = 1) -> None:
        from fake_modbus import RegisterDevices

        self.connectors = connectors  # connector id -> max power W
        self.unit = unit_id
        self.devices = RegisterDevices(unit_ids=(unit_id,))
        self._task: Any = None

    async def serve(self, port: int | None = None) -> int:
        from drivers.power.modbus_cabinet import MAP_VERSION, Reg, base

        port = await self.devices.serve_tcp(port)
        await self.devices.write(self.unit, Reg.VERSION, [MAP_VERSION, max(self.connectors)])
        for cid, max_w in self.connectors.items():
            b = base(cid)
            await self.devices.write(self.unit, b, [max_w >> 16, max_w & 0xFFFF, 1000, max_w // 400, 4])
            await self.devices.write(self.unit, b + Reg.SOC, [0xFFFF])
        self._task = asyncio.create_task(self._play())
        return port

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.devices.stop()

    async def registers(self, address: int, count: int) -> list[int]:
        server = self.devices.server
        assert server is not None
        return list(await server.async_getValues(self.unit, 3, address, count))

    async def _play(self) -> None:
        from drivers.power.modbus_cabinet import Reg, base

        while True:
            for cid, max_w in self.connectors.items():
                b = base(cid)
                regs = await self.registers(b, Reg.ENABLE + 1)
                enabled, plugged = regs[Reg.ENABLE] == 1, regs[Reg.PLUG] == 1
                offered = min((regs[Reg.SETPOINT] << 16) | regs[Reg.SETPOINT + 1], max_w)
                power = float(offered) if enabled and plugged else 0.0
                voltage = self.VOLTAGE_V if enabled and plugged else 0.0
                values = [*self._f(voltage), *self._f(power / self.VOLTAGE_V), *self._f(power), *self._f(offered)]
                if regs[Reg.VOLTAGE : Reg.VOLTAGE + 8] != values:
                    await self.devices.write(self.unit, b + Reg.VOLTAGE, values)
            await asyncio.sleep(0.01)

    @staticmethod
    def _f(value: float) -> list[int]:
        from fake_modbus import words

        return words("f", value)

    # ------------------------------------------------------------- the outside world
    async def plug(self, cid: int, plugged: bool = True) -> None:
        from drivers.power.modbus_cabinet import Reg, base

        await self.devices.write(self.unit, base(cid) + Reg.PLUG, [int(plugged)])

    async def set_faults(self, cid: int, word: int) -> None:
        from drivers.power.modbus_cabinet import Reg, base

        await self.devices.write(self.unit, base(cid) + Reg.FAULTS, [word >> 16, word & 0xFFFF])

    async def set_ev(self, cid: int, *, soc: int | None = None, mac: bytes | None = None,
                     contract_id: str | None = None) -> None:
        from fake_modbus import text_words

        from drivers.power.modbus_cabinet import CONTRACT_ID_REGISTERS, Reg, base

        b = base(cid)
        if soc is not None:
            await self.devices.write(self.unit, b + Reg.SOC, [soc])
        if mac is not None:
            await self.devices.write(self.unit, b + Reg.EV_MAC, [int.from_bytes(mac[i : i + 2], "big") for i in (0, 2, 4)])
        if contract_id is not None:
            regs = text_words(contract_id)
            await self.devices.write(self.unit, b + Reg.CONTRACT_ID, regs + [0] * (CONTRACT_ID_REGISTERS - len(regs)))


@asynccontextmanager
async def modbus_cabinet_tcp(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    cabinet = FakeCabinet({1: 60_000, 2: 50_000})
    port = await cabinet.serve()
    await cabinet.plug(1)
    try:
        yield {"host": "127.0.0.1", "port": port, "device_id": 1, "poll_interval_s": 0.05, "timeout_s": 0.5}
    finally:
        await cabinet.stop()


REAL_STACKS["power", "modbus_cabinet"] = modbus_cabinet_tcp


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
