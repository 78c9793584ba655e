"""Test doubles for the Modbus backends: a simulated DC meter (and any register
device) served by pymodbus on 127.0.0.1 (TCP) or on a socat pty pair (RTU), and a
TCP proxy that can stop answering.

Used by tests/drivers, tests/integration/test_real_drivers.py and bench/drivers.py.
The meter layout is ``drivers/meter/maps/generic.toml``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

REGISTERS = 1024  # every simulated device: registers 0..1023, all zero at start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def words(fmt: str, value: float | int) -> list[int]:
    """Big-endian struct value as 16-bit registers (high word first)."""
    raw = struct.pack(">" + fmt, value)
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def text_words(text: str) -> list[int]:
    raw = text.encode()
    if len(raw) % 2:
        raw += b"\0"
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


class RegisterDevices:
    """A pymodbus server (TCP or RTU) holding a register bank per unit id."""

    def __init__(self, unit_ids: tuple[int, ...] = (1,)) -> None:
        self.unit_ids = unit_ids
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self._task: asyncio.Task | None = None
        self._shadow: dict[int, dict[int, int]] = {u: {} for u in unit_ids}

    def _devices(self) -> list[SimDevice]:
        return [
            SimDevice(id=u, simdata=[SimData(0, count=REGISTERS, values=0, datatype=DataType.REGISTERS)])
            for u in self.unit_ids
        ]

    async def serve_tcp(self, port: int | None = None) -> int:
        port = port or free_port()
        self.server = ModbusTcpServer(self._devices(), address=("127.0.0.1", port))
        await self._run()
        return port

    async def serve_rtu(self, tty: str) -> None:
        self.server = ModbusSerialServer(self._devices(), port=tty, baudrate=115200, timeout=0.1)
        await self._run()

    async def _run(self) -> None:
        assert self.server is not None
        self._task = asyncio.create_task(self.server.serve_forever())
        for _ in range(200):
            await asyncio.sleep(0.01)
            if getattr(self.server, "transport", None) is not None or self._task.done():
                break
        await asyncio.sleep(0.05)
        for unit, regs in self._shadow.items():  # a restarted server keeps its values
            for address, value in regs.items():
                await self.server.async_setValues(unit, 3, address, [value])

    async def stop(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.shutdown()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self.server = self._task = None

    async def write(self, unit: int, address: int, values: list[int]) -> None:
        for i, v in enumerate(values):
            self._shadow[unit][address + i] = v
        if self.server is not None:
            await self.server.async_setValues(unit, 3, address, values)


class FakeModbusMeter(RegisterDevices):
    """DC meters in the generic map's layout, one per unit id."""

    async def set(
        self,
        unit: int = 1,
        *,
        energy_wh: int | None = None,
        power_w: float | None = None,
        voltage_v: float | None = None,
        current_a: float | None = None,
        ocmf: str | None = None,
    ) -> None:
        if energy_wh is not None:
            await self.write(unit, 0, words("Q", energy_wh))
        for address, value in ((4, power_w), (6, voltage_v), (8, current_a)):
            if value is not None:
                await self.write(unit, address, words("f", value))
        if ocmf is not None:
            await self.write(unit, 100, [len(ocmf.encode()), *text_words(ocmf)])


class FreezableProxy:
    """127.0.0.1 TCP proxy; ``frozen = True`` swallows traffic: the device stops answering."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(4096):
                    if not self.frozen:
                        dst.write(data)
                        await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        for coro in (pump(reader, up_w), pump(up_r, writer)):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()


class SocatPair:
    """A socat pty pair: ``a`` and ``b`` are the two ends' symlinks."""

    def __init__(self, directory: Path) -> None:
        self.a = str(directory / "ttyA")
        self.b = str(directory / "ttyB")
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("socat") is not None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not (os.path.exists(self.a) and os.path.exists(self.b)):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("socat did not create the pty pair")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
