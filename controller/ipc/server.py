"""The daemon's side of the HMI socket (a local Unix socket, JSON lines).

Every connected screen gets the current :class:`~controller.ipc.messages.Snapshot`
on connect and again whenever it changes (checked 4 times a second: cheap, and
the charging screen's clock only moves once a second). Intents from the screen
become core events (``Touched`` -> ``ev.Touched``). A screen that disconnects,
sends garbage or crashes costs the controller nothing but that connection:
charging never depends on the HMI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from ..core import events as ev
from . import messages as m

log = logging.getLogger(__name__)

PUSH_INTERVAL_S = 0.25


def to_snapshot(state: dict[str, Any], *, screen: tuple[int, int], idle_s: float) -> m.Snapshot:
    """The core's ``snapshot()`` dict -> the HMI message."""
    connectors = []
    for c in state["connectors"]:
        cost = c.get("cost")
        err = c.get("error")
        connectors.append(m.ConnectorView(
            id=int(c["id"]), type=str(c.get("type", "")), status=str(c["status"]),
            plugged=bool(c.get("plugged")), energy_wh=float(c.get("energy_wh") or 0),
            power_w=float(c.get("power_w") or 0), soc=c.get("soc"), duration_s=c.get("duration_s"),
            cost=None if not cost else m.Cost(str(cost.get("currency", "")), float(cost["total_cost"])),
            error=None if not err else m.Fault(str(err.get("error_code")), err.get("dtc"), err.get("info")),
            qr_url=c.get("qr_url"),
        ))
    pics = state.get("pictures") or {}

    def pic(p: dict[str, Any] | None) -> m.Picture | None:
        return None if not p else m.Picture(str(p["path"]), int(p["version"]))

    return m.Snapshot(
        link=str(state.get("link", "disconnected")), model=str(state.get("model", "")), screen=tuple(screen),
        connectors=tuple(connectors), selected_connector=int(state.get("selected_connector") or 1),
        auth_options=tuple(state.get("auth_options") or ()),
        operative=bool(state.get("station_operative", True)),
        tariff=pic(pics.get("tariff")), logo=pic(pics.get("logo")),
        screensaver=tuple(p for p in (pic(x) for x in pics.get("screensaver") or ()) if p is not None),
        idle_s=float(idle_s),
        config_error=state.get("config_error"),
    )


class HmiServer:
    def __init__(self, path: Path, runtime: Any, *, screen: tuple[int, int], idle_s: float) -> None:
        self.path = Path(path)
        self.rt = runtime
        self.screen = screen
        self.idle_s = idle_s
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._last: bytes = b""
        self._pusher: asyncio.Task[None] | None = None

    def current(self) -> bytes:
        return m.encode(to_snapshot(self.rt.core.snapshot(), screen=self.screen, idle_s=self.idle_s))

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_socket():
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=m.MAX_LINE)
        os.chmod(self.path, 0o660)
        self._pusher = asyncio.ensure_future(self._push_loop())

    async def close(self) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
        for w in list(self._clients):
            w.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _push_loop(self) -> None:
        while True:
            await asyncio.sleep(PUSH_INTERVAL_S)
            if not self._clients:
                continue
            try:
                line = self.current()
            except Exception:  # noqa: BLE001 - a view bug must not stop the daemon
                log.exception("HMI snapshot failed")
                continue
            if line != self._last:
                self._last = line
                for w in list(self._clients):
                    self._send(w, line)

    def _send(self, writer: asyncio.StreamWriter, line: bytes) -> None:
        transport = writer.transport
        if transport.is_closing() or transport.get_write_buffer_size() > 4 * m.MAX_LINE:
            # a screen that does not read is dropped, never waited for
            writer.close()
            self._clients.discard(writer)
            return
        writer.write(line)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            self._send(writer, self.current())
            while line := await reader.readline():
                try:
                    msg = m.decode(line)
                except m.ProtocolError as e:
                    log.warning("HMI sent a bad line (%s); closing it", e)
                    break
                self._intent(msg)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    def _intent(self, msg: m.Message) -> None:
        if isinstance(msg, m.Touched):
            if msg.connector_id in self.rt.core.connectors:
                self.rt.dispatch(ev.Touched(msg.connector_id))
        elif isinstance(msg, m.Awake):
            pass  # the HMI runs its own idle timer; nothing to decide here
        else:
            log.warning("HMI sent %s; ignored", type(msg).__name__)
        self._last = b""  # answer with a fresh snapshot on the next tick


__all__ = ["HmiServer", "to_snapshot"]
