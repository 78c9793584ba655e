"""The WebSocket link to the CSMS: connect, run one ChargePoint, reconnect forever.

URL = SupervisionUrl + "/" + BoxIdentifier (read at each attempt, so a changed
key applies on the next connection), subprotocol ``ocpp1.6``, WebSocket pings
every WebSocketPingInterval seconds (0 = off). Between attempts it waits the
randomised, capped back-off of ``controller.core.backoff`` (R-BOOT 4).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ..core.backoff import reconnect_delay
from ..core import events as ev
from .charge_point import CallErrorReply, CorePort, EvseChargePoint
from .security_profile import ConnectOptions, ProfileUnusableError, connect_options, security_event_for

log = logging.getLogger(__name__)


def error_code_of(e: BaseException) -> str | None:
    """The CALLERROR code of a failed call, or None when the link (not the CSMS) failed."""
    return e.code if isinstance(e, CallErrorReply) else None


class CsmsLink:
    """One socket at a time; ``runtime`` gets link_up/link_down around each."""

    def __init__(
        self,
        runtime: Any,
        port: CorePort,
        keys: Any,
        *,
        response_timeout_s: float = 30.0,
        reconnect_max_s: float = 60.0,
        rand: Callable[[], float] = random.random,
        on_state: Callable[[str], None] | None = None,
        security: Any = None,
        report: Callable[[object], None] = lambda _e: None,
    ) -> None:
        self.runtime = runtime
        self.port = port
        self.keys = keys
        self.response_timeout_s = response_timeout_s
        self.reconnect_max_s = reconnect_max_s
        self.rand = rand
        self.cp: EvseChargePoint | None = None
        self.ws: ClientConnection | None = None
        self._gone = asyncio.Event()
        self.failures = 0
        self.on_state = on_state or (lambda _s: None)
        self.security = security  # controller.security.certs.CertificateStore (profiles 2, 3)
        self.report = report  # core events: ProfileConnected/ProfileFailed/SecurityEventOccurred

    def url(self) -> str:
        base = (self.keys.get("SupervisionUrl") or "").rstrip("/")
        return f"{base}/{self.keys.get('BoxIdentifier')}"

    def _options(self, profile: int) -> ConnectOptions:
        box = str(self.keys.get("BoxIdentifier"))
        root = client = None
        if self.security is not None and profile >= 2:  # profiles 0/1: no certificate (nor cryptography)
            root = self.security.root_bundle_path("CentralSystemRootCertificate")
            client = self.security.client_cert_paths()
        return connect_options(profile, self.url(), box, self.keys.get("AuthorizationKey"), root, client)

    async def run(self) -> None:
        while True:
            url = self.url()
            profile = int(self.keys.get_int("SecurityProfile") or 0)
            ping = int(self.keys.get_int("WebSocketPingInterval") or 0) or None
            opened = False
            try:
                self.on_state("connecting")
                options = self._options(profile)
                url = options.url
                async with connect(
                    url,
                    subprotocols=[websockets.Subprotocol("ocpp1.6")],
                    ping_interval=ping,
                    ping_timeout=ping,
                    open_timeout=10,
                    proxy=None,
                    compression=None,
                    **options.kwargs,
                ) as ws:
                    if ws.subprotocol != "ocpp1.6":
                        log.error("CSMS did not accept subprotocol ocpp1.6 (got %r)", ws.subprotocol)
                        raise ConnectionError("no ocpp1.6 subprotocol")
                    self.failures = 0
                    opened = True
                    self.report(ev.ProfileConnected(profile))
                    await self._serve(ws)
            except asyncio.CancelledError:
                raise
            except ProfileUnusableError as e:
                log.error("CSMS link: %s", e)
                self.report(ev.ProfileFailed(profile, str(e)))
            except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed, TimeoutError, ConnectionError) as e:
                log.warning("CSMS link to %s: %s", url, e or e.__class__.__name__)
                if not opened:
                    event = security_event_for(e)
                    if event is not None:
                        self.report(ev.SecurityEventOccurred(event, str(e)[:255]))
                    self.report(ev.ProfileFailed(profile, str(e)[:255]))
            except Exception:  # noqa: BLE001 - never let the link die
                log.exception("CSMS link to %s failed", url)
            delay = reconnect_delay(self.failures, self.rand(), cap_s=self.reconnect_max_s)
            self.failures += 1
            log.info("reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _serve(self, ws: ClientConnection) -> None:
        cp = EvseChargePoint(str(self.keys.get("BoxIdentifier")), ws, self.port, self.response_timeout_s)
        self.cp, self.ws = cp, ws
        self._gone = asyncio.Event()
        log.info("connected to %s", self.url())
        self.runtime.link_up(self)
        try:
            await cp.start()
        except ConnectionClosed as e:
            normal = e.rcvd is not None and e.rcvd.code == 1000
            log.log(logging.INFO if normal else logging.WARNING, "link closed: %s", e)
        finally:
            self.cp = self.ws = None
            self._gone.set()  # a call still waiting on this socket ends now
            self.runtime.link_down(self)

    async def send_call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        cp, gone = self.cp, self._gone
        if cp is None:
            raise ConnectionError("not connected")
        call = asyncio.ensure_future(cp.send_call(action, payload))
        waiter = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait({call, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not call.done():
                call.cancel()
        if not call.done() or call.cancelled():  # cancel() above only asked: it is not done yet
            raise ConnectionError(f"link lost while waiting for the {action} answer")
        return call.result()

    def reconnect(self) -> None:
        """Close the socket; the next connection uses the keys as they are now."""
        if self.ws is not None:
            asyncio.ensure_future(self.ws.close(1000, "security profile changed"))

    def set_ping_interval(self, interval_s: int) -> None:
        if self.ws is not None and self.ws.ping_interval is not None and interval_s > 0:
            self.ws.ping_interval = interval_s
            self.ws.ping_timeout = interval_s
