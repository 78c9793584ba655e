"""Badge reader over PC/SC (pyscard): the card UID as the idTag.

This module owns the PC/SC backend: a thread that waits on pcscd for reader and
card changes (blocking pyscard calls never run on the event loop), reads the UID
of each card presented with the standard GET DATA command ``FF CA 00 00 00``,
emits one :class:`TagPresented` per presentation, and reports the reader's
failure -- pcscd gone, no reader, reader unplugged -- as the guide's ReaderFailure
DTC ``0x100005`` (FaultRaised once, FaultCleared when a reader is back) (R-HW 2).

Options (``[drivers.options.rfid]``):

* ``reader``: use only readers whose name contains this text (default: every reader).
* ``uid_format``: ``"hex"`` (default: upper-case hex as the card sends it),
  ``"hex-reversed"`` (bytes reversed) or ``"decimal"`` (the UID bytes read as one
  big-endian unsigned number).
* ``wait_s`` (0.5): longest blocking wait on pcscd (also how fast ``close`` returns).
* ``retry_interval_s`` (1.0): pause between attempts to reach pcscd / find a reader.
* ``failure_after_s`` (0.0): how long the reader may be missing before the DTC.
"""

from __future__ import annotations

import logging
import threading
import time

from drivers.interfaces import DriverContext, DriverError, FaultCleared, FaultRaised, TagPresented

try:
    from smartcard import scard
except ImportError as exc:
    raise ImportError(f"the pcsc rfid backend needs pyscard: pip install 'evsectl[pcsc]' ({exc})") from exc

__all__ = ["READER_FAILURE_DTC", "GET_UID", "PcscRfidReader", "format_uid"]

log = logging.getLogger(__name__)

READER_FAILURE_DTC = "0x100005"
GET_UID = [0xFF, 0xCA, 0x00, 0x00, 0x00]
PNP = "\\\\?PnP?\\Notification"
_FORMATS = ("hex", "hex-reversed", "decimal")
_UID_ATTEMPTS = 3


def format_uid(uid: bytes, fmt: str) -> str:
    if fmt == "hex":
        return uid.hex().upper()
    if fmt == "hex-reversed":
        return uid[::-1].hex().upper()
    if fmt == "decimal":
        return str(int.from_bytes(uid, "big"))
    raise DriverError(f"pcsc reader: uid_format must be one of {', '.join(_FORMATS)}, got {fmt!r}")


class _PcscGone(Exception):
    """pcscd or the context is gone: start over."""


