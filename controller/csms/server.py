"""A small local OCPP 1.6-J central system: a live log for humans, a recorder for tests.

Built on the central-system side of the ``ocpp`` library: one ``ocpp.v16.ChargePoint``
per WebSocket, with an ``@on`` handler for every CP → CSMS action of OCPP 1.6 and the
security extension. Tests script answers with :meth:`CentralSystem.respond`, wait for
what the charger sent with :meth:`CentralSystem.wait_for` / :meth:`~CentralSystem.wait_frame`
and send CALLs or raw frames to it with :meth:`~CentralSystem.call` /
:meth:`~CentralSystem.send_raw`.

With an ``ssl_context`` it serves ``wss://`` (security profiles 2 and 3): a small TLS
front end does each handshake by hand on memory BIOs, so that a refused handshake
still sends its TLS alert to the charger (asyncio's SSL transport drops the connection
without it) and is recorded as a ``rejected`` event; the plain WebSocket server behind
it is the same as for ``ws://``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hmac
import logging
import ssl
import uuid
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, CallResult, pack
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16 import call as v16_call
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    DataTransferStatus,
    GenericStatus,
    RegistrationStatus,
)
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from controller.csms.log_lines import describe_cp_call, describe_csms_call
from controller.csms.records import (
    CallRecord,
    ConnectionEvent,
    Direction,
    EventKind,
    Frame,
    OcppMessage,
    Recorder,
)

LOGGER = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9000
SUBPROTOCOL = "ocpp1.6"

CP_ACTIONS: frozenset[str] = frozenset(
    {
        "Authorize",
        "BootNotification",
        "DataTransfer",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "LogStatusNotification",
        "MeterValues",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
    }
)
"""Every CP → CSMS action of OCPP 1.6 plus the security extension; each has a default answer."""

LogSink = Callable[[str], None]

TLS_HANDSHAKE_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class TlsSession:
    """What the TLS front end learnt in a handshake that succeeded."""

    version: str
    cipher: str
    client_certificate: bytes | None  # DER of the charge point's certificate, if it sent one


@dataclass(frozen=True, slots=True)
class Handshake:
    """One WebSocket upgrade request as the central system judged it."""

    identity: str
    basic_auth_user: str | None  # None when there was no (readable) Basic Authorization header
    tls: TlsSession | None  # None over ws://
    status: int  # 101 when accepted, else the HTTP status of the refusal


class CsmsError(Exception):
    """Root of the errors raised by :class:`CentralSystem`."""


class NotConnectedError(CsmsError):
    """The charge point is not connected, or went away before it answered."""


class CallErrorReceived(CsmsError):
    """The charge point answered our CALL with a CALLERROR."""

    def __init__(self, code: str, description: str, details: Any) -> None:
        super().__init__(f"{code}: {description} {details or ''}".rstrip())
        self.code = code
        self.description = description
        self.details = details


class InvalidCallResultError(CsmsError):
    """The charge point answered with a CALLRESULT that breaks the OCPP 1.6 schema."""

    def __init__(self, action: str, payload: Any, cause: BaseException) -> None:
        super().__init__(f"{action} result {payload!r} is not valid OCPP 1.6: {cause}")
        self.action = action
        self.payload = payload
        self.cause = cause


def utc_now_text() -> str:
    """Current time in RFC 3339 UTC with milliseconds and ``Z``, as OCPP wants it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class ScriptedAnswer:
    """A test's answer for one action; exactly one of payload / error / no_reply is set."""

    payload: dict[str, Any] | None = None
    error: str | None = None
    description: str = ""
    no_reply: bool = False


