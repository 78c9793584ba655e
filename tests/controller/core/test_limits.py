"""R-SC golden cases for controller.core.limits: hand-computed composites and limits.

Every case states the composite it expects as ``[(startPeriod s, limit), ...]`` (W unless
the case says A). The ``tc_0xx`` cases follow the OCA OCPP 1.6 compliance test cases of
the Smart Charging profile (TC_056_CS … TC_082_CS): their profiles (kinds, purposes,
stack levels, durations, startPeriods, limits × 1000 as the test document does when the
configured unit is W) are taken from the published preparations where we know them,
and the expected composites are computed by hand with the OCPP 1.6 §3.13 rules. The
OCPP-level answers of those cases (Rejected, Accepted) belong to the adapter; here we
check what the limit function makes of the profiles.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from controller.core.limits import (
    NOMINAL_DC_VOLTAGE_V,
    ChargingProfile,
    Limit,
    ProfileError,
    composite_schedule,
    limit_at,
    parse_profile,
)

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)  # a Monday, noon UTC
CMAX = 150_000.0  # connector maximum used unless a case says otherwise
V = 400.0
TX = 42
US = timedelta(microseconds=1)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def profile(
    pid: int = 1,
    purpose: str = "TxDefaultProfile",
    stack: int = 0,
    periods=((0, 6000),),
    *,
    connector: int = 1,
    kind: str = "Absolute",
    start: datetime | None = T0,
    duration: int | None = None,
    unit: str = "W",
    recurrency: str | None = None,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    tx: int | None = None,
    received_at: datetime | None = None,
    purposes=None,
) -> ChargingProfile:
    sched: dict = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": a, "limit": b} for a, b in periods],
    }
    if start is not None and kind != "Relative":
        sched["startSchedule"] = start.isoformat()
    if duration is not None:
        sched["duration"] = duration
    d: dict = {
        "chargingProfileId": pid,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": sched,
    }
    if recurrency is not None:
        d["recurrencyKind"] = recurrency
    if valid_from is not None:
        d["validFrom"] = valid_from.isoformat()
    if valid_to is not None:
        d["validTo"] = valid_to.isoformat()
    if tx is not None:
        d["transactionId"] = tx
    kw = {} if purposes is None else {"purposes": purposes}
    return parse_profile(connector, d, received_at=received_at, **kw)


def composite(
    profiles,
    *,
    start: datetime = T0,
    duration: int = 400,
    connector: int = 1,
    unit: str | None = None,
    tx_start: datetime | None = None,
    tx_id: int | None = None,
    voltage: float = V,
    cmax: float = CMAX,
) -> list[tuple[int, float]]:
    c = composite_schedule(
        profiles, start, duration, connector, unit, tx_start, tx_id, voltage, cmax
    )
    assert c.start == start and c.duration_s == duration and c.unit == (unit or "W")
    return [(p.start_s, p.limit) for p in c.periods]


def limit(profiles, now, *, connector=1, tx_start=None, tx_id=None, voltage=V, cmax=CMAX) -> Limit:
    return limit_at(profiles, now, connector, tx_start, tx_id, voltage, cmax)


# --------------------------------------------------------------------------- OCA test cases


def test_tc_056_tx_default_profile_gives_the_composite_without_a_transaction():
    p = profile(periods=((0, 6000), (100, 8000), (200, 10000)), duration=300)
    # 0-100 6 kW, 100-200 8 kW, 200-300 10 kW, then the schedule is over: connector max
    assert composite([p]) == [(0, 6000), (100, 8000), (200, 10000), (300, CMAX)]


def test_tc_056_tx_default_profile_on_connector_0_applies_to_every_connector():
    p = profile(connector=0, periods=((0, 6000), (100, 8000)))
    assert composite([p], connector=1) == [(0, 6000), (100, 8000)]
    assert composite([p], connector=2) == [(0, 6000), (100, 8000)]


def test_tc_057_tx_profile_overrides_tx_default_and_ends_into_it():
    default = profile(1, periods=((0, 10000),))
    txp = profile(2, "TxProfile", periods=((0, 7000), (120, 9000)), duration=240, tx=TX)
    # TxProfile 7 kW then 9 kW until 240 s; then the TxDefaultProfile's 10 kW shows through
    assert composite([default, txp], tx_start=s(-60), tx_id=TX) == [
        (0, 7000),
        (120, 9000),
        (240, 10000),
    ]


def test_tc_057_tx_profile_wins_even_with_a_higher_limit():
    default = profile(1, stack=5, periods=((0, 10000),))
    txp = profile(2, "TxProfile", stack=0, periods=((0, 20000),), tx=TX)
    assert composite([default, txp], tx_start=s(-60), tx_id=TX) == [(0, 20000)]


def test_tc_058_1_tx_profile_does_not_apply_without_a_transaction():
    default = profile(1, periods=((0, 10000),))
    txp = profile(2, "TxProfile", periods=((0, 7000),))
    assert composite([default, txp]) == [(0, 10000)]
    assert composite([txp]) == [(0, CMAX)]
    assert limit([txp], T0).power_w is None


def test_tc_058_2_tx_profile_for_another_transaction_does_not_apply():
    default = profile(1, periods=((0, 10000),))
    txp = profile(2, "TxProfile", periods=((0, 7000),), tx=TX + 1)
    assert composite([default, txp], tx_start=s(-60), tx_id=TX) == [(0, 10000)]


def test_tc_059_remote_start_tx_profile_counts_from_the_transaction_start():
    # RemoteStartTransaction.chargingProfile: TxProfile, Relative, no transactionId yet
    txp = profile(
        7,
        "TxProfile",
        kind="Relative",
        start=None,
        periods=((0, 6000), (60, 11000)),
        purposes=("TxProfile",),
    )
    # the transaction started 30 s before the GetCompositeSchedule: 6 kW for 30 s more, then 11 kW
    assert composite([txp], duration=120, tx_start=s(-30), tx_id=TX) == [(0, 6000), (30, 11000)]


def test_tc_060_remote_start_profile_that_is_not_a_tx_profile_is_refused():
    with pytest.raises(ProfileError) as e:
        profile(7, "TxDefaultProfile", purposes=("TxProfile",))
    assert e.value.reason == "purpose-not-allowed"
    # nothing was installed: the composite stays the connector maximum
    assert composite([], tx_start=s(-30), tx_id=TX) == [(0, CMAX)]


def test_tc_066_composite_of_charge_point_max_tx_default_and_tx_profile():
    cap = profile(1, "ChargePointMaxProfile", connector=0, periods=((0, 10000),), duration=86400)
    default = profile(2, periods=((0, 9000),))
    txp = profile(
        3, "TxProfile", periods=((0, 8000), (100, 12000), (200, 6000)), duration=300, tx=TX
    )
    # 0-100 Tx 8 kW; 100-200 Tx 12 kW capped to 10 kW; 200-300 Tx 6 kW; 300- default 9 kW
    assert composite([cap, default, txp], tx_start=s(-10), tx_id=TX) == [
        (0, 8000),
        (100, 10000),
        (200, 6000),
        (300, 9000),
    ]


def test_tc_066_station_composite_reports_the_charge_point_max():
    cap = profile(1, "ChargePointMaxProfile", connector=0, periods=((0, 10000),), duration=86400)
    default = profile(2, periods=((0, 9000),))
    txp = profile(3, "TxProfile", periods=((0, 8000),), tx=TX)
    assert composite([cap, default, txp], connector=0, cmax=300_000) == [(0, 10000)]
    # after the ChargePointMaxProfile's day: the station maximum
    assert composite([cap], connector=0, start=s(86400 - 100), duration=200, cmax=300_000) == [
        (0, 10000),
        (100, 300_000),
    ]


def test_tc_067_clearing_profiles_changes_the_composite():
    top = profile(1, stack=1, periods=((0, 6000), (60, 8000), (200, 10000)), duration=400)
    below = profile(2, stack=0, periods=((0, 5000),))
    assert composite([top, below]) == [(0, 6000), (60, 8000), (200, 10000)]
    assert composite([below]) == [(0, 5000)]  # ClearChargingProfile(id=1)
    assert composite([]) == [(0, CMAX)]  # ClearChargingProfile() clears all


def test_tc_072_stacking_the_higher_level_until_its_duration_ends():
    p1 = profile(
        1,
        stack=0,
        periods=((0, 6000), (100, 8000), (200, 10000)),
        duration=400,
        valid_from=s(-1),
        valid_to=s(401),
    )
    p2 = profile(
        2,
        stack=1,
        periods=((0, 10000), (100, 6000)),
        duration=150,
        valid_from=s(-1),
        valid_to=s(401),
    )
    # 0-100 p2 10 kW, 100-150 p2 6 kW, 150-200 p1 8 kW, 200-400 p1 10 kW, 400- (p1 over) max
    assert composite([p1, p2], duration=450) == [
        (0, 10000),
        (100, 6000),
        (150, 8000),
        (200, 10000),
        (400, CMAX),
    ]


def test_tc_072_stacking_tx_default_on_connector_0_and_connector_n():
    station = profile(1, connector=0, stack=1, periods=((0, 4000),))
    own = profile(2, connector=1, stack=0, periods=((0, 6000),), duration=150)
    # connector 1's own profile hides connector 0's while in force, whatever the stack levels
    # and even with a higher limit; then connector 0's shows through
    assert composite([station, own], connector=1) == [(0, 6000), (150, 4000)]
    assert composite([station, own], connector=2) == [(0, 4000)]


def test_tc_082_tx_default_set_during_a_transaction_applies_to_it():
    # received at T0, no startSchedule: starts when received; the transaction began 10 min ago
    p = profile(1, start=None, periods=((0, 7000), (300, 9000)), received_at=T0)
    assert limit([p], T0, tx_start=s(-600), tx_id=TX) == Limit(7000, "W", s(300))
    assert composite([p], tx_start=s(-600), tx_id=TX) == [(0, 7000), (300, 9000)]


# --------------------------------------------------------------------------- kinds


def test_r_sc_2_daily_recurring_wraps_at_midnight():
    midnight = datetime(2024, 1, 1, tzinfo=timezone.utc)
    p = profile(
        periods=((0, 11000), (22 * 3600, 4000)),
        kind="Recurring",
        recurrency="Daily",
        start=midnight,
    )
    # from 21:00 on 2 Jan for 4 h: 11 kW, 22:00 4 kW, 00:00 (wrap) 11 kW
    start = datetime(2024, 1, 2, 21, 0, tzinfo=timezone.utc)
    assert composite([p], start=start, duration=4 * 3600) == [
        (0, 11000),
        (3600, 4000),
        (10800, 11000),
    ]


def test_r_sc_2_weekly_recurring_wraps_at_the_week_boundary():
    monday = datetime(2024, 1, 1, tzinfo=timezone.utc)
    p = profile(
        periods=((0, 20000), (5 * 86400, 50000)),
        kind="Recurring",
        recurrency="Weekly",
        start=monday,
    )
    # Sunday 22:00 → Monday 02:00: the weekend's 50 kW, then Monday's 20 kW from 00:00
    start = datetime(2024, 1, 7, 22, 0, tzinfo=timezone.utc)
    assert composite([p], start=start, duration=4 * 3600) == [(0, 50000), (7200, 20000)]


def test_r_sc_2_recurring_with_a_duration_leaves_a_gap_every_day():
    p = profile(periods=((0, 5000),), kind="Recurring", recurrency="Daily", duration=3600)
    # next day 11:30 → 13:30: gap, 12:00-13:00 5 kW, gap
    assert composite([p], start=s(86400 - 1800), duration=7200) == [
        (0, CMAX),
        (1800, 5000),
        (5400, CMAX),
    ]


def test_r_sc_2_recurring_does_not_apply_before_its_start_schedule():
    p = profile(periods=((0, 5000),), kind="Recurring", recurrency="Daily", start=s(3600))
    assert composite([p], duration=7200) == [(0, CMAX), (3600, 5000)]


def test_r_sc_2_recurring_duration_longer_than_the_recurrence_is_cut_at_the_next_one():
    p = profile(
        periods=((0, 5000), (86000, 7000)), kind="Recurring", recurrency="Daily", duration=100_000
    )
    # offset 85900: 5 kW; 86000: 7 kW; 86400: the next day's first period again
    assert composite([p], start=s(85900), duration=600) == [(0, 5000), (100, 7000), (500, 5000)]


def test_r_sc_2_recurring_many_days_later_keeps_its_phase():
    p = profile(periods=((0, 5000), (3600, 9000)), kind="Recurring", recurrency="Daily")
    start = s(100 * 86400 - 600)  # 100 days later, 10 min before the recurrence
    assert composite([p], start=start, duration=4800) == [(0, 9000), (600, 5000), (4200, 9000)]


def test_r_sc_2_relative_counts_from_the_transaction_start():
    p = profile(kind="Relative", start=None, periods=((0, 5000), (600, 9000)))
    assert composite([p], duration=900, tx_start=s(-300), tx_id=TX) == [(0, 5000), (300, 9000)]


def test_r_sc_2_relative_without_a_transaction_does_not_apply():
    p = profile(kind="Relative", start=None, periods=((0, 5000),))
    assert composite([p]) == [(0, CMAX)]
    assert limit([p], T0) == Limit(None, None, None)


def test_r_sc_2_relative_schedule_with_a_duration_ends_into_the_lower_stack():
    rel = profile(1, stack=1, kind="Relative", start=None, periods=((0, 5000),), duration=600)
    base = profile(2, stack=0, periods=((0, 3000),))
    assert composite([rel, base], duration=900, tx_start=T0, tx_id=TX) == [(0, 5000), (600, 3000)]


def test_r_sc_2_absolute_schedule_starting_later():
    p = profile(start=s(50))
    assert composite([p], duration=100) == [(0, CMAX), (50, 6000)]


def test_r_sc_2_absolute_without_start_schedule_starts_when_received():
    p = profile(start=None, received_at=s(30) + timedelta(microseconds=1234))
    assert p.schedule.start == s(30) + timedelta(milliseconds=1)  # kept to the millisecond
    assert p.to_ocpp()["chargingSchedule"]["startSchedule"] == "2024-01-01T12:00:30.001Z"
    assert composite([p], duration=100) == [(0, CMAX), (31, 6000)]


# --------------------------------------------------------------------------- validity and stacking


def test_r_sc_2_valid_from_is_inclusive():
    p = profile(valid_from=s(100))
    assert composite([p], duration=200) == [(0, CMAX), (100, 6000)]
    assert limit([p], s(100)).power_w == 6000
    assert limit([p], s(100) - US) == Limit(None, None, s(100))


def test_r_sc_2_valid_to_is_exclusive():
    p = profile(valid_to=s(100))
    assert composite([p], duration=200) == [(0, 6000), (100, CMAX)]
    assert limit([p], s(100) - US) == Limit(6000, "W", s(100))
    assert limit([p], s(100)) == Limit(None, None, None)


def test_r_sc_2_validity_window_inside_a_daily_schedule():
    p = profile(
        periods=((0, 5000), (3600, 8000)),
        kind="Recurring",
        recurrency="Daily",
        valid_from=s(1800),
        valid_to=s(5400),
    )
    assert composite([p], duration=7200) == [(0, CMAX), (1800, 5000), (3600, 8000), (5400, CMAX)]


def test_r_sc_2_valid_from_after_the_schedule_ended_never_applies():
    p = profile(duration=100, valid_from=s(200))
    assert composite([p], duration=300) == [(0, CMAX)]
    assert limit([p], T0) == Limit(None, None, None)


def test_r_sc_2_schedule_past_its_duration_shows_the_lower_stack_level():
    high = profile(1, stack=5, periods=((0, 4000),), duration=200)
    low = profile(2, stack=2, periods=((0, 9000),))
    assert composite([high, low]) == [(0, 4000), (200, 9000)]


def test_r_sc_2_higher_stack_level_starting_later_takes_over():
    low = profile(1, stack=0, periods=((0, 9000),))
    high = profile(2, stack=3, periods=((0, 4000),), start=s(100), duration=100)
    assert composite([low, high]) == [(0, 9000), (100, 4000), (200, 9000)]


def test_r_sc_2_equal_stack_levels_take_the_lower_limit():
    a = profile(1, stack=2, periods=((0, 9000), (100, 3000)))
    b = profile(2, stack=2, connector=1, periods=((0, 5000),), start=s(50))
    assert composite([a, b]) == [(0, 9000), (50, 5000), (100, 3000)]


def test_r_sc_2_connector_0_default_shows_through_when_the_connectors_own_is_not_valid():
    station = profile(1, connector=0, stack=0, periods=((0, 10000),))
    own = profile(2, connector=1, stack=9, periods=((0, 6000),), valid_from=s(100), valid_to=s(300))
    assert composite([station, own]) == [(0, 10000), (100, 6000), (300, 10000)]


def test_r_sc_1_tx_profile_without_transaction_id_applies_to_the_running_transaction():
    txp = profile(1, "TxProfile", periods=((0, 7000),))
    assert composite([txp], tx_start=s(-5), tx_id=TX) == [(0, 7000)]
    assert composite([txp], tx_start=s(-5), tx_id=None) == [(0, 7000)]  # id not known yet (offline)


def test_r_sc_1_tx_profile_applies_only_on_its_connector():
    txp = profile(1, "TxProfile", connector=2, periods=((0, 7000),), tx=TX)
    assert composite([txp], connector=1, tx_start=s(-5), tx_id=TX) == [(0, CMAX)]
    assert composite([txp], connector=2, tx_start=s(-5), tx_id=TX) == [(0, 7000)]


# --------------------------------------------------------------------------- caps and units


def test_r_sc_5_charge_point_max_caps_the_connector():
    cap = profile(1, "ChargePointMaxProfile", connector=0, periods=((0, 7000), (100, 20000)))
    default = profile(2, periods=((0, 10000),))
    assert composite([cap, default]) == [(0, 7000), (100, 10000)]


def test_r_sc_5_charge_point_max_profiles_stack_among_themselves():
    cap_low = profile(1, "ChargePointMaxProfile", connector=0, stack=0, periods=((0, 5000),))
    cap_high = profile(
        2, "ChargePointMaxProfile", connector=0, stack=1, periods=((0, 9000),), duration=100
    )
    default = profile(3, periods=((0, 20000),))
    assert composite([cap_low, cap_high, default]) == [(0, 9000), (100, 5000)]


def test_r_sc_5_connector_maximum_caps_a_profile():
    p = profile(periods=((0, 200_000), (100, 50_000)))
    assert composite([p]) == [(0, CMAX), (100, 50_000)]
    assert limit([p], T0) == Limit(CMAX, "W", s(100))


def test_r_sc_5_no_profile_is_the_connector_maximum():
    assert composite([]) == [(0, CMAX)]
    assert limit([], T0) == Limit(None, None, None)


def test_r_sc_5_profiles_of_other_connectors_are_ignored():
    p = profile(connector=2)
    assert composite([p], connector=1) == [(0, CMAX)]


def test_r_sc_5_station_composite_counts_connector_0_profiles_only():
    station_default = profile(1, connector=0, periods=((0, 20000),))
    own = profile(2, connector=1, stack=5, periods=((0, 5000),))
    cap = profile(3, "ChargePointMaxProfile", connector=0, periods=((0, 30000), (200, 15000)))
    txp = profile(4, "TxProfile", connector=1, periods=((0, 1000),), tx=TX)
    assert composite(
        [station_default, own, cap, txp], connector=0, tx_start=s(-5), tx_id=TX, cmax=300_000
    ) == [(0, 20000), (200, 15000)]


def test_r_sc_5_zero_limit_is_reported():
    p = profile(periods=((0, 0), (100, 6000)))
    assert composite([p]) == [(0, 0.0), (100, 6000)]


def test_r_sc_5_consecutive_equal_limits_are_merged():
    a = profile(1, stack=1, periods=((0, 6000), (100, 6000), (200, 7000)), duration=300)
    b = profile(2, stack=0, periods=((0, 7000),))
    # 0-200 6 kW (two periods), 200-300 7 kW from a, 300- 7 kW from b: one period each
    assert composite([a, b]) == [(0, 6000), (200, 7000)]


def test_r_sc_3_amperes_are_converted_with_the_dc_voltage():
    p = profile(unit="A", periods=((0, 16), (100, 32.5)))
    assert composite([p], voltage=400) == [(0, 6400), (100, 13000)]
    assert composite([p], voltage=500) == [(0, 8000), (100, 16250)]
    assert limit([p], T0, voltage=400) == Limit(6400, "A", s(100))


def test_r_sc_3_unknown_voltage_uses_the_nominal_voltage():
    p = profile(unit="A", periods=((0, 16),))
    assert NOMINAL_DC_VOLTAGE_V == 400.0
    assert composite([p], voltage=0) == [(0, 6400)]
    assert composite([p], voltage=-5) == [(0, 6400)]


def test_r_sc_3_composite_in_amperes():
    p = profile(periods=((0, 11000),), duration=100)
    # 11 kW / 400 V = 27.5 A, then the connector maximum 150 kW / 400 V = 375 A
    assert composite([p], unit="A", duration=200) == [(0, 27.5), (100, 375.0)]


def test_r_sc_3_composite_in_amperes_rounds_down_to_a_tenth():
    p = profile(periods=((0, 10000),))
    assert composite([p], unit="A", voltage=380) == [(0, 26.3)]  # 26.315… A
    assert composite([p], unit="A", voltage=360) == [(0, 27.7)]  # 27.777… A, not 27.8


def test_r_sc_3_mixed_units_compare_in_watts():
    default = profile(1, unit="A", periods=((0, 20),))  # 8 kW at 400 V
    cap = profile(2, "ChargePointMaxProfile", connector=0, periods=((0, 7000), (100, 9000)))
    assert composite([default, cap]) == [(0, 7000), (100, 8000)]
    assert limit([default, cap], s(100)).unit == "A"
    assert limit([default, cap], T0).unit == "W"


# --------------------------------------------------------------------------- boundaries


def test_r_sc_6_a_period_boundary_instant_uses_the_new_period():
    p = profile(periods=((0, 6000), (100, 8000)))
    assert limit([p], s(100) - US) == Limit(6000, "W", s(100))
    assert limit([p], s(100)) == Limit(8000, "W", None)


def test_r_sc_6_next_change_is_the_schedule_end():
    p = profile(duration=250)
    assert limit([p], s(10)) == Limit(6000, "W", s(250))


def test_r_sc_6_next_change_at_the_daily_wrap():
    p = profile(periods=((0, 5000), (3600, 7000)), kind="Recurring", recurrency="Daily")
    assert limit([p], s(80000)) == Limit(7000, "W", s(86400))


def test_r_sc_6_next_change_skips_a_wrap_that_keeps_the_same_limit():
    p = profile(
        periods=((0, 5000), (3600, 7000), (82800, 5000)), kind="Recurring", recurrency="Daily"
    )
    # 23:30 after the start: 5 kW, and the wrap at 24:00 keeps 5 kW until 25:00
    assert limit([p], s(84600)) == Limit(5000, "W", s(86400 + 3600))
    assert composite([p], start=s(84600), duration=7200) == [(0, 5000), (5400, 7000)]


def test_r_sc_6_next_change_none_for_a_daily_single_period():
    p = profile(periods=((0, 5000),), kind="Recurring", recurrency="Daily")
    assert limit([p], s(10)) == Limit(5000, "W", None)


def test_r_sc_6_next_change_when_a_higher_stack_level_becomes_valid():
    low = profile(1, stack=0)
    high = profile(2, stack=1, periods=((0, 3000),), valid_from=s(500))
    assert limit([low, high], T0) == Limit(6000, "W", s(500))
    assert limit([low, high], s(500)) == Limit(3000, "W", None)


def test_r_sc_6_next_change_hides_lower_stack_levels():
    low = profile(1, stack=0, periods=((0, 6000), (50, 7000)))
    high = profile(2, stack=1, periods=((0, 3000),), duration=300)
    # the lower level's boundary at 50 s is hidden: the next change is the higher one's end
    assert limit([low, high], T0) == Limit(3000, "W", s(300))


def test_r_sc_5_composite_start_between_seconds():
    p = profile(periods=((0, 6000), (100, 8000)))
    # start at T0 + 0.5 s: second 99 is T0 + 99.5 s (6 kW), second 100 is T0 + 100.5 s (8 kW)
    assert composite([p], start=s(0.5), duration=200) == [(0, 6000), (100, 8000)]


def test_r_sc_5_zero_duration_reports_the_limit_at_start():
    p = profile()
    assert composite([p], duration=0) == [(0, 6000)]


def test_r_sc_5_composite_to_ocpp():
    p = profile(periods=((0, 6000), (100, 8000)))
    c = composite_schedule([p], s(0.25), 300, 1, "A", None, None, 400, CMAX)
    assert c.to_ocpp() == {
        "duration": 300,
        "startSchedule": "2024-01-01T12:00:00.250Z",
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 15.0},
            {"startPeriod": 100, "limit": 20.0},
        ],
    }


# --------------------------------------------------------------------------- parsing


def raw(**over) -> dict:
    d = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "startSchedule": "2024-01-01T12:00:00Z",
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6000}],
        },
    }
    """A valid profile dict with fields replaced (None removes a field)."""
    sched = {**d["chargingSchedule"], **over.pop("schedule", {})}
    d["chargingSchedule"] = {k: v for k, v in sched.items() if v is not None}
    d.update(over)
    return {k: v for k, v in d.items() if v is not None}


def periods(*pairs):
    return {"chargingSchedulePeriod": [{"startPeriod": a, "limit": b} for a, b in pairs]}


@pytest.mark.parametrize(
    "connector, d, reason",
    [
        (1, raw(schedule=periods((10, 6000))), "first-period-not-zero"),
        (1, raw(schedule=periods((0, 6000), (100, 7000), (100, 8000))), "periods-not-ascending"),
        (1, raw(schedule=periods((0, 6000), (200, 7000), (100, 8000))), "periods-not-ascending"),
        (1, raw(schedule=periods(*[(60 * i, 6000 + i) for i in range(51)])), "too-many-periods"),
        (1, raw(schedule=periods()), "no-periods"),
        (1, raw(schedule=periods((0, 6000), (60, -1))), "negative-limit"),
        (1, raw(chargingProfileKind="Recurring"), "recurring-without-recurrency-kind"),
        (
            1,
            raw(
                chargingProfileKind="Recurring",
                recurrencyKind="Daily",
                schedule={"startSchedule": None},
            ),
            "recurring-without-start-schedule",
        ),
        (1, raw(schedule={"startSchedule": None}), "absolute-without-start-schedule"),
        (
            1,
            raw(validFrom="2024-01-02T00:00:00Z", validTo="2024-01-02T00:00:00Z"),
            "valid-from-not-before-valid-to",
        ),
        (
            1,
            raw(validFrom="2024-01-03T00:00:00Z", validTo="2024-01-02T00:00:00Z"),
            "valid-from-not-before-valid-to",
        ),
        (1, raw(stackLevel=21), "stack-level-out-of-range"),
        (1, raw(stackLevel=-1), "stack-level-out-of-range"),
        (0, raw(chargingProfilePurpose="TxProfile"), "tx-profile-on-connector-0"),
        (1, raw(chargingProfilePurpose="ChargePointMaxProfile"), "max-profile-not-on-connector-0"),
        (1, raw(chargingProfilePurpose="TxMaxProfile"), "bad-purpose"),
        (1, raw(chargingProfileKind="Sometimes"), "bad-kind"),
        (1, raw(schedule={"chargingRateUnit": "kW"}), "bad-unit"),
        (1, raw(chargingProfileKind="Recurring", recurrencyKind="Monthly"), "bad-recurrency"),
        (1, raw(schedule={"duration": -1}), "negative-duration"),
        (-1, raw(), "bad-connector"),
        (1, raw(stackLevel="0"), "invalid"),
        (1, raw(chargingSchedule=None), "invalid"),
        (1, raw(validFrom="yesterday"), "invalid"),
        (1, raw(schedule=periods((0, "6000"))), "invalid"),
    ],
)
def test_r_sc_2_parse_errors(connector, d, reason):
    with pytest.raises(ProfileError) as e:
        parse_profile(connector, d)
    assert e.value.reason == reason


def test_r_sc_2_limits_are_configurable():
    d = raw(stackLevel=3, schedule=periods((0, 1), (10, 2), (20, 3)))
    with pytest.raises(ProfileError, match="stack-level-out-of-range"):
        parse_profile(1, d, max_stack_level=2)
    with pytest.raises(ProfileError, match="too-many-periods"):
        parse_profile(1, d, max_periods=2)
    assert len(parse_profile(1, d, max_periods=3).schedule.periods) == 3
    fifty = raw(schedule=periods(*[(i, 1) for i in range(50)]))
    assert len(parse_profile(1, fifty).schedule.periods) == 50


def test_r_sc_2_parse_reads_every_field_and_round_trips():
    d = {
        "chargingProfileId": 9,
        "transactionId": 42,
        "stackLevel": 20,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Recurring",
        "recurrencyKind": "Weekly",
        "validFrom": "2024-01-01T00:00:00+01:00",
        "validTo": "2024-02-01T00:00:00.123456Z",
        "chargingSchedule": {
            "duration": 3600,
            "startSchedule": "2024-01-01T06:00:00Z",
            "chargingRateUnit": "A",
            "minChargingRate": 6.0,
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 16, "numberPhases": 3},
                {"startPeriod": 600, "limit": 8.1},
            ],
        },
    }
    p = parse_profile(2, d)
    got = (
        p.profile_id,
        p.connector_id,
        p.stack_level,
        p.purpose,
        p.kind,
        p.recurrency,
        p.transaction_id,
    )
    assert got == (9, 2, 20, "TxProfile", "Recurring", "Weekly", 42)
    assert p.valid_from == datetime(2023, 12, 31, 23, 0, tzinfo=timezone.utc)
    assert p.valid_to == datetime(2024, 2, 1, 0, 0, 0, 123000, tzinfo=timezone.utc)
    assert (p.schedule.unit, p.schedule.duration_s) == ("A", 3600)
    assert [(x.start_s, x.limit) for x in p.schedule.periods] == [(0, 16.0), (600, 8.1)]
    assert parse_profile(2, p.to_ocpp()) == p
    assert p.to_ocpp()["validTo"] == "2024-02-01T00:00:00.123Z"


def test_r_sc_2_parse_drops_what_means_nothing_for_the_profile():
    p = parse_profile(1, raw(transactionId=5, recurrencyKind="Daily", schedule={"duration": 0}))
    assert p.transaction_id is None  # transactionId outside a TxProfile
    assert p.recurrency is None  # recurrencyKind outside Recurring
    assert p.schedule.duration_s is None  # duration 0: open-ended
    assert "transactionId" not in p.to_ocpp() and "recurrencyKind" not in p.to_ocpp()
