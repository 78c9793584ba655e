"""RFC 3339 timestamps on the wire (R-STATUS 1 timestamps, R-BOOT 5 currentTime)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.timefmt import parse_rfc3339, rfc3339

# RFC 3339 §5.6 date-time, written out here independently of the module.
DATE_FULLYEAR = r"\d{4}"
DATE_MONTH = r"(0[1-9]|1[0-2])"
DATE_MDAY = r"(0[1-9]|[12]\d|3[01])"
TIME_HOUR = r"([01]\d|2[0-3])"
TIME_MINUTE = r"[0-5]\d"
TIME_SECOND = r"([0-5]\d|60)"
TIME_SECFRAC = r"(\.\d+)"
TIME_NUMOFFSET = rf"[+-]{TIME_HOUR}:{TIME_MINUTE}"
TIME_OFFSET = rf"([Zz]|{TIME_NUMOFFSET})"
PARTIAL_TIME = rf"{TIME_HOUR}:{TIME_MINUTE}:{TIME_SECOND}{TIME_SECFRAC}?"
FULL_DATE = rf"{DATE_FULLYEAR}-{DATE_MONTH}-{DATE_MDAY}"
FULL_TIME = rf"{PARTIAL_TIME}{TIME_OFFSET}"
RFC3339_DATE_TIME = re.compile(rf"{FULL_DATE}[Tt]{FULL_TIME}")
# What we send: UTC, 'Z', exactly milliseconds.
OUR_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")

aware = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(9998, 12, 31),
    timezones=st.sampled_from(
        [timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))]
    ),
)


def test_r_status_1_timestamp_format():
    dt = datetime(2026, 4, 16, 8, 30, 0, 123456, tzinfo=timezone.utc)
    assert rfc3339(dt) == "2026-04-16T08:30:00.123Z"
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)) == "2026-01-02T03:04:05.000Z"


def test_r_status_1_timestamp_converted_to_utc():
    dt = datetime(2026, 4, 16, 10, 30, 0, 5000, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(dt) == "2026-04-16T08:30:00.005Z"
    dt = datetime(2025, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1)))
    assert rfc3339(dt) == "2026-01-01T00:30:00.000Z"


def test_r_status_1_timestamp_truncates_below_milliseconds():
    dt = datetime(2026, 4, 16, 23, 59, 59, 999999, tzinfo=timezone.utc)
    assert rfc3339(dt) == "2026-04-16T23:59:59.999Z"  # never rounded into the next day


def test_r_status_1_naive_datetime_rejected():
    with pytest.raises(ValueError):
        rfc3339(datetime(2026, 4, 16, 8, 30))
    with pytest.raises(TypeError):
        rfc3339("2026-04-16T08:30:00Z")  # type: ignore[arg-type]


@given(aware)
def test_r_status_1_timestamp_matches_rfc3339_grammar(dt):
    s = rfc3339(dt)
    assert RFC3339_DATE_TIME.fullmatch(s), s
    assert OUR_FORMAT.fullmatch(s), s


@given(aware)
def test_r_status_1_roundtrip(dt):
    s = rfc3339(dt)
    back = parse_rfc3339(s)
    assert back.utcoffset() == timedelta(0)
    assert back == dt.replace(microsecond=dt.microsecond // 1000 * 1000)
    assert rfc3339(back) == s


@given(aware, aware)
def test_r_status_1_format_preserves_order(a, b):
    if a <= b:
        assert rfc3339(a) <= rfc3339(b)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-04-16T08:30:00Z", datetime(2026, 4, 16, 8, 30, tzinfo=timezone.utc)),
        ("2026-04-16T08:30:00z", datetime(2026, 4, 16, 8, 30, tzinfo=timezone.utc)),
        ("2026-04-16t08:30:00Z", datetime(2026, 4, 16, 8, 30, tzinfo=timezone.utc)),
        ("2026-04-16 08:30:00Z", datetime(2026, 4, 16, 8, 30, tzinfo=timezone.utc)),
        ("2026-04-16T08:30:00.1Z", datetime(2026, 4, 16, 8, 30, 0, 100000, tzinfo=timezone.utc)),
        ("2026-04-16T08:30:00.123Z", datetime(2026, 4, 16, 8, 30, 0, 123000, tzinfo=timezone.utc)),
        ("2026-04-16T08:30:00.123456Z", datetime(2026, 4, 16, 8, 30, 0, 123456, tzinfo=timezone.utc)),
        ("2026-04-16T08:30:00.123456789Z", datetime(2026, 4, 16, 8, 30, 0, 123456, tzinfo=timezone.utc)),
        ("2026-04-16T10:30:00+02:00", datetime(2026, 4, 16, 8, 30, tzinfo=timezone.utc)),
        ("2026-04-16T10:30:00.5+02:00", datetime(2026, 4, 16, 8, 30, 0, 500000, tzinfo=timezone.utc)),
        ("2026-04-16T03:00:00-05:30", datetime(2026, 4, 16, 8, 30, tzinfo=timezone.utc)),
        ("2026-04-16T08:30:00+00:00", datetime(2026, 4, 16, 8, 30, tzinfo=timezone.utc)),
        ("2026-04-16T08:30:00-00:00", datetime(2026, 4, 16, 8, 30, tzinfo=timezone.utc)),
        ("2026-04-16T10:30:00+0200", datetime(2026, 4, 16, 8, 30, tzinfo=timezone.utc)),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)),
    ],
)
def test_r_boot_5_parse_rfc3339(text, expected):
    got = parse_rfc3339(text)
    assert got == expected
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-04-16",
        "2026-04-16T08:30Z",
        "2026-04-16T08:30:00",  # no offset
        "2026-04-16T08:30:00.Z",
        "2026-13-16T08:30:00Z",
        "2026-02-30T08:30:00Z",
        "2026-04-16T24:00:00Z",
        "2026-04-16T08:60:00Z",
        "2026-04-16T08:30:00+24:00",
        "2026-04-16T08:30:00+02:60",
        "2026-04-16T08:30:00+2",
        "26-04-16T08:30:00Z",
        "2026-04-16T08:30:00ZZ",
        "2026-04-16X08:30:00Z",
        "0000-01-01T00:00:00Z",
        "२०२६-04-16T08:30:00Z",  # non-ASCII digits
    ],
)
def test_r_boot_5_parse_rejects_non_rfc3339(text):
    with pytest.raises(ValueError):
        parse_rfc3339(text)


def test_r_boot_5_parse_missing_offset_only_with_assume_utc():
    assert parse_rfc3339("2026-04-16T08:30:00", assume_utc=True) == datetime(
        2026, 4, 16, 8, 30, tzinfo=timezone.utc
    )


def test_r_boot_5_parse_rejects_non_string():
    with pytest.raises(TypeError):
        parse_rfc3339(1234)  # type: ignore[arg-type]