class _Answers:
    """Default answers (policy) plus the answers a test scripted in their place."""

    def __init__(self, heartbeat_interval_s: int, rejected_tags: Collection[str]) -> None:
        self.heartbeat_interval_s = heartbeat_interval_s
        self.rejected_tags = set(rejected_tags)
        self._last_transaction_id = 0
        self._standing: dict[str, ScriptedAnswer] = {}
        self._once: dict[str, deque[ScriptedAnswer]] = {}

    def script(self, action: str, answer: ScriptedAnswer, once: bool) -> None:
        if once:
            self._once.setdefault(action, deque()).append(answer)
        else:
            self._standing[action] = answer

    def clear(self, action: str | None) -> None:
        if action is None:
            self._standing.clear()
            self._once.clear()
        else:
            self._standing.pop(action, None)
            self._once.pop(action, None)

    def take(self, action: str) -> ScriptedAnswer | None:
        """The scripted answer for the next CALL of ``action``: one-shot ones first, in order."""
        queued = self._once.get(action)
        if queued:
            return queued.popleft()
        return self._standing.get(action)

    def id_tag_info(self, id_tag: str) -> IdTagInfo:
        rejected = id_tag in self.rejected_tags
        status = AuthorizationStatus.invalid if rejected else AuthorizationStatus.accepted
        return IdTagInfo(status=status)

    def next_transaction_id(self) -> int:
        self._last_transaction_id += 1
        return self._last_transaction_id


# ---------------------------------------------------------------- one connection