class PcscRfidReader:
    """A :class:`~drivers.interfaces.RfidReader` on any PC/SC reader.

    ``start()`` starts the watcher thread and returns at once (a reader may be
    plugged in later: until then the ReaderFailure DTC is active). A card held on
    the reader is one presentation: it emits once, again only after it left the
    reader. A card whose UID cannot be read (no answer to GET DATA after a few
    tries) emits nothing and is logged. ``reader_ok`` tells whether a reader is
    being watched; ``readers`` lists the names watched.
    """

    def __init__(self, ctx: DriverContext) -> None:
        self._ctx = ctx
        o = ctx.options
        self._filter = str(o.get("reader", ""))
        self._format = str(o.get("uid_format", "hex")).lower()
        format_uid(b"\x00", self._format)  # validates
        self._wait_ms = int(_positive(o.get("wait_s", 0.5), "wait_s") * 1000)
        self._retry_s = _positive(o.get("retry_interval_s", 1.0), "retry_interval_s")
        failure_after = o.get("failure_after_s", 0.0)
        if isinstance(failure_after, bool) or not isinstance(failure_after, int | float) or failure_after < 0:
            raise DriverError(f"pcsc reader: failure_after_s must be >= 0, got {failure_after!r}")
        self._failure_after_s = float(failure_after)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hcontext: int | None = None
        self._lock = threading.Lock()
        self._fault_active = False
        self._missing_since: float | None = None
        self.reader_ok = False
        self.readers: list[str] = []
        self._started = False
        self._closed = False

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._closed:
            raise DriverError("pcsc reader: closed; build a new one")
        if self._started:
            return
        self._started = True
        self._thread = threading.Thread(target=self._run, name="pcsc-reader", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with self._lock:
            if self._hcontext is not None:
                scard.SCardCancel(self._hcontext)  # wakes a blocking SCardGetStatusChange
        thread = self._thread
        if thread is not None:
            import asyncio

            await asyncio.get_running_loop().run_in_executor(None, thread.join, 5.0)

    # ----------------------------------------------------------------- the thread
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._session()
            except _PcscGone as exc:
                log.debug("pcsc reader: %s", exc)
            except Exception:  # noqa: BLE001 - the watcher must survive anything pyscard does
                log.exception("pcsc reader: unexpected error; retrying")
            self._set_reader_ok(False)
            self._stop.wait(self._retry_s)
        self._release()

    def _session(self) -> None:
        rv, hcontext = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if rv != scard.SCARD_S_SUCCESS:
            raise _PcscGone(f"no PC/SC service: {_err(rv)}")
        with self._lock:
            self._hcontext = hcontext
        try:
            self._watch(hcontext)
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            hcontext, self._hcontext = self._hcontext, None
        if hcontext is not None:
            scard.SCardReleaseContext(hcontext)

    def _list_readers(self, hcontext: int) -> list[str]:
        rv, readers = scard.SCardListReaders(hcontext, [])
        if rv == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if rv != scard.SCARD_S_SUCCESS:
            raise _PcscGone(f"cannot list readers: {_err(rv)}")
        return [r for r in readers if self._filter in r]

    def _watch(self, hcontext: int) -> None:
        states: dict[str, int] = {}  # reader -> last event state
        present: dict[str, bool] = {}
        readers = self._list_readers(hcontext)
        while not self._stop.is_set():
            self.readers = readers
            self._set_reader_ok(bool(readers))
            query = [(r, states.get(r, scard.SCARD_STATE_UNAWARE)) for r in readers]
            query.append((PNP, states.get(PNP, scard.SCARD_STATE_UNAWARE)))
            rv, result = scard.SCardGetStatusChange(hcontext, self._wait_ms, query)
            if self._stop.is_set():
                return
            if rv == scard.SCARD_E_TIMEOUT:
                if not readers:  # pcscd may not support PnP: rescan now and then
                    readers = self._list_readers(hcontext)
                continue
            if rv in (scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE):
                readers = self._list_readers(hcontext)
                continue
            if rv != scard.SCARD_S_SUCCESS:
                raise _PcscGone(f"status change: {_err(rv)}")
            rescan = False
            for name, event, _atr in result:
                states[name] = event & ~scard.SCARD_STATE_CHANGED
                if name == PNP:
                    rescan = rescan or bool(event & scard.SCARD_STATE_CHANGED)
                    continue
                if event & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
                    rescan = True
                    continue
                is_present = bool(event & scard.SCARD_STATE_PRESENT) and not (
                    event & scard.SCARD_STATE_MUTE
                )
                if is_present and not present.get(name, False):
                    self._card_arrived(hcontext, name)
                present[name] = is_present
            if rescan:
                readers = self._list_readers(hcontext)
                for gone in set(states) - set(readers) - {PNP}:
                    states.pop(gone, None)
                    present.pop(gone, None)

    def _card_arrived(self, hcontext: int, reader: str) -> None:
        for attempt in range(_UID_ATTEMPTS):
            uid = self._read_uid(hcontext, reader)
            if uid:
                id_tag = format_uid(uid, self._format)
                log.info("pcsc reader: card %s on %s", id_tag, reader)
                self._ctx.emit(TagPresented(id_tag))
                return
            if self._stop.wait(0.05 * (attempt + 1)):
                return
        log.warning("pcsc reader: card on %s did not give its UID", reader)

    @staticmethod
    def _read_uid(hcontext: int, reader: str) -> bytes | None:
        rv, hcard, protocol = scard.SCardConnect(
            hcontext, reader, scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )
        if rv != scard.SCARD_S_SUCCESS:
            log.debug("pcsc reader: connect to %s: %s", reader, _err(rv))
            return None
        try:
            pci = scard.SCARD_PCI_T1 if protocol == scard.SCARD_PROTOCOL_T1 else scard.SCARD_PCI_T0
            rv, response = scard.SCardTransmit(hcard, pci, GET_UID)
            if rv != scard.SCARD_S_SUCCESS or len(response) < 3 or response[-2:] != [0x90, 0x00]:
                log.debug("pcsc reader: GET DATA on %s: %s %s", reader, _err(rv), response)
                return None
            return bytes(response[:-2])
        finally:
            scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)

    def _set_reader_ok(self, ok: bool) -> None:
        self.reader_ok = ok
        now = time.monotonic()
        if ok:
            self._missing_since = None
            if self._fault_active:
                self._fault_active = False
                log.info("pcsc reader: reader back")
                self._emit(FaultCleared(READER_FAILURE_DTC))
            return
        if self._missing_since is None:
            self._missing_since = now
        if not self._fault_active and now - self._missing_since >= self._failure_after_s:
            self._fault_active = True
            log.warning("pcsc reader: no reader (ReaderFailure %s)", READER_FAILURE_DTC)
            self._emit(FaultRaised(READER_FAILURE_DTC))

    def _emit(self, event: FaultRaised | FaultCleared) -> None:
        if not self._closed:
            self._ctx.emit(event)


def _err(rv: int) -> str:
    try:
        return f"{scard.SCardGetErrorMessage(rv)} (0x{rv & 0xFFFFFFFF:08X})"
    except Exception:  # noqa: BLE001
        return f"0x{rv & 0xFFFFFFFF:08X}"


def _positive(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise DriverError(f"pcsc reader: {what} must be a positive number, got {value!r}")
    return float(value)

