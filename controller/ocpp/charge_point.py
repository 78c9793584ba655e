"""The charge point's side of one OCPP-J 1.6 WebSocket, on the ``ocpp`` library.

One :class:`EvseChargePoint` per socket. Incoming CALLs are parsed and schema
checked here with the library's own validators, then routed by the library's
``@on`` handlers; every handler is the same thin forwarder: it hands the payload
to the core port (synchronously: the core never awaits) and returns the
library's ``call_result`` for the answer. Commands the core produced are
released only after the answer went out. Error codes are corrected to the
OCPP-J 1.6 names (see ``errors``). Outgoing CALLs go through :meth:`send_call`,
always with ``suppress=False``.
"""

from __future__ import annotations

import dataclasses
import decimal
import inspect
import json
import logging
from collections.abc import Awaitable
from dataclasses import asdict
from typing import Any, Protocol

import ocpp.messages
from jsonschema.exceptions import ValidationError
from ocpp.charge_point import camel_to_snake_case, remove_nones, snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, CallResult, MessageType, get_validator
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result

from .errors import (
    FORMATION_VIOLATION,
    INTERNAL_ERROR,
    NOT_IMPLEMENTED,
    NOT_SUPPORTED,
    OCPP16_ACTIONS,
    call_error_frame,
    code_for_schema_error,
)

log = logging.getLogger(__name__)
# Validate in the receive task, not in a thread: payloads are small, and a
# thread hop per frame costs more than the check (and reorders nothing).
ocpp.messages.ASYNC_VALIDATION = False


class CorePort(Protocol):
    """What the adapter needs from the runtime (injected by the composition root)."""

    def handles(self, action: str) -> bool: ...
    def request(
        self, action: str, payload: dict[str, Any]
    ) -> dict[str, Any] | Awaitable[dict[str, Any]]: ...
    def release(self) -> None: ...


class CallErrorReply(Exception):
    """The CSMS answered one of our CALLs with a CALLERROR (or an invalid result)."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}")
        self.code, self.description = code, description


#: OCPP 1.6 integers are 32-bit; larger ones are refused before they reach the core
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def _integer_out_of_range(value: Any) -> bool:
    """Any integer beyond 32 bits, however deep (a loop: a payload nested a few hundred deep
    parses, and recursing through it raised RecursionError, so the CALL got no answer)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            if not INT_MIN <= v <= INT_MAX:
                return True
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def _schema_problem(message_type_id: int, action: str, payload: Any) -> ValidationError | None:
    """The first schema violation; for a schema-valid payload, an integer beyond 32 bits
    (checked after the schema, so the code names the schema's own violation when there is one)."""
    parse_float = float
    try:
        checked = payload
        if action in ("SetChargingProfile", "RemoteStartTransaction", "GetCompositeSchedule"):
            parse_float = decimal.Decimal  # type: ignore[assignment]
            checked = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
        validator = get_validator(message_type_id, action, "1.6", parse_float=parse_float)
        problem = next(iter(sorted(validator.iter_errors(checked), key=lambda e: e.path)), None)
    except (ArithmeticError, ValueError, RecursionError) as e:  # e.g. 1e30 % Decimal("0.1")
        return ValidationError(f"a number cannot be checked: {e.__class__.__name__}", validator="maximum")
    if problem is None and _integer_out_of_range(payload):
        return ValidationError("an integer is outside the 32-bit range of OCPP", validator="maximum")
    return problem


