"""R-MODEL 1-3: product model profiles as data (controller/data/models.toml)."""

from __future__ import annotations

import dataclasses

import pytest

from controller.core.models import (
    MODELS,
    ConnectorProfile,
    ModelDataError,
    ModelProfile,
    UnknownModelError,
    find_model,
    load_models,
)

NAMES = [
    "EVlink Pro DC 60",
    "EVlink Pro DC 180",
    "Schneider StarCharge Fast 60",
    "Schneider StarCharge Fast 180",
    "Schneider StarCharge Fast 320",
]

# name: (screen, tariff_best, station kW, connector kW, types, power_loss)
EXPECTED = {
    "EVlink Pro DC 60": ((800, 480), (564, 312), 60, 60, ("CCS2", "CHAdeMO"), "after_boot"),
    "EVlink Pro DC 180": ((1024, 768), (987, 546), 180, 150, ("CCS2", "CHAdeMO"), "after_boot"),
    "Schneider StarCharge Fast 60": ((800, 480), (564, 312), 60, 60, ("CCS2", "CCS2"), "before_shutdown"),
    "Schneider StarCharge Fast 180": ((1024, 768), (987, 546), 180, 150, ("CCS2", "CCS2"), "before_shutdown"),
    "Schneider StarCharge Fast 320": ((1024, 768), (987, 546), 320, 250, ("CCS2", "CCS2"), "before_shutdown"),
}  # fmt: skip


def test_r_model_2_five_profiles():
    assert list(MODELS) == NAMES
    assert all(isinstance(p, ModelProfile) for p in MODELS.values())


@pytest.mark.parametrize("name", NAMES)
def test_r_model_2_screen_tariff_screensaver_logo(name):
    p = MODELS[name]
    screen, tariff, *_ = EXPECTED[name]
    assert p.screen == screen
    assert p.tariff_best == tariff
    assert p.screensaver == p.screen
    assert p.logo == (200, 60)


@pytest.mark.parametrize("name", NAMES)
def test_r_model_2_tariff_ratio_47_26(name):
    w, h = MODELS[name].tariff_best
    assert w * 26 == h * 47


@pytest.mark.parametrize("name", NAMES)
def test_r_model_1_connectors_and_power(name):
    p = MODELS[name]
    _, _, station, per_connector, types, _ = EXPECTED[name]
    assert p.max_power_kw == station
    assert p.number_of_connectors == 2
    assert p.connectors == (
        ConnectorProfile(1, types[0], per_connector),
        ConnectorProfile(2, types[1], per_connector),
    )
    assert p.connector(2).type == types[1]
    with pytest.raises(KeyError):
        p.connector(3)


@pytest.mark.parametrize("name", NAMES)
def test_r_model_3_power_loss_behaviour(name):
    assert MODELS[name].power_loss == EXPECTED[name][5]


@pytest.mark.parametrize("name", NAMES)
def test_r_boot_2_vendor_and_model_fit_ocpp_cistring20(name):
    p = MODELS[name]
    assert p.charge_point_vendor == "Schneider Electric"
    assert 0 < len(p.charge_point_model) <= 20
    assert 0 < len(p.charge_point_vendor) <= 20


def test_r_model_1_key_values():
    assert MODELS["EVlink Pro DC 180"].key_values() == {
        "NumberOfConnectors": "2",
        "ChargeLimitedPower": "180",
        "ConnectorALimitedPower": "150",
        "ConnectorBLimitedPower": "150",
        "ConnectorAType": "CCS2",
        "ConnectorBType": "CHAdeMO",
    }
    assert MODELS["Schneider StarCharge Fast 320"].key_values() == {
        "NumberOfConnectors": "2",
        "ChargeLimitedPower": "320",
        "ConnectorALimitedPower": "250",
        "ConnectorBLimitedPower": "250",
        "ConnectorAType": "CCS2",
        "ConnectorBType": "CCS2",
    }
    kv60 = MODELS["EVlink Pro DC 60"].key_values()
    assert kv60["ChargeLimitedPower"] == "60" and kv60["ConnectorBType"] == "CHAdeMO"