class _QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The ocpp library logs every frame at INFO; we record frames ourselves, so DEBUG it is.

    Tracebacks (``logger.exception``) stay: they point at a bug in a handler.
    """

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)  # "Received a CALLError": call() raises it anyway


_OCPP_LOGGER = _QuietLogger(logging.getLogger(f"{__name__}.ocpp"), {})


@dataclass(eq=False)
class _Session:
    """One WebSocket of one charge point, and the bookkeeping of CALLs crossing it."""

    identity: str
    ws: ServerConnection
    closed: asyncio.Future[None]
    connection: _RecordingConnection | None = None
    cp: _CentralChargePoint | None = None
    incoming: dict[str, CallRecord] = field(default_factory=dict)  # uid -> CALL not answered yet
    scripted: set[str] = field(default_factory=set)  # uids answered from a ScriptedAnswer
    awaiting: set[str] = field(default_factory=set)  # uids of our own CALLs in flight
    replies: dict[str, CallResult | CallError] = field(default_factory=dict)


class _RecordingConnection:
    """The duck-typed connection an ``ocpp`` ChargePoint needs (recv/send), recording both ways."""

    def __init__(self, session: _Session, on_frame: Callable[[_Session, Direction, str], Frame]):
        self._session = session
        self._on_frame = on_frame

    async def recv(self) -> str:
        data = await self._session.ws.recv()
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        self._on_frame(self._session, "in", text)
        return text

    async def send(self, text: str) -> None:
        await self.send_frame(text)

    async def send_frame(self, text: str) -> Frame:
        # Record first so the seq order is the wire order even if the reply is quick.
        frame = self._on_frame(self._session, "out", text)
        await self._session.ws.send(text)
        return frame


class _CentralChargePoint(ChargePoint):  # type: ignore[misc]
    """Central-system side of one charge point: default answers, unless a test scripted one."""

    def __init__(
        self,
        session: _Session,
        connection: _RecordingConnection,
        answers: _Answers,
        on_no_reply: Callable[[_Session, Call], None],
    ):
        super().__init__(session.identity, connection, response_timeout=3600, logger=_OCPP_LOGGER)
        self._session = session
        self._answers = answers
        self._on_no_reply = on_no_reply

    async def route_message(self, raw_msg: str) -> None:
        message = _parse(raw_msg)
        if message is None:
            return  # recorded as bad_frame; the library would only log a traceback
        if isinstance(message, Call):
            scripted = self._answers.take(message.action)
            if scripted is not None:
                await self._send_scripted(message, scripted)
                return
        elif not isinstance(message.unique_id, str) or message.unique_id not in self._session.awaiting:
            return  # answer to a raw frame a test sent: recorded, nobody waits for it
        await super().route_message(raw_msg)

    async def _send_scripted(self, message: Call, answer: ScriptedAnswer) -> None:
        if answer.no_reply:
            self._on_no_reply(self._session, message)
            return
        reply: CallResult | CallError
        if answer.error is not None:
            reply = CallError(message.unique_id, answer.error, answer.description, {})
        else:
            payload = dict(answer.payload or {})
            if message.action == Action.boot_notification:
                payload = {
                    "currentTime": utc_now_text(),
                    "interval": self._answers.heartbeat_interval_s,
                    **payload,
                }
            reply = message.create_call_result(payload)
        self._session.scripted.add(message.unique_id)
        assert self._session.connection is not None
        await self._session.connection.send(pack(reply))

    # Default answers. Handlers stay synchronous: the receive loop awaits each one.

    @on(Action.boot_notification)
    def on_boot_notification(self, **kwargs: Any) -> call_result.BootNotification:
        return call_result.BootNotification(
            current_time=utc_now_text(),
            interval=self._answers.heartbeat_interval_s,
            status=RegistrationStatus.accepted,
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **kwargs: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=utc_now_text())

    @on(Action.authorize)
    def on_authorize(self, id_tag: str, **kwargs: Any) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=self._answers.id_tag_info(id_tag))

    @on(Action.start_transaction)
    def on_start_transaction(self, id_tag: str, **kwargs: Any) -> call_result.StartTransaction:
        return call_result.StartTransaction(
            transaction_id=self._answers.next_transaction_id(),
            id_tag_info=self._answers.id_tag_info(id_tag),
        )

    @on(Action.stop_transaction)
    def on_stop_transaction(self, **kwargs: Any) -> call_result.StopTransaction:
        return call_result.StopTransaction(
            id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted)
        )

    @on(Action.status_notification)
    def on_status_notification(self, **kwargs: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @on(Action.meter_values)
    def on_meter_values(self, **kwargs: Any) -> call_result.MeterValues:
        return call_result.MeterValues()

    @on(Action.data_transfer)
    def on_data_transfer(self, **kwargs: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status=DataTransferStatus.accepted)

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status_notification(
        self, **kwargs: Any
    ) -> call_result.DiagnosticsStatusNotification:
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(
        self, **kwargs: Any
    ) -> call_result.FirmwareStatusNotification:
        return call_result.FirmwareStatusNotification()

    @on(Action.security_event_notification)
    def on_security_event_notification(
        self, **kwargs: Any
    ) -> call_result.SecurityEventNotification:
        return call_result.SecurityEventNotification()

    @on(Action.sign_certificate)
    def on_sign_certificate(self, **kwargs: Any) -> call_result.SignCertificate:
        return call_result.SignCertificate(status=GenericStatus.accepted)

    @on(Action.log_status_notification)
    def on_log_status_notification(self, **kwargs: Any) -> call_result.LogStatusNotification:
        return call_result.LogStatusNotification()

    @on(Action.signed_firmware_status_notification)
    def on_signed_firmware_status_notification(
        self, **kwargs: Any
    ) -> call_result.SignedFirmwareStatusNotification:
        return call_result.SignedFirmwareStatusNotification()


# ---------------------------------------------------------------- the central system


class CentralSystem:
    """Local OCPP 1.6-J central system on ``ws://HOST:PORT/<any path>/<identity>``.

    Usable as ``async with CentralSystem(...) as csms``. ``port=0`` picks a free port;
    :attr:`port` is the real one once started. With ``basic_auth_password`` the upgrade
    needs HTTP Basic with user = the identity in the URL and that password (401 otherwise).
    With ``ssl_context`` (a server-side context; set ``verify_mode`` and the client CA
    to require client certificates) the URL is ``wss://`` and failed TLS handshakes are
    recorded as ``rejected`` events (see :meth:`tls_failures`).
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        heartbeat_interval_s: int = 300,
        rejected_tags: Collection[str] = (),
        basic_auth_password: str | None = None,
        log: LogSink | None = None,
        max_records: int = 100_000,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._password = basic_auth_password
        self._ssl = ssl_context
        self._front: asyncio.Server | None = None  # the TLS listener when ssl_context is given
        self._tls_sessions: dict[Any, TlsSession] = {}  # inner socket address -> TLS session
        self._tls_tasks: set[asyncio.Task[Any]] = set()
        self._handshakes: list[Handshake] = []
        self._log = log
        self._answers = _Answers(heartbeat_interval_s, rejected_tags)
        self._recorder = Recorder(max_records)
        self._sessions: dict[str, _Session] = {}
        self._server: Server | None = None
        self._chores: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind and start accepting charge points."""
        if self._server is not None:
            return
        tls = self._ssl is not None
        self._server = await serve(
            self._serve_connection,
            DEFAULT_HOST if tls else self.host,  # behind the TLS front end: loopback only
            0 if tls else self._requested_port,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            process_request=self._check_handshake,
        )
        if tls:
            self._front = await asyncio.start_server(
                self._tls_connection, self.host, self._requested_port
            )

    async def stop(self) -> None:
        """Close every connection and the listening socket."""
        server, self._server = self._server, None
        if server is None:
            return
        front, self._front = self._front, None
        if front is not None:
            front.close()  # no new TLS connections; open ones carry the close handshakes
        server.close()
        await server.wait_closed()
        for task in list(self._tls_tasks):
            task.cancel()
        if self._tls_tasks:
            await asyncio.wait(self._tls_tasks)
        for chore in list(self._chores):
            chore.cancel()
        if self._chores:
            await asyncio.wait(self._chores)

    async def __aenter__(self) -> CentralSystem:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def basic_auth_password(self) -> str | None:
        """The password the next upgrade requests need (None: no Basic auth needed)."""
        return self._password

    @basic_auth_password.setter
    def basic_auth_password(self, password: str | None) -> None:
        self._password = password

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of the next handshakes; replaceable while running (e.g. to present
        an invalid certificate and then a valid one again), not addable or removable."""
        return self._ssl

    @ssl_context.setter
    def ssl_context(self, context: ssl.SSLContext) -> None:
        if (context is None) != (self._ssl is None):
            raise ValueError("a ws:// central system cannot become wss:// or back")
        self._ssl = context

    @property
    def port(self) -> int:
        listener = self._front if self._front is not None else self._server
        if listener is None:
            raise RuntimeError("CentralSystem is not started")
        return int(listener.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """Base URL for a charge point; it appends ``/<identity>``."""
        scheme = "wss" if self._ssl is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}/ocpp"

    def url_for(self, identity: str) -> str:
        return f"{self.url}/{identity}"

    # ------------------------------------------------------------ scripting answers

    def respond(
        self,
        action: str,
        payload: dict[str, Any] | None = None,
        *,
        error: str | None = None,
        description: str = "",
        no_reply: bool = False,
        once: bool = False,
    ) -> None:
        """Answer the charge point's ``action`` CALLs like this instead of the default.

        ``payload`` is the CALLRESULT payload (camelCase), sent as given without schema
        validation, so a test can also send a broken one; for BootNotification it is merged
        over ``currentTime`` and ``interval``. ``error`` answers a CALLERROR with that code.
        ``no_reply`` answers nothing. ``once`` answers the next such CALL only; one-shot
        answers queue up in order and take precedence over a standing one.
        """
        if action not in CP_ACTIONS:
            raise ValueError(f"{action!r} is not a CP → CSMS action of OCPP 1.6")
        if (payload is not None) + (error is not None) + no_reply != 1:
            raise ValueError("give exactly one of payload, error= or no_reply=True")
        answer = ScriptedAnswer(
            dict(payload) if payload is not None else None, error, description, no_reply
        )
        self._answers.script(action, answer, once)

    def clear_responses(self, action: str | None = None) -> None:
        """Back to the default answers, for one action or for all."""
        self._answers.clear(action)

    @property
    def rejected_tags(self) -> set[str]:
        """idTags answered ``Invalid`` by Authorize and StartTransaction (mutable)."""
        return self._answers.rejected_tags

    # ------------------------------------------------------------ recording

    def mark(self) -> int:
        """The seq of the newest record; pass it as ``since=`` to see only what follows."""
        return self._recorder.mark()

    def calls(self, action: str | None = None, identity: str | None = None) -> list[CallRecord]:
        """CALLs received from charge points, oldest first."""
        return self._recorder.select(CallRecord, action=action, identity=identity)

    def frames(
        self, identity: str | None = None, direction: Direction | None = None, since: int = 0
    ) -> list[Frame]:
        return self._recorder.select(Frame, since, identity=identity, direction=direction)

    def events(
        self, identity: str | None = None, kind: EventKind | None = None, since: int = 0
    ) -> list[ConnectionEvent]:
        return self._recorder.select(ConnectionEvent, since, identity=identity, kind=kind)

    def handshakes(self, identity: str | None = None) -> list[Handshake]:
        """WebSocket upgrade requests that reached the HTTP stage, oldest first."""
        return [h for h in self._handshakes if identity is None or h.identity == identity]

    def tls_failures(self, since: int = 0) -> list[ConnectionEvent]:
        """TLS handshakes the front end refused or lost (``rejected`` events, identity ``?``)."""
        return [e for e in self.events("?", "rejected", since) if e.detail.startswith("TLS ")]

    def reply_to(self, record: CallRecord) -> Frame | None:
        """The frame we answered ``record`` with, if any yet."""
        for frame in self.frames(record.identity, "out", since=record.seq):
            message = frame.message()
            if isinstance(message, CallResult | CallError) and (
                message.unique_id == record.unique_id
            ):
                return frame
        return None

    async def wait_for(
        self,
        action: str,
        identity: str | None = None,
        predicate: Callable[[CallRecord], bool] | None = None,
        since: int = 0,
        timeout: float = 10.0,
    ) -> CallRecord:
        """The first ``action`` CALL with seq > since that matches; waits for it if needed."""

        def find() -> CallRecord | None:
            records = self._recorder.select(CallRecord, since, action=action, identity=identity)
            for record in records:
                if predicate is None or predicate(record):
                    return record
            return None

        def what() -> str:
            who = f" from {identity}" if identity else ""
            return f"{action}{who} after #{since}" + (" matching predicate" if predicate else "")

        return await self._recorder.wait_until(find, timeout, what)

    async def wait_frame(
        self,
        identity: str,
        predicate: Callable[[Frame], bool] | None = None,
        since: int = 0,
        timeout: float = 10.0,
        *,
        direction: Direction = "in",
    ) -> Frame:
        """The first frame from (by default) ``identity`` with seq > since that matches."""

        def find() -> Frame | None:
            for frame in self.frames(identity, direction, since):
                if predicate is None or predicate(frame):
                    return frame
            return None

        def what() -> str:
            return f"a frame {direction} {identity} after #{since}"

        return await self._recorder.wait_until(find, timeout, what)

    def assert_clean(self, identity: str | None = None, since: int = 0) -> None:
        """Fail if a charge point sent a non-OCPP-J frame or a CALL the library refused."""
        problems = [
            event
            for event in self.events(identity, since=since)
            if event.kind in ("bad_frame", "call_error_sent")
        ]
        if problems:
            lines = "\n  ".join(f"#{e.seq} {e.identity} {e.kind}: {e.detail}" for e in problems)
            raise AssertionError(f"the charge point sent frames we had to refuse:\n  {lines}")

    # ------------------------------------------------------------ connections

    def connected(self, identity: str) -> bool:
        return identity in self._sessions

    @property
    def identities(self) -> list[str]:
        """Identities connected right now."""
        return list(self._sessions)

    async def wait_connected(self, identity: str, timeout: float = 10.0) -> None:
        await self._recorder.wait_until(
            lambda: True if identity in self._sessions else None,
            timeout,
            lambda: f"{identity} to connect",
        )

    async def wait_disconnected(self, identity: str, timeout: float = 10.0) -> None:
        await self._recorder.wait_until(
            lambda: True if identity not in self._sessions else None,
            timeout,
            lambda: f"{identity} to disconnect",
        )

    async def disconnect(self, identity: str, code: int = 1000, reason: str = "") -> None:
        """Close the charge point's WebSocket and wait until its session is gone."""
        session = self._session(identity)
        await session.ws.close(code, reason)
        await session.closed

    # ------------------------------------------------------------ talking to a charge point

    async def call(
        self,
        identity: str,
        action: str,
        payload: dict[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Send a CALL and return the CALLRESULT payload (camelCase, as on the wire).

        The request is built from the ``ocpp.v16.call`` class of ``action`` and checked
        against the OCPP 1.6 schema (ValueError if it does not fit: use :meth:`send_raw`
        for deliberately broken frames). Raises :class:`CallErrorReceived` on a CALLERROR,
        :class:`InvalidCallResultError` if the answer breaks the schema, :class:`NotConnectedError`
        if the charge point is or goes away, TimeoutError after ``timeout`` seconds.
        """
        session = self._session(identity)
        payload = payload or {}
        request = _build_request(action, payload)
        unique_id = str(uuid.uuid4())
        session.awaiting.add(unique_id)
        assert session.cp is not None
        sending = asyncio.create_task(session.cp.call(request, suppress=False, unique_id=unique_id))
        try:
            await asyncio.wait(
                {sending, session.closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not sending.done():
                sending.cancel()
                await asyncio.wait({sending})
            session.awaiting.discard(unique_id)
        failure = None if sending.cancelled() else sending.exception()
        reply = session.replies.pop(unique_id, None)

        if reply is None:
            if isinstance(failure, OCPPError):  # refused by the schema before it was sent
                raise ValueError(f"{action} payload does not fit OCPP 1.6: {failure}") from failure
            if failure is not None and not isinstance(failure, ConnectionClosed):
                raise failure
            self._emit(describe_csms_call(identity, action, payload, no_reply=True))
            if failure is not None or session.closed.done():
                raise NotConnectedError(f"{identity} went away before it answered {action}")
            raise TimeoutError(f"{identity} did not answer {action} within {timeout} s")
        if isinstance(reply, CallError):
            self._emit(
                describe_csms_call(
                    identity, action, payload, (reply.error_code, reply.error_description)
                )
            )
            raise CallErrorReceived(reply.error_code, reply.error_description, reply.error_details)
        self._emit(describe_csms_call(identity, action, payload, reply.payload))
        if failure is not None:
            raise InvalidCallResultError(action, reply.payload, failure) from failure
        return reply.payload  # type: ignore[no-any-return]

    async def send_raw(self, identity: str, text: str) -> int:
        """Send ``text`` as one frame, as is; returns its seq (use as ``since=`` for the reply)."""
        connection = self._session(identity).connection
        assert connection is not None
        self._emit(f"{identity} ← raw {text[:200]}")
        return (await connection.send_frame(text)).seq

    # ------------------------------------------------------------ internals

    def _session(self, identity: str) -> _Session:
        session = self._sessions.get(identity)
        if session is None or session.cp is None:
            raise NotConnectedError(f"no charge point {identity!r} is connected")
        return session

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse the upgrade unless it names an identity, offers ocpp1.6 and has the password."""
        identity = _identity_from_path(request.path)
        offered = _offered_subprotocols(request.headers)
        user, password = _basic_credentials(request.headers)
        tls = self._tls_sessions.get(connection.remote_address)

        def record(status: HTTPStatus) -> None:
            self._handshakes.append(Handshake(identity or "?", user, tls, status.value))

        if not identity:
            record(HTTPStatus.NOT_FOUND)
            return self._refuse(connection, "?", HTTPStatus.NOT_FOUND, "no identity in URL path")
        if SUBPROTOCOL not in offered:
            record(HTTPStatus.BAD_REQUEST)
            reason = f"ocpp1.6 subprotocol required (offered: {', '.join(offered) or 'none'})"
            return self._refuse(connection, identity, HTTPStatus.BAD_REQUEST, reason)
        if self._password is not None and not (tls is not None and tls.client_certificate):
            # security profile 3 authenticates with the client certificate instead
            if password is None:
                problem = "missing basic auth"
            elif user != identity:
                problem = f"basic auth user {user!r} is not the identity"
            elif not hmac.compare_digest(password, self._password.encode()):
                problem = "bad basic auth password"
            else:
                problem = None
            if problem is not None:
                record(HTTPStatus.UNAUTHORIZED)
                response = self._refuse(connection, identity, HTTPStatus.UNAUTHORIZED, problem)
                response.headers["WWW-Authenticate"] = 'Basic realm="ocpp", charset="UTF-8"'
                return response
        record(HTTPStatus.SWITCHING_PROTOCOLS)
        return None

    def _refuse(
        self, connection: ServerConnection, identity: str, status: HTTPStatus, reason: str
    ) -> Response:
        self._event(identity, "rejected", f"{status.value} {reason}")
        return connection.respond(status, reason + "\n")

    async def _serve_connection(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        identity = _identity_from_path(ws.request.path)
        session = _Session(identity, ws, asyncio.get_running_loop().create_future())
        session.connection = _RecordingConnection(session, self._on_frame)
        session.cp = _CentralChargePoint(
            session, session.connection, self._answers, self._on_no_reply
        )

        previous = self._sessions.get(identity)
        self._sessions[identity] = session
        if previous is not None:
            # Don't await: a charger that reconnects often left a dead socket behind.
            self._chore(previous.ws.close(1000, "replaced by new connection"))
        tls = self._tls_sessions.get(ws.remote_address)
        over = f" over {tls.version}" + (" with a client certificate" if tls.client_certificate else "") if tls else ""
        self._event(identity, "connect", f"from {_address(ws)} subprotocol {ws.subprotocol}{over}")
        try:
            await session.cp.start()
        except ConnectionClosed:
            pass
        finally:
            if self._sessions.get(identity) is session:
                del self._sessions[identity]
            self._event(identity, "disconnect", f"{ws.close_code} {ws.close_reason or ''}".strip())
            session.closed.set_result(None)

    def _on_frame(self, session: _Session, direction: Direction, text: str) -> Frame:
        seq, now = self._recorder.next_stamp()
        frame = self._recorder.add(Frame(seq, now, session.identity, direction, text))
        message = frame.message()
        if direction == "in":
            self._on_frame_in(session, frame, message)
        else:
            self._on_frame_out(session, message)
        return frame

    def _on_frame_in(self, session: _Session, frame: Frame, message: OcppMessage | None) -> None:
        if message is None:
            self._event(session.identity, "bad_frame", frame.text[:200])
        elif not isinstance(message.unique_id, str):
            pass  # e.g. the charger refusing a raw CALL whose id was not a string: nobody waits
        elif isinstance(message, Call):
            seq, now = self._recorder.next_stamp()
            payload = message.payload if isinstance(message.payload, dict) else {}
            uid = message.unique_id
            record = CallRecord(seq, now, session.identity, message.action, payload, uid)
            session.incoming[uid] = self._recorder.add(record)
        elif message.unique_id in session.awaiting:
            session.replies[message.unique_id] = message

    def _on_frame_out(self, session: _Session, message: OcppMessage | None) -> None:
        if not isinstance(message, CallResult | CallError):
            return
        record = session.incoming.pop(message.unique_id, None)
        if record is None:
            return
        scripted = message.unique_id in session.scripted
        session.scripted.discard(message.unique_id)
        if isinstance(message, CallError):
            answer: Any = (message.error_code, message.error_description)
            if not scripted:
                detail = f"{record.action} {message.error_code}: {message.error_details}"
                self._event(session.identity, "call_error_sent", detail)
        else:
            answer = message.payload
        self._emit(describe_cp_call(session.identity, record.action, record.payload, answer))

    def _on_no_reply(self, session: _Session, message: Call) -> None:
        record = session.incoming.pop(message.unique_id, None)
        if record is not None:
            self._emit(
                describe_cp_call(session.identity, record.action, record.payload, no_reply=True)
            )

    def _event(self, identity: str, kind: EventKind, detail: str = "") -> None:
        seq, now = self._recorder.next_stamp()
        self._recorder.add(ConnectionEvent(seq, now, identity, kind, detail))
        self._emit(f"{identity} {_EVENT_WORDS[kind]} {detail}".rstrip())

    def _emit(self, text: str) -> None:
        if self._log is None:
            return
        stamp = datetime.now(UTC).astimezone().strftime("%H:%M:%S")
        try:
            self._log(f"{stamp} {text}")
        except Exception:  # noqa: BLE001 - a broken log sink must not break the connection
            LOGGER.exception("log sink failed")

    def _chore(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    # ------------------------------------------------------------ TLS front end

    async def _tls_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tls_tasks.add(task)
        try:
            await self._terminate_tls(reader, writer)
        except asyncio.CancelledError:
            pass
        finally:
            self._tls_tasks.discard(task)
            writer.close()

    async def _terminate_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._ssl is not None and self._server is not None
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self._ssl.wrap_bio(incoming, outgoing, server_side=True)
        peer = writer.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        try:
            await asyncio.wait_for(
                _tls_handshake(tls, incoming, outgoing, reader, writer), TLS_HANDSHAKE_TIMEOUT_S
            )
        except (ssl.SSLError, OSError, EOFError, TimeoutError) as error:
            reason = getattr(error, "reason", None) or str(error) or type(error).__name__
            self._event("?", "rejected", f"TLS handshake from {where} failed: {reason}")
            return
        try:
            inner_port = self._server.sockets[0].getsockname()[1]
            inner_reader, inner_writer = await asyncio.open_connection(DEFAULT_HOST, inner_port)
        except (OSError, IndexError):
            return  # stopping
        key = inner_writer.get_extra_info("sockname")
        cipher = tls.cipher()
        self._tls_sessions[key] = TlsSession(
            str(tls.version()), cipher[0] if cipher else "", tls.getpeercert(binary_form=True)
        )
        pumps = {
            asyncio.create_task(_tls_to_plain(tls, incoming, outgoing, reader, writer, inner_writer)),
            asyncio.create_task(_plain_to_tls(tls, outgoing, inner_reader, writer)),
        }
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.wait(pumps)
            inner_writer.close()
            self._tls_sessions.pop(key, None)


_EVENT_WORDS: dict[EventKind, str] = {
    "connect": "connected",
    "disconnect": "disconnected",
    "rejected": "handshake rejected:",
    "bad_frame": "sent a frame that is not OCPP-J:",
    "call_error_sent": "CALL refused by the ocpp library:",
}


def _parse(text: str) -> OcppMessage | None:
    return Frame(0, datetime.now(UTC), "", "in", text).message()


def _build_request(action: str, payload: dict[str, Any]) -> Any:
    request_class = getattr(v16_call, action, None)
    if action not in set(Action) or not isinstance(request_class, type):
        raise ValueError(f"{action!r} is not an OCPP 1.6 action")
    try:
        return request_class(**camel_to_snake_case(payload))
    except TypeError as error:
        raise ValueError(f"{action} payload {payload!r} does not fit OCPP 1.6: {error}") from error


def _identity_from_path(path: str) -> str:
    return unquote(urlsplit(path).path.rsplit("/", 1)[-1])


def _offered_subprotocols(headers: Headers) -> list[str]:
    values = headers.get_all("Sec-WebSocket-Protocol")
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _basic_credentials(headers: Headers) -> tuple[str | None, bytes | None]:
    """(user, password) of an HTTP Basic Authorization header, (None, None) without one."""
    scheme, _, encoded = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None, None
    user, colon, given = decoded.partition(b":")
    if not colon:
        return None, None
    return user.decode("utf-8", "replace"), given


def _flush_tls(outgoing: ssl.MemoryBIO, writer: asyncio.StreamWriter) -> None:
    data = outgoing.read()
    if data and not writer.is_closing():
        writer.write(data)


async def _tls_handshake(
    tls: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
) -> None:
    """Server side of a TLS handshake; on failure the alert OpenSSL wrote is sent first."""
    while True:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            _flush_tls(outgoing, writer)
            await writer.drain()
            data = await reader.read(65536)
            if not data:
                raise EOFError("the client closed the connection during the handshake") from None
            incoming.write(data)
            continue
        except ssl.SSLError:
            _flush_tls(outgoing, writer)  # the alert tells the client why
            try:
                await writer.drain()
            except OSError:
                pass
            raise
        _flush_tls(outgoing, writer)
        await writer.drain()
        return


async def _tls_to_plain(
    tls: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, inner: asyncio.StreamWriter,
) -> None:
    """Decrypt what the charge point sends and pass it to the WebSocket server."""
    try:
        while True:  # the last handshake read may already hold application data
            while True:
                try:
                    plain = tls.read(65536)
                except ssl.SSLWantReadError:
                    break
                if not plain:
                    return  # close_notify
                inner.write(plain)
            _flush_tls(outgoing, writer)  # TLS 1.3 post-handshake messages
            await inner.drain()
            data = await reader.read(65536)
            if not data:
                return
            incoming.write(data)
    except (ssl.SSLError, OSError):
        return


async def _plain_to_tls(
    tls: ssl.SSLObject, outgoing: ssl.MemoryBIO, inner: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Encrypt what the WebSocket server sends and pass it to the charge point."""
    try:
        while data := await inner.read(65536):
            tls.write(data)
            _flush_tls(outgoing, writer)
            await writer.drain()
        try:
            tls.unwrap()
        except ssl.SSLError:
            pass
        _flush_tls(outgoing, writer)
        await writer.drain()
    except (ssl.SSLError, OSError):
        return


def _address(ws: ServerConnection) -> str:
    address = ws.remote_address
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)


async def run_forever(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    log: LogSink | None = None,
    **options: Any,
) -> None:
    """Serve until cancelled, one readable line per event on ``log`` (default: stdout).

    ``options`` go to :class:`CentralSystem` (heartbeat_interval_s, rejected_tags,
    basic_auth_password).
    """
    sink = log if log is not None else functools.partial(print, flush=True)
    async with CentralSystem(host, port, log=sink, **options) as csms:
        sink(f"OCPP 1.6-J central system on {csms.url}/<identity> (Ctrl-C to stop)")
        await asyncio.Future()
