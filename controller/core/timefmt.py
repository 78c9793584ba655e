"""Timestamps on the wire: RFC 3339 formatting and parsing (OCPP 1.6 dateTime).

Owns: the one format used for every timestamp we send (StatusNotification,
MeterValues, Start/StopTransaction, security events, ...) and the parser for
every timestamp we receive (BootNotification/Heartbeat currentTime,
charging profiles, reservations, ...). It does not read any clock.

Sent: always UTC with a ``Z`` suffix and exactly millisecond precision,
``YYYY-MM-DDTHH:MM:SS.mmmZ`` (e.g. ``2026-04-16T08:30:00.123Z``). Sub-
millisecond digits are truncated, not rounded, so a formatted time is never
later than the instant it stands for and ordering is preserved. Naive
datetimes are refused (ValueError): a time without a zone is a bug.

Received: RFC 3339 ``date-time`` — ``T`` (or ``t``, or a space, as RFC 3339
§5.6 allows) between date and time, ``Z``/``z`` or a ``±HH:MM`` offset
(``±HHMM`` is accepted too, as some CSMSs send it), and fractional seconds of
any length (digits beyond microseconds are truncated). A leap second
(``:60``) is read as ``:59.999999``. The result is an aware datetime in UTC.
A missing offset is refused unless ``assume_utc=True``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

__all__ = ["rfc3339", "parse_rfc3339"]

_RX = re.compile(
    r"""
    (?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})
    [Tt\ ]
    (?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})
    (?:\.(?P<frac>\d+))?
    (?P<offset>
        [Zz]
      | (?P<sign>[+-])(?P<oh>\d{2}):?(?P<om>\d{2})
    )?
    """,
    re.VERBOSE | re.ASCII,
)


def rfc3339(dt: datetime) -> str:
    """``dt`` as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC. Raises ValueError if ``dt`` is naive."""
    if not isinstance(dt, datetime):
        raise TypeError(f"expected a datetime, got {type(dt).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: timestamps must carry a time zone")
    u = dt.astimezone(timezone.utc)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T"
        f"{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond // 1000:03d}Z"
    )


def parse_rfc3339(s: str, *, assume_utc: bool = False) -> datetime:
    """Parse an RFC 3339 date-time into an aware datetime in UTC.

    Raises ValueError on anything else (including a missing offset, unless
    ``assume_utc`` is true).
    """
    if not isinstance(s, str):
        raise TypeError(f"expected a str, got {type(s).__name__}")
    m = _RX.fullmatch(s.strip())
    if m is None:
        raise ValueError(f"not an RFC 3339 date-time: {s!r}")
    second = int(m["second"])
    frac = m["frac"] or ""
    micro = int((frac + "000000")[:6])
    if second == 60:  # leap second: datetime cannot hold it
        second, micro = 59, 999_999
    offset = m["offset"]
    if offset is None:
        if not assume_utc:
            raise ValueError(f"date-time without time offset: {s!r}")
        tz = timezone.utc
    elif offset in ("Z", "z"):
        tz = timezone.utc
    else:
        oh, om = int(m["oh"]), int(m["om"])
        if oh > 23 or om > 59:
            raise ValueError(f"bad time offset in {s!r}")
        delta = timedelta(hours=oh, minutes=om)
        tz = timezone(-delta if m["sign"] == "-" else delta)
    try:
        dt = datetime(
            int(m["year"]),
            int(m["month"]),
            int(m["day"]),
            int(m["hour"]),
            int(m["minute"]),
            second,
            micro,
            tzinfo=tz,
        )
    except ValueError as exc:
        raise ValueError(f"not a valid date-time: {s!r} ({exc})") from None
    try:
        return dt.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"date-time out of range in UTC: {s!r}") from None
