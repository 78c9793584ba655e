"""The daemon side of the control socket: simulate the outside world, report status.

``sim`` commands reach the test affordances of the mock backends (plug a car,
present a badge, raise a DTC, cut the mains); with a real backend that has no
such hook the command fails with a clear message. ``touch`` goes to the core
(the connector shown on screen) and ``clock-advance`` to the simulated clock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from ..core import events as ev
from . import protocol

log = logging.getLogger(__name__)


class RigError(Exception):
    pass


class ControlServer:
    def __init__(self, path: Path, runtime: Any) -> None:
        self.path = path
        self.rt = runtime
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_socket():
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._client, path=str(self.path))
        os.chmod(self.path, 0o660)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = {"ok": True, **self.execute(protocol.decode(line))}
                except (RigError, ValueError, KeyError, TypeError) as e:
                    answer = {"ok": False, "error": str(e) or e.__class__.__name__}
                writer.write(protocol.encode(answer))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _hook(self, kind: str, name: str) -> Any:
        driver = self.rt.drivers[kind]
        hook = getattr(driver, name, None)
        if hook is None:
            raise RigError(f"the {kind} driver {type(driver).__name__} cannot simulate '{name}'")
        return hook

    def _connector(self, msg: dict[str, Any]) -> int:
        cid = int(msg["connector"])
        if cid not in self.rt.core.connectors:
            raise RigError(f"no connector {cid}; this model has {sorted(self.rt.core.connectors)}")
        return cid

    def execute(self, msg: dict[str, Any]) -> dict[str, Any]:
        command = msg.get("cmd")
        if command == "status":
            return {"status": self.rt.core.snapshot()}
        if command == "plug":
            self._hook("power", "plug")(self._connector(msg))
        elif command == "unplug":
            self._hook("power", "unplug")(self._connector(msg))
        elif command == "ev":
            cid = self._connector(msg)
            soc = msg.get("soc")
            if soc is not None and not 0 <= int(soc) <= 100:
                raise RigError("--soc must be 0..100")
            self._hook("power", "set_ev")(cid, soc=None if soc is None else int(soc), mac=msg.get("mac"))
        elif command == "badge":
            id_tag = str(msg["id_tag"])
            if not 0 < len(id_tag) <= 20:
                raise RigError("an idTag is 1..20 characters")
            self._hook("rfid", "present")(id_tag)
        elif command == "fault":
            name = "clear_fault" if msg.get("clear") else "raise_fault"
            self._hook("platform", name)(str(msg["dtc"]), int(msg.get("connector", 0)))
        elif command == "power-fail":
            self._hook("platform", "power_fail")()
        elif command == "touch":
            self.rt.dispatch(ev.Touched(self._connector(msg)))
        elif command == "block-loop":  # test rigs only: prove the watchdog sees a hung loop
            if getattr(self.rt.clock, "advance", None) is None:
                raise RigError("block-loop needs [rig] sim_clock = true")
            time.sleep(min(float(msg["seconds"]), 30.0))
        elif command == "clock-advance":
            advance = getattr(self.rt.clock, "advance", None)
            if advance is None:
                raise RigError("the daemon runs on the system clock; set [rig] sim_clock = true")
            advance(float(msg["seconds"]))
            self.rt.dispatch(ev.Tick())  # due timers fire before this command is answered
        else:
            raise RigError(f"unknown command {command!r}; known: {', '.join(protocol.COMMANDS)}")
        return {}
