"""R-BOOT 4 (randomised, capped reconnect back-off) and R-BOOT 2 (boot retry interval)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.backoff import (
    DEFAULT_BOOT_RETRY_S,
    DEFAULT_CAP_S,
    DEFAULT_FLOOR_S,
    boot_retry_delay,
    reconnect_ceiling,
    reconnect_delay,
)

rands = st.floats(min_value=0.0, max_value=1.0, exclude_max=True, allow_nan=False)
attempts = st.integers(min_value=0, max_value=10_000)


def test_r_boot_4_defaults_are_sane():
    assert DEFAULT_FLOOR_S >= 0.5
    assert DEFAULT_CAP_S == 60.0


def test_r_boot_4_backoff_grows():
    ceilings = [reconnect_ceiling(a) for a in range(7)]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
    # same random draw → longer wait after more failures
    highs = [reconnect_delay(a, 0.99) for a in range(7)]
    assert highs == sorted(highs) and highs[0] < highs[-1]


def test_r_boot_4_backoff_capped():
    for a in (6, 7, 20, 100, 1023, 1024, 5000, 10**6):
        assert reconnect_ceiling(a) == DEFAULT_CAP_S
        assert reconnect_delay(a, 0.999999) <= DEFAULT_CAP_S
    assert reconnect_delay(50, 0.5, cap_s=10.0) <= 10.0


def test_r_boot_4_backoff_never_zero():
    assert reconnect_delay(0, 0.0) == DEFAULT_FLOOR_S
    assert reconnect_delay(100, 0.0) == DEFAULT_FLOOR_S
    assert reconnect_delay(0, 0.0, base_s=0.001) == DEFAULT_FLOOR_S  # floor wins over a tiny base


def test_r_boot_4_backoff_randomised_within_bounds():
    delays = {reconnect_delay(5, r / 10) for r in range(10)}
    assert len(delays) == 10  # spread, not one fixed value
    assert all(DEFAULT_FLOOR_S <= d <= 32.0 for d in delays)
    assert reconnect_delay(5, 0.5) == pytest.approx(DEFAULT_FLOOR_S + 0.5 * (32.0 - DEFAULT_FLOOR_S))


def test_r_boot_4_backoff_custom_parameters():
    assert reconnect_ceiling(2, base_s=3.0, factor=3.0, cap_s=100.0) == 27.0
    assert reconnect_delay(0, 0.0, floor_s=2.0, base_s=1.0) == 2.0


@given(attempt=attempts, rand=rands)
def test_r_boot_4_backoff_property_bounds(attempt, rand):
    d = reconnect_delay(attempt, rand)
    assert math.isfinite(d)
    assert DEFAULT_FLOOR_S <= d <= DEFAULT_CAP_S
    assert d <= reconnect_ceiling(attempt)
    assert d > 0


@given(
    attempt=attempts,
    rand=rands,
    base=st.floats(min_value=0.01, max_value=100.0),
    factor=st.floats(min_value=1.0, max_value=10.0),
    floor=st.floats(min_value=0.01, max_value=5.0),
    extra=st.floats(min_value=0.0, max_value=1000.0),
)
def test_r_boot_4_backoff_property_any_parameters(attempt, rand, base, factor, floor, extra):
    cap = floor + extra
    d = reconnect_delay(attempt, rand, base_s=base, factor=factor, cap_s=cap, floor_s=floor)
    assert floor <= d <= cap


@given(attempt=attempts, r1=rands, r2=rands)
def test_r_boot_4_backoff_property_monotonic_in_rand(attempt, r1, r2):
    lo, hi = sorted((r1, r2))
    assert reconnect_delay(attempt, lo) <= reconnect_delay(attempt, hi)


@given(attempt=st.integers(min_value=0, max_value=200), rand=rands)
def test_r_boot_4_backoff_property_ceiling_non_decreasing(attempt, rand):
    assert reconnect_ceiling(attempt) <= reconnect_ceiling(attempt + 1)
    assert reconnect_delay(attempt, rand) <= reconnect_delay(attempt + 1, rand) + 1e-9


@pytest.mark.parametrize("rand", [-0.1, 1.0, 1.5, float("nan"), True, "0.5", None])
def test_r_boot_4_backoff_rejects_bad_rand(rand):
    with pytest.raises(ValueError):
        reconnect_delay(0, rand)


@pytest.mark.parametrize("attempt", [-1, 1.5, True, "3", None])
def test_r_boot_4_backoff_rejects_bad_attempt(attempt):
    with pytest.raises(ValueError):
        reconnect_delay(attempt, 0.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_s": 0.0},
        {"base_s": -1.0},
        {"factor": 0.5},
        {"cap_s": 0.1},  # below the floor
        {"floor_s": 0.0},
        {"cap_s": float("inf")},
    ],
)
def test_r_boot_4_backoff_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        reconnect_delay(1, 0.5, **kwargs)


@pytest.mark.parametrize(("interval", "expected"), [(1, 1.0), (60, 60.0), (300, 300.0), (2.5, 2.5)])
def test_r_boot_2_boot_retry_uses_csms_interval(interval, expected):
    assert boot_retry_delay(interval) == expected


@pytest.mark.parametrize("interval", [None, 0, -5, True, "30", float("nan")])
def test_r_boot_2_boot_retry_default_when_zero_or_missing(interval):
    assert boot_retry_delay(interval) == DEFAULT_BOOT_RETRY_S == 30.0
