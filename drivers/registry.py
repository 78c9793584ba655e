"""Driver registry: finds backends by entry point and builds the chosen one.

This module owns the mapping *(kind, name) -> backend class*. Backends register
in the entry-point group ``evsectl.drivers.<kind>`` (kinds: ``DRIVER_KINDS``);
the installer picks them by name in the TOML file (R-HW 5). Only the chosen
backend's module is imported, so a backend whose hardware library is missing
never stops another one from loading. Every failure comes out as a
:class:`~drivers.interfaces.DriverError`: :class:`DriverNotFoundError` for an
unknown kind or name, :class:`DriverError` (with ``__cause__``) when the backend
cannot be imported or built -- never a bare ``ImportError``.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal, overload

from drivers.interfaces import (
    DRIVER_KINDS,
    DriverContext,
    DriverError,
    DriverNotFoundError,
    Meter,
    Platform,
    PowerStage,
    RfidReader,
)

__all__ = ["GROUP_PREFIX", "available", "group", "load"]

log = logging.getLogger(__name__)

GROUP_PREFIX = "evsectl.drivers."

_CONTRACTS: dict[str, type[Any]] = {
    "meter": Meter,
    "rfid": RfidReader,
    "power": PowerStage,
    "platform": Platform,
}


def group(kind: str) -> str:
    """Entry-point group of a driver kind (``"meter"`` -> ``"evsectl.drivers.meter"``)."""
    _check_kind(kind, name=None)
    return GROUP_PREFIX + kind


def available(kind: str) -> list[str]:
    """Sorted names of the backends registered for ``kind``; imports none of them."""
    return sorted(_backends(kind))


@overload
def load(kind: Literal["meter"], name: str, ctx: DriverContext) -> Meter: ...
@overload
def load(kind: Literal["rfid"], name: str, ctx: DriverContext) -> RfidReader: ...
@overload
def load(kind: Literal["power"], name: str, ctx: DriverContext) -> PowerStage: ...
@overload
def load(kind: Literal["platform"], name: str, ctx: DriverContext) -> Platform: ...
@overload
def load(kind: str, name: str, ctx: DriverContext) -> Any: ...


def load(kind: str, name: str, ctx: DriverContext) -> Any:
    """Import the backend ``name`` of ``kind`` and construct it with ``ctx``.

    Raises :class:`DriverNotFoundError` (listing what is available) for an unknown
    kind or name, and :class:`DriverError` naming kind, name and cause when the
    backend's module cannot be imported, its class cannot be built, or the object
    built does not provide the kind's contract. The backend is not started.
    """
    backends = _backends(kind)
    key = name.strip().lower()
    candidates = backends.get(key)
    if not candidates:
        raise DriverNotFoundError(kind, name, sorted(backends))
    if len(candidates) > 1:
        # Two distributions claim the same name: refuse to guess which one is meant.
        raise DriverError(
            f"{kind} driver {key!r} is registered more than once: "
            + ", ".join(ep.value for ep in candidates)
        )
    ep = candidates[0]
    try:
        factory = ep.load()
    except Exception as exc:  # ImportError, SyntaxError, AttributeError, anything at import
        raise DriverError(
            f"cannot load {kind} driver {key!r} ({ep.value}): {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(factory):
        raise DriverError(f"{kind} driver {key!r} ({ep.value}) is not a class or factory")
    try:
        backend = factory(ctx)
    except DriverError:
        raise
    except Exception as exc:
        raise DriverError(
            f"cannot construct {kind} driver {key!r} ({ep.value}): {type(exc).__name__}: {exc}"
        ) from exc
    contract = _CONTRACTS.get(kind)
    if contract is not None and not isinstance(backend, contract):
        raise DriverError(
            f"{kind} driver {key!r} ({ep.value}) does not provide the {contract.__name__} contract"
        )
    log.debug("loaded %s driver %r from %s", kind, key, ep.value)
    return backend


# --------------------------------------------------------------------- internals
def _check_kind(kind: str, name: str | None) -> None:
    if kind not in DRIVER_KINDS:
        err = DriverNotFoundError(kind, name or "", [])
        err.args = (f"unknown driver kind {kind!r}; kinds: {', '.join(DRIVER_KINDS)}",)
        raise err


def _backends(kind: str) -> dict[str, list[EntryPoint]]:
    """Name -> distinct entry points for ``kind``; reads distribution metadata only."""
    _check_kind(kind, name=None)
    try:
        eps = entry_points(group=GROUP_PREFIX + kind)
    except Exception as exc:  # broken metadata of some installed distribution
        raise DriverError(f"cannot list {kind} drivers: {type(exc).__name__}: {exc}") from exc
    found: dict[str, list[EntryPoint]] = {}
    for ep in eps:
        same_name = found.setdefault(ep.name.lower(), [])
        # The same target seen twice (e.g. stale metadata of an editable install) is one backend.
        if all(other.value != ep.value for other in same_name):
            same_name.append(ep)
    return found
