"""The store's charging-profile table (R-SC 2: installed profiles persist)."""

from __future__ import annotations

from controller.store.sqlite import Store


def _profile(pid: int, level: int = 0, purpose: str = "TxDefaultProfile") -> dict:
    return {
        "chargingProfileId": pid, "stackLevel": level, "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000.0}]},
    }


def test_r_sc_2_profiles_persist_and_replace_atomically(tmp_path):
    store = Store.open(tmp_path / "s.sqlite")
    store.replace_charging_profiles([], [(1, _profile(7)), (0, _profile(8, 2))])
    store.replace_charging_profiles([7], [(2, _profile(9, 1, "TxProfile"))])
    store.close()
    again = Store.open(tmp_path / "s.sqlite")
    assert again.charging_profiles() == [(0, _profile(8, 2)), (2, _profile(9, 1, "TxProfile"))]
    again.close()


def test_r_sc_2_a_failed_replacement_keeps_the_old_profiles(tmp_path):
    store = Store.open(tmp_path / "s.sqlite")
    store.replace_charging_profiles([], [(1, _profile(7))])
    bad = _profile(9)
    bad["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] = float("nan")
    try:
        store.replace_charging_profiles([7], [(1, bad)])
    except ValueError:
        pass
    assert store.charging_profiles() == [(1, _profile(7))]
    store.close()
