"""What the local central system saw: frames, CALLs and connection events, in one sequence."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, TypeVar

from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, CallResult, unpack

Direction = Literal["in", "out"]
"""``in`` = charge point to central system, ``out`` = central system to charge point."""

EventKind = Literal["connect", "disconnect", "rejected", "bad_frame", "call_error_sent"]
"""``rejected``: handshake refused. ``bad_frame``: a frame that is not OCPP-J.
``call_error_sent``: the ocpp library answered a charge point CALL with a CALLERROR
that no test scripted (schema violation, unknown action...)."""

OcppMessage: TypeAlias = Call | CallResult | CallError


@dataclass(frozen=True, slots=True)
class Frame:
    """One WebSocket text frame, exactly as it crossed the wire."""

    seq: int
    time: datetime
    identity: str
    direction: Direction
    text: str

    def message(self) -> OcppMessage | None:
        """The frame parsed by ``ocpp.messages.unpack``, or None if it is not OCPP-J."""
        try:
            return unpack(self.text)
        except OCPPError:
            return None

    def json(self) -> Any:
        """The frame as plain JSON, or None if it is not JSON at all."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A CALL received from a charge point; ``payload`` is camelCase, as on the wire."""

    seq: int
    time: datetime
    identity: str
    action: str
    payload: dict[str, Any]
    unique_id: str


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """Something that happened to a connection rather than a frame on it."""

    seq: int
    time: datetime
    identity: str
    kind: EventKind
    detail: str = ""


Record = Frame | CallRecord | ConnectionEvent
R = TypeVar("R", Frame, CallRecord, ConnectionEvent)
T = TypeVar("T")


def describe(record: Record) -> str:
    """One line for assertion messages."""
    if isinstance(record, Frame):
        arrow = "→" if record.direction == "in" else "←"
        return f"#{record.seq} {record.identity} {arrow} {record.text[:200]}"
    if isinstance(record, CallRecord):
        payload = json.dumps(record.payload)[:200]
        return f"#{record.seq} {record.identity} CALL {record.action} {payload}"
    return f"#{record.seq} {record.identity} {record.kind} {record.detail}"


class Recorder:
    """Append-only log with one increasing seq; coroutines can wait for a record to appear."""

    def __init__(self, max_records: int = 100_000) -> None:
        self._records: deque[Record] = deque(maxlen=max_records)
        self._seq = 0
        self._waiters: set[asyncio.Future[None]] = set()

    def mark(self) -> int:
        """The seq of the newest record (0 before the first one)."""
        return self._seq

    def next_stamp(self) -> tuple[int, datetime]:
        """Reserve the next seq, with the wall time (aware UTC) it was taken at."""
        self._seq += 1
        return self._seq, datetime.now(UTC)

    def add(self, record: R) -> R:
        """Store a record built from ``next_stamp()`` and wake every waiter."""
        self._records.append(record)
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        return record

    def select(self, record_type: type[R], since: int = 0, **fields: Any) -> list[R]:
        """Records of one type with seq > since whose attributes equal ``fields`` (None = any)."""
        wanted = {name: value for name, value in fields.items() if value is not None}
        return [
            record
            for record in self._after(since)
            if isinstance(record, record_type)
            and all(getattr(record, name) == value for name, value in wanted.items())
        ]

    def recent(self, count: int = 10) -> list[Record]:
        return list(self._records)[-count:]

    async def wait_until(
        self, find: Callable[[], T | None], timeout: float, what: Callable[[], str]
    ) -> T:
        """Return ``find()`` once it is not None; AssertionError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (found := find()) is None:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except TimeoutError:
                if (found := find()) is not None:
                    return found
                recent = "\n  ".join(describe(record) for record in self.recent(8)) or "(none)"
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what()}; last records:\n  {recent}"
                ) from None
            finally:
                self._waiters.discard(waiter)
        return found

    def _after(self, since: int) -> Iterable[Record]:
        return (record for record in self._records if record.seq > since)
