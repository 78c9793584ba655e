"""Run the real daemon (``python -m controller run``) as a subprocess for integration tests.

The daemon uses every mock driver, its own state directory and control socket
under the test's tmp_path, and a simulated clock (``[rig] sim_clock = true``)
so a test can make two minutes pass without waiting. The rig control socket is
the same one ``evsectl sim`` uses.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from controller.rig import client

REPO = Path(__file__).resolve().parents[2]


def settings_text(
    url: str, state_dir: Path, socket: Path, *, model: str = "EVlink Pro DC 180",
    box: str = "CP-TEST", keys: dict[str, Any] | None = None, extra: str = "",
) -> str:
    key_lines = []
    for k, v in {"MinimumStatusDuration": 0, **(keys or {})}.items():
        if isinstance(v, bool):
            key_lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, int):
            key_lines.append(f"{k} = {v}")
        else:
            key_lines.append(f'{k} = "{v}"')
    keys_toml = "\n".join(key_lines)
    return f"""\
[station]
model = "{model}"
serial_number = "SN-TEST-1"
state_dir = "{state_dir}"

[ocpp]
supervision_url = "{url}"
box_identifier = "{box}"
response_timeout_s = 5
reconnect_max_s = 1

[ocpp.keys]
{keys_toml}

[drivers]
meter = "mock"
rfid = "mock"
power = "mock"
platform = "mock"

[rig]
control_socket = "{socket}"
sim_clock = true

[log]
level = "DEBUG"
{extra}
"""


class Daemon:
    """One daemon subprocess; start/stop/kill/restart keep the same state directory."""

    def __init__(self, tmp: Path, url: str, **settings: Any) -> None:
        self.tmp = tmp
        self.state_dir = tmp / "state"
        self.socket = tmp / "control.sock"
        self.config = tmp / "evsectl.toml"
        self.config.write_text(settings_text(url, self.state_dir, self.socket, **settings))
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = tmp / "daemon.log"
        self.runs = 0

    def rewrite(self, url: str, **settings: Any) -> None:
        self.config.write_text(settings_text(url, self.state_dir, self.socket, **settings))

    async def start_booted(self, csms: Any, box: str = "CP-TEST", timeout_s: float = 15.0) -> None:
        """Start, then wait for the BootNotification at ``csms`` and the link to be connected."""
        mark = csms.mark()
        await self.start()
        await csms.wait_for("BootNotification", identity=box, since=mark, timeout=timeout_s)
        await self.until(lambda s: s["link"] == "connected", what="boot accepted")

    async def start(self, wait_socket: bool = True) -> None:
        self.runs += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== run {self.runs} =====\n".encode())
        log.flush()
        env = {**os.environ, "EVSECTL_CONFIG": str(self.config), "PYTHONUNBUFFERED": "1"}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller", "run", "--config", str(self.config),
            stdout=log, stderr=log, env=env, cwd=str(REPO),
        )
        log.close()
        if wait_socket:
            await self.wait_ready()

    async def wait_ready(self, timeout_s: float = 15.0) -> None:
        end = time.monotonic() + timeout_s
        while True:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.status()
                return
            except (client.NotRunningError, OSError):
                if time.monotonic() > end:
                    raise AssertionError(f"daemon control socket never came up:\n{self.log_tail()}") from None
                await asyncio.sleep(0.02)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # ---------------------------------------------------------------- rig
    def rig(self, **message: Any) -> dict[str, Any]:
        return client.request(self.socket, message)

    def status(self) -> dict[str, Any]:
        return self.rig(cmd="status")["status"]

    def connector(self, cid: int) -> dict[str, Any]:
        return next(c for c in self.status()["connectors"] if c["id"] == cid)

    def plug(self, cid: int) -> None:
        self.rig(cmd="plug", connector=cid)

    def unplug(self, cid: int) -> None:
        self.rig(cmd="unplug", connector=cid)

    def badge(self, id_tag: str) -> None:
        self.rig(cmd="badge", id_tag=id_tag)

    def touch(self, cid: int) -> None:
        self.rig(cmd="touch", connector=cid)

    def fault(self, dtc: str, clear: bool = False, connector: int = 0) -> None:
        self.rig(cmd="fault", dtc=dtc, clear=clear, connector=connector)

    def advance(self, seconds: float) -> None:
        self.rig(cmd="clock-advance", seconds=seconds)

    async def until(self, predicate: Any, timeout_s: float = 10.0, what: str = "condition") -> Any:
        """Poll the daemon's status until ``predicate(status)`` is truthy."""
        end = time.monotonic() + timeout_s
        while True:
            status = self.status()
            result = predicate(status)
            if result:
                return result
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}; status: {status}\n{self.log_tail(30)}")
            await asyncio.sleep(0.02)

    # ---------------------------------------------------------------- life
    async def stop(self, timeout_s: float = 15.0) -> int:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"daemon ignored SIGTERM:\n{self.log_tail()}") from None

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    async def wait_exit(self, timeout_s: float = 15.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout_s)


async def kill_all(daemons: list[Daemon]) -> None:
    """A fixture's teardown: SIGKILL every daemon still running."""
    for d in daemons:
        if d.proc is not None and d.proc.returncode is None:
            d.proc.kill()
            await d.proc.wait()
