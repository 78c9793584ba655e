"""Mock RFID reader: a card tap is a method call.

This module owns only the simulated reader; what a tag means is the controller's
business (R-HW 2: the card UID is the idTag).
"""

from __future__ import annotations

from drivers.interfaces import DriverContext, DriverError, TagPresented

__all__ = ["MockRfidReader"]


class MockRfidReader:
    """A :class:`~drivers.interfaces.RfidReader` whose cards are presented by calls.

    ``present(uid)`` simulates a tap between ``start()`` and ``close()``: it emits
    ``TagPresented(uid.upper())`` through ``ctx.emit`` (surrounding blanks removed),
    like a PC/SC reader reporting the card UID in upper-case hex. An empty UID,
    or a tap on a reader that is not started or already closed, raises
    :class:`DriverError`. ``presented`` lists the ids emitted so far.
    """

    def __init__(self, ctx: DriverContext) -> None:
        self._ctx = ctx
        self._started = False
        self._closed = False
        self.presented: list[str] = []

    async def start(self) -> None:
        if self._closed:
            raise DriverError("mock rfid reader: closed; build a new one")
        self._started = True

    async def close(self) -> None:
        self._closed = True

    def present(self, uid: str) -> None:
        """Simulate a card tap."""
        if not self._started or self._closed:
            raise DriverError("mock rfid reader: not running")
        if not isinstance(uid, str) or not uid.strip():
            raise DriverError(f"mock rfid reader: bad card uid {uid!r}")
        id_tag = uid.strip().upper()
        self.presented.append(id_tag)
        self._ctx.emit(TagPresented(id_tag))
