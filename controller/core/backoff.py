"""Reconnect and boot-retry timing policy (R-BOOT 2, R-BOOT 4), as pure functions.

Owns: how long to wait before the next WebSocket connection attempt, and
before re-sending a BootNotification that was answered Pending or Rejected.
It does not sleep, count attempts or draw random numbers: the caller keeps the
attempt counter and injects ``rand`` (e.g. ``random.random()``), so the policy
is deterministic under test.

Reconnect (R-BOOT 4: "reconnect forever with a randomised, capped back-off;
never a tight loop") — full jitter with a floor:

    ceiling = clamp(base_s * factor ** attempt, floor_s, cap_s)
    delay   = floor_s + rand * (ceiling - floor_s)          rand in [0, 1)

so ``floor_s <= delay <= ceiling <= cap_s`` (the delay equals the ceiling
only through float rounding). With the defaults (base 1 s, factor 2, cap 60 s, floor 0.5 s) the
ceiling grows 1, 2, 4, ... 32, 60, 60 ... s and a delay is never below 0.5 s,
so even a CSMS that refuses every connection instantly sees at most two
attempts per second from us, and a fleet of chargers reconnecting after a
CSMS outage spreads out over the whole window instead of arriving in waves.
``attempt`` counts consecutive failures from 0; the caller resets it to 0 only
after a connection was established and the BootNotification was Accepted
(a connection that drops right after the handshake keeps counting), and
never stops retrying.

Boot retry (R-BOOT 2, OCPP 1.6 §4.2 / §6.3): after Pending or Rejected the
charge point waits the ``interval`` of the BootNotification.conf before
sending BootNotification again. OCPP lets the CSMS send 0 (or the field may
be unusable); then we wait ``DEFAULT_BOOT_RETRY_S`` (30 s) — long enough not
to hammer a CSMS that is not ready, short enough for a commissioning
engineer waiting at the charger.
"""

from __future__ import annotations

import math

__all__ = [
    "DEFAULT_BASE_S",
    "DEFAULT_FACTOR",
    "DEFAULT_CAP_S",
    "DEFAULT_FLOOR_S",
    "DEFAULT_BOOT_RETRY_S",
    "reconnect_ceiling",
    "reconnect_delay",
    "boot_retry_delay",
]

DEFAULT_BASE_S = 1.0
DEFAULT_FACTOR = 2.0
DEFAULT_CAP_S = 60.0
#: No reconnect delay is ever shorter than this (never a tight loop).
DEFAULT_FLOOR_S = 0.5
#: Boot retry delay when the CSMS gives interval 0 or none.
DEFAULT_BOOT_RETRY_S = 30.0


def _check(base_s: float, factor: float, cap_s: float, floor_s: float) -> None:
    if not (math.isfinite(floor_s) and floor_s > 0):
        raise ValueError(f"floor_s must be > 0, got {floor_s!r}")
    if not (math.isfinite(base_s) and base_s > 0):
        raise ValueError(f"base_s must be > 0, got {base_s!r}")
    if not (math.isfinite(factor) and factor >= 1):
        raise ValueError(f"factor must be >= 1, got {factor!r}")
    if not (math.isfinite(cap_s) and cap_s >= floor_s):
        raise ValueError(f"cap_s must be >= floor_s ({floor_s}), got {cap_s!r}")


def reconnect_ceiling(
    attempt: int,
    *,
    base_s: float = DEFAULT_BASE_S,
    factor: float = DEFAULT_FACTOR,
    cap_s: float = DEFAULT_CAP_S,
    floor_s: float = DEFAULT_FLOOR_S,
) -> float:
    """Upper bound of the delay after ``attempt`` consecutive failures: base·factor^attempt within [floor, cap]."""
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ValueError(f"attempt must be an int >= 0, got {attempt!r}")
    _check(base_s, factor, cap_s, floor_s)
    try:
        raw = base_s * factor**attempt
    except OverflowError:
        raw = math.inf
    return min(cap_s, max(floor_s, raw))


def reconnect_delay(
    attempt: int,
    rand: float,
    *,
    base_s: float = DEFAULT_BASE_S,
    factor: float = DEFAULT_FACTOR,
    cap_s: float = DEFAULT_CAP_S,
    floor_s: float = DEFAULT_FLOOR_S,
) -> float:
    """Seconds to wait before reconnect attempt number ``attempt + 1``.

    ``attempt``: consecutive failures so far, from 0. ``rand``: uniform in
    [0, 1), injected. Returns a value in ``[floor_s, reconnect_ceiling(attempt)]``
    (never 0, never above ``cap_s``). Raises ValueError on bad arguments.
    """
    if isinstance(rand, bool) or not isinstance(rand, (int, float)) or not (0.0 <= rand < 1.0):
        raise ValueError(f"rand must be in [0, 1), got {rand!r}")
    ceiling = reconnect_ceiling(attempt, base_s=base_s, factor=factor, cap_s=cap_s, floor_s=floor_s)
    delay = floor_s + rand * (ceiling - floor_s)
    # Guard against float rounding at the edges.
    return min(max(delay, floor_s), ceiling)


def boot_retry_delay(interval_s: int | None) -> float:
    """Seconds before re-sending BootNotification after Pending/Rejected.

    The CSMS's ``interval`` when it is a positive number; ``DEFAULT_BOOT_RETRY_S``
    (30 s) when it is None, 0, negative or not a number.
    """
    if isinstance(interval_s, bool) or not isinstance(interval_s, (int, float)):
        return DEFAULT_BOOT_RETRY_S
    if not math.isfinite(interval_s) or interval_s <= 0:
        return DEFAULT_BOOT_RETRY_S
    return float(interval_s)