class EvseChargePoint(ChargePoint):
    """See the module docstring."""

    def __init__(self, identity: str, connection: Any, port: CorePort, response_timeout: float = 30) -> None:
        super().__init__(identity, connection, response_timeout)
        self._port = port
        self._payload: dict[str, Any] = {}

    # ---------------------------------------------------------------- incoming
    async def route_message(self, raw_msg: str | bytes) -> None:
        """Route one frame; nothing a CSMS sends may end the receive loop (R-OPS 3)."""
        try:
            await self._route(raw_msg)
        except Exception:  # noqa: BLE001 - a bug of ours must not drop the link
            log.exception("frame could not be handled: %.200r", raw_msg)

    async def _route(self, raw_msg: str | bytes) -> None:
        try:
            msg = ocpp.messages.unpack(raw_msg)
        except OCPPError as e:
            await self._reject_unparsable(raw_msg, e)
            return
        except (RecursionError, ValueError) as e:  # e.g. JSON nested deeper than the parser goes
            log.warning("unreadable frame ignored (%s): %.120r", e.__class__.__name__, raw_msg)
            return
        if msg.message_type_id != MessageType.Call:
            self._response_queue.put_nowait(msg)
            return
        if not _valid_unique_id(msg.unique_id) or not isinstance(msg.action, str):
            # never execute a CALL we could not answer properly (OCPP-J 1.6 §4.1.3)
            await self._send(call_error_frame(msg.unique_id, FORMATION_VIOLATION, "UniqueId must be a string of 1..36"))
            return
        action = msg.action
        if not isinstance(action, str) or action not in OCPP16_ACTIONS:
            await self._send(call_error_frame(msg.unique_id, NOT_IMPLEMENTED, f"unknown action {action!r}"))
            return
        if action not in self.route_map or not self._port.handles(action):
            await self._send(call_error_frame(msg.unique_id, NOT_SUPPORTED, f"{action} is not supported"))
            return
        problem = _schema_problem(MessageType.Call, action, msg.payload)
        if problem is not None:
            code = code_for_schema_error(problem)
            log.warning("%s %s rejected (%s): %s", action, msg.unique_id, code, problem.message)
            await self._send(call_error_frame(msg.unique_id, code, problem.message[:200]))
            return
        self._payload = msg.payload
        try:
            await self._handle_call(msg)
        finally:
            self._port.release()

    async def _reject_unparsable(self, raw_msg: str | bytes, error: OCPPError) -> None:
        """Answer a malformed frame when its unique id can be read; never drop the link."""
        try:
            frame = json.loads(raw_msg)
        except (ValueError, TypeError, RecursionError):
            frame = None
        if isinstance(frame, list) and len(frame) >= 2 and _valid_unique_id(frame[1]) and frame[0] not in (3, 4):
            # a CALL-like frame (or an unknown MessageTypeId) whose id we can read; answers
            # to our own calls are never answered back
            await self._send(call_error_frame(frame[1], FORMATION_VIOLATION, str(error.description)))
        else:
            log.warning("unreadable frame ignored (%s): %.200r", error.__class__.__name__, raw_msg)

    def _forward(self, action: str) -> Any:
        """The body of every @on handler: ask the core, return the library's result type
        (or an awaitable of it, which the library awaits, when the answer needs I/O first)."""
        reply = self._port.request(action, self._payload)
        if inspect.isawaitable(reply):
            return self._forward_later(action, reply)
        return self._result(action, reply)

    async def _forward_later(self, action: str, pending: Awaitable[dict[str, Any]]) -> Any:
        return self._result(action, await pending)

    def _result(self, action: str, reply: dict[str, Any]) -> Any:
        problem = _schema_problem(MessageType.CallResult, action, reply)
        if problem is not None:  # a bug of ours: say so rather than send an invalid frame
            log.error("invalid %s answer %r: %s", action, reply, problem.message)
            raise _InternalError(problem.message)
        return getattr(call_result, action)(**camel_to_snake_case(reply))

    # ---------------------------------------------------------------- outgoing
    async def send_call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one CALL; return the CALLRESULT payload (camelCase) or raise CallErrorReply."""
        cls = getattr(call, action)
        fields = camel_to_snake_case(payload)
        for f in dataclasses.fields(cls):  # the library makes some schema-optional fields required
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                fields.setdefault(f.name, None)
        request = cls(**fields)
        try:
            result = await self.call(request, suppress=False)
        except OCPPError as e:
            code = "FormationViolation" if e.code == "FormatViolation" else e.code
            raise CallErrorReply(code, str(e.description)) from None
        return snake_to_camel_case(remove_nones(asdict(result)))


def _valid_unique_id(unique_id: Any) -> bool:
    return isinstance(unique_id, str) and 0 < len(unique_id) <= 36


class _InternalError(OCPPError):
    code = INTERNAL_ERROR
    default_description = "internal error"


def _make_handler(action: str) -> Any:
    def handler(self: EvseChargePoint, **_: Any) -> Any:
        return self._forward(action)

    handler.__name__ = "on_" + "".join("_" + ch.lower() if ch.isupper() else ch for ch in action).lstrip("_")
    return on(action, skip_schema_validation=True)(handler)


# Every CSMS -> charge point action of OCPP 1.6 + the security extension gets the
# same forwarder; the core says which it handles (the rest answer NotSupported).
CSMS_ACTIONS = (
    "CancelReservation", "CertificateSigned", "ChangeAvailability", "ChangeConfiguration", "ClearCache",
    "ClearChargingProfile", "DataTransfer", "DeleteCertificate", "ExtendedTriggerMessage",
    "GetCompositeSchedule", "GetConfiguration", "GetDiagnostics", "GetInstalledCertificateIds",
    "GetLocalListVersion", "GetLog", "InstallCertificate", "RemoteStartTransaction",
    "RemoteStopTransaction", "ReserveNow", "Reset", "SendLocalList", "SetChargingProfile",
    "SignedUpdateFirmware", "TriggerMessage", "UnlockConnector", "UpdateFirmware",
)
for _action in CSMS_ACTIONS:
    _h = _make_handler(_action)
    setattr(EvseChargePoint, _h.__name__, _h)

__all__ = ["EvseChargePoint", "CorePort", "CallErrorReply", "CallError", "CallResult", "Call"]
