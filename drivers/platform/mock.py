"""Mock platform: the box itself (fault inputs, mains power-fail signal, reboot).

This module owns the simulated box: DTCs raised and cleared by test calls, the
power-fail signal of StarCharge models (R-MODEL 3), and a "reboot" that
re-executes the current process (R-OPS 4 hard reset on a laptop).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Sequence

from drivers.interfaces import (
    DriverContext,
    DriverError,
    FaultCleared,
    FaultRaised,
    PowerFailing,
)
from drivers.mock_plant import flush_plant

__all__ = ["MockPlatform", "normalise_dtc", "restart_command"]

log = logging.getLogger(__name__)

_DTC_RE = re.compile(r"^0[xX]([0-9A-Fa-f]{6})$")

ExecFunction = Callable[[str, Sequence[str]], object]


def normalise_dtc(dtc: str) -> str:
    """``"0x10020a"`` -> ``"0x10020A"``; DriverError unless it is 0x + 6 hex digits."""
    match = _DTC_RE.match(dtc.strip()) if isinstance(dtc, str) else None
    if match is None:
        raise DriverError(f"bad DTC {dtc!r}: expected 0x and 6 hex digits, e.g. 0x100206")
    return "0x" + match.group(1).upper()


def restart_command() -> tuple[str, list[str]]:
    """Executable and argv that start this process again, interpreter options included.

    ``sys.orig_argv`` (Python >= 3.10) is the interpreter's own command line
    (``python -X dev -m controller --flag``), unlike ``sys.argv``, which loses the
    interpreter options and turns ``-m pkg`` into a file path. Its first item is the
    name the interpreter was invoked by (maybe a bare ``python3`` resolved through
    PATH), so ``sys.executable`` replaces it: ``execv`` does no PATH search.
    """
    executable = sys.executable
    orig = list(getattr(sys, "orig_argv", []))
    if not executable or not orig:
        raise DriverError("mock platform: cannot tell how this process was started")
    if sys.argv and sys.argv[0] in ("", "-"):
        raise DriverError("mock platform: cannot re-execute a program read from stdin")
    return executable, [executable, *orig[1:]]


class MockPlatform:
    """A :class:`~drivers.interfaces.Platform` for a laptop: faults and power loss on call.

    Test hooks, usable between ``start()`` and ``close()`` (else
    :class:`DriverError`): ``raise_fault(dtc, connector_id=0)`` and
    ``clear_fault(dtc, connector_id=0)`` emit ``FaultRaised`` / ``FaultCleared``
    when the fault's state changes (like a fault input, a repeat is silent; the
    return value says whether an event went out); the DTC must be ``0x`` + 6 hex
    digits and is normalised to ``"0x" + upper-case hex``; connector 0 is the
    whole station. ``power_fail()`` emits ``PowerFailing``. ``active_faults`` is
    the set of active ``(dtc, connector_id)``.

    ``reboot()`` flushes stdio, the logging handlers and the mock plant's energy
    register of this ``state_dir``, then re-executes the current process
    (:func:`restart_command`) -- same PID, so systemd sees a restart in place.
    Option ``exec``: a callable ``(path, argv)`` used instead of ``os.execv``, so
    tests can see the command without replacing the test process.
    """

    def __init__(self, ctx: DriverContext) -> None:
        self._ctx = ctx
        exec_fn = ctx.options.get("exec", os.execv)
        if not callable(exec_fn):
            raise DriverError(f"mock platform: option exec must be callable, got {exec_fn!r}")
        self._exec: ExecFunction = exec_fn
        self._connector_ids = frozenset(spec.connector_id for spec in ctx.connectors)
        self._faults: set[tuple[str, int]] = set()
        self._started = False
        self._closed = False

    async def start(self) -> None:
        if self._closed:
            raise DriverError("mock platform: closed; build a new one")
        self._started = True

    async def close(self) -> None:
        self._closed = True

    async def reboot(self) -> None:
        if self._closed:
            raise DriverError("mock platform: closed")
        path, argv = restart_command()
        try:
            flush_plant(self._ctx.state_dir)
        except DriverError as exc:
            log.warning("reboot: %s", exc)
        log.warning("reboot: re-executing %s", " ".join(argv))
        _flush_output()
        try:
            self._exec(path, argv)
        except OSError as exc:
            raise DriverError(f"mock platform: cannot re-execute {path}: {exc}") from exc

    # ----------------------------------------------------------------- test hooks
    @property
    def active_faults(self) -> frozenset[tuple[str, int]]:
        return frozenset(self._faults)

    def raise_fault(self, dtc: str, connector_id: int = 0) -> bool:
        """Activate a DTC; emits FaultRaised unless it was already active."""
        key = self._fault_key(dtc, connector_id)
        if key in self._faults:
            return False
        self._faults.add(key)
        self._ctx.emit(FaultRaised(*key))
        return True

    def clear_fault(self, dtc: str, connector_id: int = 0) -> bool:
        """Deactivate a DTC; emits FaultCleared unless it was not active."""
        key = self._fault_key(dtc, connector_id)
        if key not in self._faults:
            return False
        self._faults.discard(key)
        self._ctx.emit(FaultCleared(*key))
        return True

    def power_fail(self) -> None:
        """Mains is gone: emit PowerFailing (the hold-up time starts now)."""
        self._check_running()
        self._ctx.emit(PowerFailing())

    # ----------------------------------------------------------------- internals
    def _check_running(self) -> None:
        if not self._started or self._closed:
            state = "closed" if self._closed else "not started"
            raise DriverError(f"mock platform: {state}")

    def _fault_key(self, dtc: str, connector_id: int) -> tuple[str, int]:
        self._check_running()
        code = normalise_dtc(dtc)
        if (
            isinstance(connector_id, bool)
            or not isinstance(connector_id, int)
            or (connector_id != 0 and connector_id not in self._connector_ids)
        ):
            raise DriverError(f"mock platform: no connector {connector_id!r} for DTC {code}")
        return code, connector_id


def _flush_output() -> None:
    """Push out everything buffered: exec discards the old process's buffers."""
    loggers = [logging.getLogger()]
    loggers += [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            try:
                handler.flush()
            except Exception:  # noqa: BLE001 - a broken handler must not stop the reboot
                pass
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