@pytest.mark.parametrize("name", NAMES)
def test_r_model_1_key_values_are_strings_of_ints(name):
    kv = MODELS[name].key_values()
    assert set(kv) == {
        "NumberOfConnectors", "ChargeLimitedPower", "ConnectorALimitedPower",
        "ConnectorBLimitedPower", "ConnectorAType", "ConnectorBType",
    }  # fmt: skip
    for k in ("NumberOfConnectors", "ChargeLimitedPower", "ConnectorALimitedPower", "ConnectorBLimitedPower"):
        assert kv[k].isdigit(), (k, kv[k])


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("EVlink Pro DC 60", "EVlink Pro DC 60"),
        ("evlink pro dc 180", "EVlink Pro DC 180"),
        ("StarCharge Fast 180", "Schneider StarCharge Fast 180"),
        ("starcharge fast 60", "Schneider StarCharge Fast 60"),
        ("STARCHARGE FAST 320", "Schneider StarCharge Fast 320"),
        ("schneider  starcharge   fast 320", "Schneider StarCharge Fast 320"),
        ("  Schneider StarCharge Fast 180 ", "Schneider StarCharge Fast 180"),
    ],
)
def test_r_model_2_find_model_names_and_aliases(query, name):
    assert find_model(query).name == name


@pytest.mark.parametrize("query", ["StarCharge Fast 90", "", "EVlink Pro DC"])
def test_r_model_2_unknown_model_error_lists_names(query):
    with pytest.raises(UnknownModelError) as info:
        find_model(query)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.name == query
    assert list(err.known) == NAMES
    for n in NAMES:
        assert n in str(err)


def test_r_model_1_profile_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        MODELS["EVlink Pro DC 60"].max_power_kw = 1  # type: ignore[misc]


MINIMAL = """
[[model]]
name = "Test 50"
aliases = ["T50"]
charge_point_vendor = "ACME"
charge_point_model = "T-50"
max_power_kw = 50
screen = [800, 480]
tariff_best = [564, 312]
screensaver = [800, 480]
logo = [200, 60]
power_loss = "after_boot"
connectors = [
    { id = 2, type = "CHAdeMO", max_power_kw = 25 },
    { id = 1, type = "CCS2", max_power_kw = 50 },
]
"""


def test_r_model_1_load_models_from_text():
    models = load_models(MINIMAL)
    p = models["Test 50"]
    assert [c.id for c in p.connectors] == [1, 2]  # sorted by id
    assert p.key_values()["ConnectorBLimitedPower"] == "25"
    assert find_model("t50", models) is p


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('type = "CHAdeMO"', 'type = "Type2"'),
        ('power_loss = "after_boot"', 'power_loss = "never"'),
        ('charge_point_model = "T-50"', 'charge_point_model = "A model name longer than twenty"'),
        ("screen = [800, 480]", "screen = [800]"),
        ("max_power_kw = 50\n", "max_power_kw = 40\n"),  # connector above station
        ("{ id = 2,", "{ id = 3,"),
        ("name = \"Test 50\"", "name = \"\""),
        ("max_power_kw = 25", "max_power_kw = 0"),
    ],
)
def test_r_model_1_load_models_rejects_bad_data(old, new):
    assert old in MINIMAL
    with pytest.raises(ModelDataError):
        load_models(MINIMAL.replace(old, new, 1))


def test_r_model_1_load_models_rejects_duplicate_names_and_bad_toml():
    with pytest.raises(ModelDataError):
        load_models(MINIMAL + MINIMAL.replace('name = "Test 50"', 'name = "Other"'))  # alias T50 twice
    with pytest.raises(ModelDataError):
        load_models("[[model]\nname=")
    with pytest.raises(ModelDataError):
        load_models("")
