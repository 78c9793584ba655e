"""Configuration keys and key store (R-CONF 1-5, R-AUTH 1-2)."""

from __future__ import annotations

import pytest

from controller.core.keys import (
    KEYS,
    Access,
    ChangeResult,
    KeyConfigError,
    KeyStore,
    limit_keys,
    lookup,
)

MODEL = {
    "NumberOfConnectors": "2",
    "ChargeLimitedPower": "180",
    "ConnectorALimitedPower": "150",
    "ConnectorBLimitedPower": "60",
    "ConnectorAType": "CCS2",
    "ConnectorBType": "CHAdeMO",
}

# The guide's three tables, copied by hand: (key as printed, access, default).
# Empty access cells take the row above's mode; "R"/"W" are printed for RO/WO.
# Defaults in OCPP string form; None = from the model.
GUIDE_STANDARD = [
    ("AllowOfflineTxForUnknownId", "RW", "true"),
    ("AuthorizationCacheEnabled", "RW", "false"),
    ("AuthorizeRemoteTxRequests", "RW", "true"),
    ("ClockAlignedDataInterval", "RW", "0"),
    ("ConnectionTimeOut", "RW", "120"),
    ("GetConfigurationMaxKeys", "RO", "200"),
    ("HeartbeatInterval", "RW", "60"),
    ("LocalAuthorizeOffline", "RW", "true"),
    ("LocalPreAuthorize", "RW", "false"),
    (
        "MeterValuesAlignedData",
        "RW",
        "Current.Import,Current.Offered,Energy.Active.Import.Register,Power.Offered,"
        "Power.Active.Import",
    ),
    ("MeterValuesAlignedDataMaxLength", "RO", "9"),
    (
        "MeterValuesSampledData",
        "RW",
        "Current.Import,Current.Offered,Energy.Active.Import.Register,Power.Offered,"
        "Power.Active.Import,SoC",
    ),
    ("MeterValuesSampledDataMaxLength", "RO", "8"),
    ("MeterValueSampleInterval", "RW", "60"),
    ("MinimumStatusDuration", "RW", "10"),
    ("NumberOfConnectors", "RO", None),
    ("ResetRetries", "RW", "2"),
    ("ConnectorPhaseRotationMaxLength", "RO", "1"),
    ("ConnectorPhaseRotation", "RW", "NotApplicable"),
    ("StopTransactionOnEVSideDisconnect", "RW", "true"),
    ("StopTransactionOnInvalidId", "RW", "true"),
    ("StopTxnAlignedDataMaxLength", "RO", "1"),
    ("StopTxnSampledDataMaxLength", "RO", "2"),
    (
        "SupportedFeatureProfiles",
        "RO",
        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger",
    ),
    ("SupportedFeatureProfilesMaxLength", "RO", "6"),
    ("TransactionMessageAttempts", "RW", "2"),
    ("TransactionMessageRetryInterval", "RW", "10"),
    ("UnlockConnectorOnEVSideDisconnect", "RW", "false"),
    ("WebSocketPingInterval", "RW", "20"),
    ("LocalAuthListEnabled", "RW", "false"),
    ("LocalAuthListMaxLength", "RO", "100000"),
    ("SendLocalListMaxLength", "RO", "400"),
    ("ReserveConnectorZeroSupported", "RO", "true"),
    ("ChargeProfileMaxStackLevel", "RO", "20"),
    ("ChargingScheduleMaxPeriods", "RO", "50"),
    ("ConnectorSwitch3to1PhaseSupported", "RO", "false"),
    ("MaxChargingProfilesInstalled", "RO", "40"),
    ("ChargingScheduleAllowedChargingRateUnit", "RO", "Current,Power"),
    ("StopTxnAlignedData", "RW", ""),
    ("StopTxnSampledData", "RW", ""),
    ("AuthorizationKey", "WO", ""),
    ("SecurityProfile", "RW", "1"),
    ("CertificateSignedMaxChain", "RO", "1000"),
    ("CertificateStoreMaxLength", "RO", "10"),
    ("ISO15118PnCEnabled", "RW", "false"),
]
GUIDE_NON_STANDARD = [
    ("AuthenticationOCPPMode", "RW", "true"),
    ("DefaultIdTag", "RW", "SIMTAG"),
    ("SupervisionUrl", "RW", ""),
    ("BoxIdentifier", "RW", ""),
    ("ChargeLimitedPower", "RO", None),
    ("ConnectorALimitedPower", "RO", None),
    ("ConnectorBLimitedPower", "RO", None),
    ("ConnectorAType", "RO", None),
    ("ConnectorBType", "RO", None),
    ("disconnectedMeterValueSampleInterval", "RW", "900"),
    ("SecurityEventsEnabled", "RW", "true"),
    ("EnableMeterValuesContainVoltage", "RW", "false"),
    ("EnableRemoteStartNoConnectedEV", "RW", "true"),
    ("MacAddressPrefix", "RW", ""),
    ("QRcode1", "RW", ""),
    ("QRcode2", "RW", ""),
    ("QRCodeEnabled", "RW", "true"),
    ("RFIDEnabled", "RW", "true"),
    ("PosEnabled", "RW", "false"),
    ("APPEEnabled", "RW", "true"),
    ("AutoCharge", "RW", "false"),
    ("FreeCharging", "RW", "false"),
    ("CallMsgInOrder", "RW", "true"),
    ("OfflineTxMsgQueueEnable", "RW", "true"),
]
GUIDE_PNC = [  # SecurityProfile and CertificateStoreMaxLength: the standard rows win
    ("CentralContractValidationAllowed", "RW", "false"),
    ("CertificateSignedMaxChainSize", "RO", "10000"),
    ("CertSigningWaitMinimum", "RW", "0"),
    ("CertSigningRepeatTimes", "RW", "0"),
    ("ContractValidationOffline", "RW", "false"),
    ("SeccLeafSubjectCommonName", "RW", ""),
    ("SeccLeafSubjectCountry", "RW", ""),
    ("SeccLeafSubjectOrganization", "RW", ""),
    ("ConnectorEvselds", "RW", ""),
    ("CpoName", "RW", ""),
    ("AdditionalRootCertificateCheck", "RW", "false"),
]
GUIDE_KEYS = GUIDE_STANDARD + GUIDE_NON_STANDARD + GUIDE_PNC
PNC_NAMES = {name for name, _, _ in GUIDE_PNC}

GOOD_KEY = "00112233445566778899aabbccddeeff"  # 16 bytes


def store(seeds=None, persisted=None, pnc=False) -> KeyStore:
    keys = KeyStore(MODEL, seeds or {}, persisted or {})
    if pnc:
        assert keys.change("ISO15118PnCEnabled", "true") is ChangeResult.ACCEPTED
    return keys


# -- R-CONF 1: the table


@pytest.mark.parametrize(("name", "access", "default"), GUIDE_KEYS)
def test_r_conf_1_every_guide_key_has_its_default(name, access, default):
    expected = MODEL[name] if default is None else default
    assert store().get(name) == expected


@pytest.mark.parametrize(("name", "access", "default"), GUIDE_KEYS)
def test_r_conf_1_every_guide_key_has_its_access(name, access, default):
    key = lookup(name)
    assert key is not None
    assert key.access is Access(access)
    assert key.pnc is (name in PNC_NAMES)


def test_r_conf_1_table_holds_the_guide_keys_and_no_others():
    table = {key.name for key in KEYS}
    guide = {lookup(name).name for name, _, _ in GUIDE_KEYS}
    assert table == guide
    assert len(KEYS) == len(GUIDE_KEYS)


def test_r_conf_1_no_two_keys_share_a_spelling():
    spellings = [s for key in KEYS for s in {n.lower() for n in (key.name, *key.aliases)}]
    assert len(spellings) == len(set(spellings))


def test_r_conf_1_reboot_flag_only_on_supervision_url_and_box_identifier():
    assert {key.name for key in KEYS if key.reboot} == {"SupervisionUrl", "BoxIdentifier"}


def test_r_conf_1_model_values_must_be_complete_and_known():
    partial = dict(MODEL)
    del partial["ConnectorBType"]
    with pytest.raises(KeyConfigError) as missing:
        KeyStore(partial)
    assert missing.value.key == "ConnectorBType"
    with pytest.raises(KeyConfigError) as not_model:
        KeyStore({**MODEL, "HeartbeatInterval": "30"})
    assert not_model.value.key == "HeartbeatInterval"
    with pytest.raises(KeyConfigError) as bad:
        KeyStore({**MODEL, "ChargeLimitedPower": "180kW"})
    assert bad.value.key == "ChargeLimitedPower"


@pytest.mark.parametrize(
    "name", ["heartbeatinterval", "HEARTBEATINTERVAL", "HeartBeatInterval", "heartbeatInterval"]
)
def test_r_conf_1_keys_are_case_insensitive(name):
    keys = store()
    assert keys.get(name) == "60"
    assert keys.change(name, "30") is ChangeResult.ACCEPTED
    assert keys.get_int("HeartbeatInterval") == 30
    assert keys.configuration([name]) == ([("HeartbeatInterval", False, "30")], [])
    assert keys.changed() == {"HeartbeatInterval": "30"}


@pytest.mark.parametrize(
    ("alias", "canonical", "new"),
    [
        ("AppEnabled", "APPEEnabled", "false"),
        ("POSEnabled", "PosEnabled", "true"),
        ("QRcodeEnabled", "QRCodeEnabled", "false"),
        ("Autocharge", "AutoCharge", "true"),
        ("AuthorizationCacheEnable", "AuthorizationCacheEnabled", "true"),
        ("ConnectorEvselds", "ConnectorEvseIds", "DE*ABC*E1"),
    ],
)
def test_r_conf_1_aliases_name_the_same_key(alias, canonical, new):
    keys = store(pnc=True)
    keys.take_changes()
    assert lookup(alias) is lookup(canonical)
    assert lookup(alias).name == canonical
    assert keys.change(alias, new) is ChangeResult.ACCEPTED
    assert keys.get(canonical) == new
    assert keys.changed() == {canonical: new}
    assert keys.configuration([alias]) == ([(canonical, False, new)], [])


@pytest.mark.parametrize("value", ["TRUE", "True", "tRuE"])
def test_r_conf_1_booleans_case_insensitive_stored_lower_case(value):
    keys = store()
    assert keys.change("LocalPreAuthorize", value) is ChangeResult.ACCEPTED
    assert keys.get("LocalPreAuthorize") == "true"
    assert keys.get_bool("LocalPreAuthorize") is True


def test_r_conf_1_typed_getters():
    keys = store()
    assert keys.get_bool("StopTransactionOnInvalidId") is True
    assert keys.get_int("ConnectionTimeOut") == 120
    assert keys.get_int("ConnectorALimitedPower") == 150
    assert keys.get_csl("ChargingScheduleAllowedChargingRateUnit") == ["Current", "Power"]
    assert keys.get_csl("StopTxnSampledData") == []
    assert keys.get("NoSuchKey") is None
    with pytest.raises(KeyError):
        keys.get_int("NoSuchKey")
    with pytest.raises(TypeError):
        keys.get_int("DefaultIdTag")


def test_r_conf_1_snapshot_holds_every_key_including_write_only():
    keys = store()
    assert keys.change("AuthorizationKey", GOOD_KEY) is ChangeResult.ACCEPTED
    snapshot = keys.snapshot()
    assert set(snapshot) == {key.name for key in KEYS}
    assert snapshot["AuthorizationKey"] == GOOD_KEY
    assert snapshot["ConnectorAType"] == "CCS2"


# -- R-CONF 2: GetConfiguration


def test_r_conf_2_all_visible_keys_with_readonly_flags():
    items, unknown = store().configuration(None)
    assert unknown == []
    reported = {name: (readonly, value) for name, readonly, value in items}
    expected = {
        lookup(name).name: (access == "RO", MODEL[name] if default is None else default)
        for name, access, default in GUIDE_STANDARD + GUIDE_NON_STANDARD
        if access != "WO"
    }
    assert reported == expected
    assert store().configuration([]) == (items, [])


def test_r_conf_2_asked_keys_and_unknown_as_asked():
    items, unknown = store().configuration(
        ["connectiontimeout", "Foo", "NumberOfConnectors", "bar"]
    )
    assert items == [("ConnectionTimeOut", False, "120"), ("NumberOfConnectors", True, "2")]
    assert unknown == ["Foo", "bar"]


def test_r_conf_2_a_key_asked_twice_is_reported_once():
    items, _ = store().configuration(["AppEnabled", "APPEEnabled", "appeenabled"])
    assert items == [("APPEEnabled", False, "true")]


def test_r_conf_2_write_only_key_is_never_reported():
    keys = store()
    assert keys.change("AuthorizationKey", GOOD_KEY) is ChangeResult.ACCEPTED
    items, _ = keys.configuration(None)
    assert "AuthorizationKey" not in {name for name, _, _ in items}
    assert GOOD_KEY not in {value for _, _, value in items}
    assert keys.configuration(["authorizationkey"]) == ([], ["authorizationkey"])
    assert keys.get("AuthorizationKey") == GOOD_KEY  # for internal use (basic auth)


def test_r_conf_2_limit_keys_counts_known_then_unknown():
    items = [("A", False, "1"), ("B", True, "2"), ("C", False, "3")]
    assert limit_keys(items, ["x", "y"], 200) == (items, ["x", "y"])
    assert limit_keys(items, ["x", "y"], 4) == (items, ["x"])
    assert limit_keys(items, ["x", "y"], 3) == (items, [])
    assert limit_keys(items, ["x", "y"], 2) == (items[:2], [])
    assert limit_keys([], ["x", "y"], 1) == ([], ["x"])
    assert limit_keys(items, ["x"], 0) == ([], [])


# -- R-CONF 3: ChangeConfiguration


@pytest.mark.parametrize("name", ["NoSuchKey", "", "HeartbeatIntervall"])
def test_r_conf_3_unknown_key_is_not_supported(name):
    keys = store()
    assert keys.change(name, "1") is ChangeResult.NOT_SUPPORTED
    assert keys.changed() == {}


@pytest.mark.parametrize("name", [name for name, access, _ in GUIDE_KEYS if access == "RO"])
def test_r_conf_3_read_only_key_is_rejected(name):
    keys = store(pnc=True)
    before = keys.get(name)
    assert keys.change(name, before) is ChangeResult.REJECTED
    assert keys.change(name, "1") is ChangeResult.REJECTED
    assert keys.get(name) == before
    assert keys.take_changes() == {"ISO15118PnCEnabled": "true"}


OUT_OF_RANGE = [
    ("DefaultIdTag", "X" * 21),
    ("DefaultIdTag", ""),
    ("SupervisionUrl", "ws://" + "h" * 251),
    ("SupervisionUrl", "http://csms.example/ocpp"),
    ("SupervisionUrl", "csms.example/ocpp"),
    ("SupervisionUrl", "wss://"),
    ("SupervisionUrl", "ws://[::1"),
    ("BoxIdentifier", "B" * 51),
    ("BoxIdentifier", ""),
    ("BoxIdentifier", "box/1"),
    ("QRcode1", "q" * 121),
    ("QRcode2", "q" * 121),
    ("MacAddressPrefix", "m" * 21),
    ("disconnectedMeterValueSampleInterval", "1"),
    ("disconnectedMeterValueSampleInterval", "4"),
    ("disconnectedMeterValueSampleInterval", "3601"),
    ("HeartbeatInterval", "-1"),
    ("HeartbeatInterval", str(2**31)),
    ("MeterValueSampleInterval", "-1"),
    ("MeterValueSampleInterval", str(2**31)),
    ("ClockAlignedDataInterval", "86401"),
    ("ConnectionTimeOut", "0"),
    ("ConnectionTimeOut", "3601"),
    ("MinimumStatusDuration", "3601"),
    ("TransactionMessageAttempts", "101"),
    ("TransactionMessageRetryInterval", "3601"),
    ("WebSocketPingInterval", "3601"),
    ("ResetRetries", "101"),
    ("CertSigningWaitMinimum", "-1"),
    ("CertSigningWaitMinimum", str(2**31)),
    ("CertSigningRepeatTimes", "-1"),
    ("CertSigningRepeatTimes", str(2**31)),
    ("SecurityProfile", "4"),
    ("HeartbeatInterval", "abc"),
    ("HeartbeatInterval", "1.5"),
    ("HeartbeatInterval", ""),
    ("HeartbeatInterval", " 60"),
    ("AllowOfflineTxForUnknownId", "yes"),
    ("AllowOfflineTxForUnknownId", "1"),
    ("FreeCharging", ""),
    ("AuthorizationKey", "00" * 15),
    ("AuthorizationKey", "00" * 41),
    ("AuthorizationKey", "0" * 33),
    ("AuthorizationKey", "zz" * 16),
    ("MeterValuesSampledData", "Energy.Active.Import.Register,Temperature"),
    ("MeterValuesSampledData", "Power.Active.Import,Power.Active.Import"),
    ("MeterValuesSampledData", "SoC,,Voltage"),
    ("MeterValuesAlignedData", "energy.active.import.register"),
    ("StopTxnSampledData", "SoC,Voltage,Power.Offered"),
    ("StopTxnAlignedData", "SoC,Voltage"),
    ("ConnectorPhaseRotation", "RST,1.RST"),
    ("ConnectorPhaseRotation", "Not Applicable"),
]


@pytest.mark.parametrize(("name", "value"), OUT_OF_RANGE)
def test_r_conf_3_out_of_range_value_is_rejected(name, value):
    keys = store(pnc=True)
    keys.take_changes()
    before = keys.get(name)
    assert keys.change(name, value) is ChangeResult.REJECTED
    assert keys.get(name) == before
    assert keys.changed() == {}


ALL_MEASURANDS = (
    "Energy.Active.Import.Register,Power.Active.Import,Power.Offered,SoC,Current.Import,"
    "Current.Offered,Voltage"
)
IN_RANGE = [
    ("DefaultIdTag", "X" * 20, "X" * 20),
    ("SupervisionUrl", "ws://" + "h" * 250, "ws://" + "h" * 250),
    ("SupervisionUrl", "wss://csms.example:443/ocpp", "wss://csms.example:443/ocpp"),
    ("BoxIdentifier", "B" * 50, "B" * 50),
    ("QRcode1", "q" * 120, "q" * 120),
    ("QRcode2", "https://pay.example/b", "https://pay.example/b"),
    ("MacAddressPrefix", "VID:", "VID:"),
    ("disconnectedMeterValueSampleInterval", "0", "0"),
    ("disconnectedMeterValueSampleInterval", "5", "5"),
    ("disconnectedMeterValueSampleInterval", "3600", "3600"),
    ("HeartbeatInterval", "0", "0"),
    ("HeartbeatInterval", str(2**31 - 1), str(2**31 - 1)),
    ("MeterValueSampleInterval", "007", "7"),
    ("ClockAlignedDataInterval", "86400", "86400"),
    ("ConnectionTimeOut", "1", "1"),
    ("ConnectionTimeOut", "3600", "3600"),
    ("MinimumStatusDuration", "3600", "3600"),
    ("TransactionMessageAttempts", "100", "100"),
    ("TransactionMessageRetryInterval", "3600", "3600"),
    ("WebSocketPingInterval", "0", "0"),
    ("ResetRetries", "100", "100"),
    ("CertSigningWaitMinimum", "30", "30"),
    ("CertSigningRepeatTimes", "3", "3"),
    ("SecurityProfile", "3", "3"),
    ("AuthorizationKey", "AB" * 40, "AB" * 40),
    ("MeterValuesSampledData", "SoC, Voltage ,Power.Offered", "SoC,Voltage,Power.Offered"),
    ("MeterValuesSampledData", ALL_MEASURANDS, ALL_MEASURANDS),
    ("MeterValuesAlignedData", "", ""),
    (
        "StopTxnSampledData",
        "Energy.Active.Import.Register,SoC",
        "Energy.Active.Import.Register,SoC",
    ),
    ("StopTxnAlignedData", "Energy.Active.Import.Register", "Energy.Active.Import.Register"),
    ("ConnectorPhaseRotation", "0.Unknown", "0.Unknown"),
    ("ConnectorEvseIds", "DE*ABC*E1, DE*ABC*E2", "DE*ABC*E1,DE*ABC*E2"),
    ("SeccLeafSubjectCountry", "FR", "FR"),
    ("CpoName", "Example CPO", "Example CPO"),
]


@pytest.mark.parametrize(("name", "value", "stored"), IN_RANGE)
def test_r_conf_3_in_range_value_is_stored_normalised(name, value, stored):
    keys = store(pnc=True)
    keys.take_changes()
    expected = ChangeResult.REBOOT_REQUIRED if lookup(name).reboot else ChangeResult.ACCEPTED
    assert keys.change(name, value) is expected
    assert keys.get(name) == stored
    assert keys.changed() == {lookup(name).name: stored}


@pytest.mark.parametrize(
    ("name", "value"), [("SupervisionUrl", "wss://csms.example/ocpp"), ("boxidentifier", "CP-0001")]
)
def test_r_conf_3_reboot_required_value_is_still_stored(name, value):
    keys = store()
    assert keys.change(name, value) is ChangeResult.REBOOT_REQUIRED
    assert keys.get(name) == value
    assert keys.changed() == {lookup(name).name: value}
    assert keys.change(name, value) is ChangeResult.ACCEPTED  # identical: nothing to reboot for


def test_r_conf_3_identical_value_is_accepted_and_not_recorded():
    keys = store()
    assert keys.change("HeartbeatInterval", "60") is ChangeResult.ACCEPTED
    assert keys.change("LocalPreAuthorize", "FALSE") is ChangeResult.ACCEPTED
    assert keys.change("SecurityProfile", "1") is ChangeResult.ACCEPTED
    assert keys.changed() == {}


def test_r_conf_3_security_profile_may_be_raised_never_lowered():
    keys = store()
    assert keys.change("SecurityProfile", "0") is ChangeResult.REJECTED
    assert keys.change("SecurityProfile", "2") is ChangeResult.ACCEPTED
    assert keys.change("SecurityProfile", "1") is ChangeResult.REJECTED
    assert keys.get_int("SecurityProfile") == 2


def test_r_conf_3_take_changes_returns_then_resets():
    keys = store()
    keys.change("HeartbeatInterval", "30")
    keys.change("HeartbeatInterval", "45")
    keys.change("AuthorizationKey", GOOD_KEY)
    assert keys.changed() == {"HeartbeatInterval": "45", "AuthorizationKey": GOOD_KEY}
    assert keys.take_changes() == {"HeartbeatInterval": "45", "AuthorizationKey": GOOD_KEY}
    assert keys.changed() == {}
    keys.change("MeterValueSampleInterval", "15")
    assert keys.take_changes() == {"MeterValueSampleInterval": "15"}


# -- R-CONF 4: PnC keys


def test_r_conf_4_pnc_keys_hidden_and_not_supported_until_enabled():
    keys = store()
    names = {name for name, _, _ in keys.configuration(None)[0]}
    assert names.isdisjoint(lookup(name).name for name in PNC_NAMES)
    assert {"SecurityProfile", "CertificateStoreMaxLength", "ISO15118PnCEnabled"} <= names
    assert keys.configuration(["CpoName", "SecurityProfile"]) == (
        [("SecurityProfile", False, "1")],
        ["CpoName"],
    )
    assert keys.change("CpoName", "Example CPO") is ChangeResult.NOT_SUPPORTED
    assert keys.change("CertificateSignedMaxChainSize", "1") is ChangeResult.NOT_SUPPORTED

    assert keys.change("ISO15118PnCEnabled", "true") is ChangeResult.ACCEPTED
    names = {name for name, _, _ in keys.configuration(None)[0]}
    assert {lookup(name).name for name in PNC_NAMES} <= names
    assert keys.change("CpoName", "Example CPO") is ChangeResult.ACCEPTED
    assert keys.change("CertificateSignedMaxChainSize", "1") is ChangeResult.REJECTED
    assert keys.configuration(["cponame"]) == ([("CpoName", False, "Example CPO")], [])

    assert keys.change("ISO15118PnCEnabled", "false") is ChangeResult.ACCEPTED
    assert keys.configuration(["CpoName"]) == ([], ["CpoName"])
    assert keys.get("CpoName") == "Example CPO"  # kept, only hidden


def test_r_conf_4_standard_rows_win_for_keys_in_two_tables():
    keys = store()
    assert keys.configuration(["SecurityProfile", "CertificateStoreMaxLength"]) == (
        [("SecurityProfile", False, "1"), ("CertificateStoreMaxLength", True, "10")],
        [],
    )


# -- R-CONF 5: seeds and persisted values


def test_r_conf_5_seeds_are_converted_to_ocpp_strings():
    keys = store(
        seeds={
            "SupervisionUrl": "wss://csms.example/ocpp",
            "BoxIdentifier": "CP-0001",
            "HeartbeatInterval": 300,
            "LocalPreAuthorize": True,
            "rfidenabled": False,
            "AuthorizationCacheEnabled": "TRUE",
            "MeterValuesSampledData": ["Energy.Active.Import.Register", "SoC"],
            "StopTxnAlignedData": "Energy.Active.Import.Register",
            "AuthorizationKey": GOOD_KEY,
            "CpoName": "Example CPO",
        }
    )
    assert keys.get("SupervisionUrl") == "wss://csms.example/ocpp"
    assert keys.get("HeartbeatInterval") == "300"
    assert keys.get("LocalPreAuthorize") == "true"
    assert keys.get("RFIDEnabled") == "false"
    assert keys.get("AuthorizationCacheEnabled") == "true"
    assert keys.get("MeterValuesSampledData") == "Energy.Active.Import.Register,SoC"
    assert keys.get("AuthorizationKey") == GOOD_KEY
    assert keys.get("CpoName") == "Example CPO"
    assert keys.changed() == {}
    assert keys.warnings == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HeartbeatInterval", "sixty"),
        ("HeartbeatInterval", True),
        ("HeartbeatInterval", 1.5),
        ("HeartbeatInterval", -1),
        ("LocalPreAuthorize", 1),
        ("DefaultIdTag", 42),
        ("DefaultIdTag", ["a"]),
        ("MeterValuesSampledData", ["SoC", 3]),
        ("MeterValuesSampledData", ["Temperature"]),
        ("SupervisionUrl", "https://csms.example"),
        ("BoxIdentifier", ""),
        ("AuthorizationKey", "secret"),
    ],
)
def test_r_conf_5_bad_seed_raises_naming_the_key(name, value):
    with pytest.raises(KeyConfigError) as error:
        store(seeds={name: value})
    assert error.value.key == name
    assert name in str(error.value)
    assert isinstance(error.value, ValueError)


def test_r_conf_5_bad_seed_error_does_not_quote_the_value():
    with pytest.raises(KeyConfigError) as error:
        store(seeds={"AuthorizationKey": "my-secret-password"})
    assert "my-secret-password" not in str(error.value)


@pytest.mark.parametrize(
    "name", ["NumberOfConnectors", "GetConfigurationMaxKeys", "ConnectorAType", "NoSuchKey"]
)
def test_r_conf_5_seeding_read_only_or_unknown_key_raises(name):
    with pytest.raises(KeyConfigError) as error:
        store(seeds={name: "1"})
    assert error.value.key == name


def test_r_conf_5_seeding_the_legacy_auth_key_raises():
    with pytest.raises(KeyConfigError) as error:
        store(seeds={"AuthenticationOCPPMode": False})
    assert error.value.key == "AuthenticationOCPPMode"


def test_r_conf_5_persisted_wins_over_seed_over_default():
    keys = store(
        seeds={"HeartbeatInterval": 300, "MeterValueSampleInterval": 30},
        persisted={"heartbeatinterval": "120", "ConnectionTimeOut": "90"},
    )
    assert keys.get("HeartbeatInterval") == "120"
    assert keys.get("MeterValueSampleInterval") == "30"
    assert keys.get("ConnectionTimeOut") == "90"
    assert keys.get("ResetRetries") == "2"
    assert keys.warnings == []
    assert keys.changed() == {}


def test_r_conf_5_invalid_persisted_value_is_ignored_with_a_warning():
    keys = store(
        seeds={"HeartbeatInterval": 300},
        persisted={
            "HeartbeatInterval": "-5",
            "AuthorizationKey": "not-hex-secret",
            "NumberOfConnectors": "4",
            "RemovedKey": "1",
            "ConnectionTimeOut": "90",
        },
    )
    assert keys.get("HeartbeatInterval") == "300"
    assert keys.get("AuthorizationKey") == ""
    assert keys.get("NumberOfConnectors") == "2"
    assert keys.get("ConnectionTimeOut") == "90"
    assert len(keys.warnings) == 4
    for name, warning in zip(
        ["HeartbeatInterval", "AuthorizationKey", "NumberOfConnectors", "RemovedKey"],
        keys.warnings,
        strict=True,
    ):
        assert warning.startswith(name)
    assert not any("not-hex-secret" in warning for warning in keys.warnings)


def test_r_conf_5_persisted_changes_round_trip():
    keys = store()
    keys.change("AppEnabled", "false")
    keys.change("SupervisionUrl", "wss://csms.example/ocpp")
    again = store(persisted=keys.take_changes())
    assert again.snapshot() == keys.snapshot()


# -- R-AUTH 1: authentication modes


AUTH_MODE_KEYS = [
    "RFIDEnabled",
    "QRcodeEnabled",
    "AppEnabled",
    "POSEnabled",
    "AutoCharge",
    "ISO15118PnCEnabled",
]


@pytest.mark.parametrize("name", AUTH_MODE_KEYS)
def test_r_auth_1_enabling_a_mode_while_free_charging_is_rejected(name):
    keys = store()
    assert keys.change(name, "false") is ChangeResult.ACCEPTED
    assert keys.change("FreeCharging", "true") is ChangeResult.ACCEPTED
    keys.take_changes()
    assert keys.change(name, "true") is ChangeResult.REJECTED
    assert keys.get(name) == "false"
    assert keys.changed() == {}
    assert keys.change(name, "false") is ChangeResult.ACCEPTED


def test_r_auth_1_enabling_an_already_stored_mode_while_free_is_still_rejected():
    keys = store()
    assert keys.change("FreeCharging", "true") is ChangeResult.ACCEPTED
    assert keys.get("RFIDEnabled") == "true"
    assert keys.change("RFIDEnabled", "true") is ChangeResult.REJECTED


def test_r_auth_1_free_charging_keeps_other_modes_but_makes_them_inactive():
    keys = store()
    assert keys.auth_options() == ["rfid", "qr", "app"]
    assert keys.change("FreeCharging", "TRUE") is ChangeResult.ACCEPTED
    assert keys.auth_options() == ["free"]
    assert keys.get("RFIDEnabled") == "true"
    assert keys.changed() == {"FreeCharging": "true"}
    assert keys.change("FreeCharging", "false") is ChangeResult.ACCEPTED
    assert keys.auth_options() == ["rfid", "qr", "app"]


def test_r_auth_1_modes_combine_freely_in_a_stable_order():
    keys = store()
    for name in ["ISO15118PnCEnabled", "AutoCharge", "POSEnabled"]:
        assert keys.change(name, "true") is ChangeResult.ACCEPTED
    assert keys.auth_options() == ["rfid", "qr", "app", "pos", "autocharge", "pnc"]
    for name in ["RFIDEnabled", "QRcodeEnabled", "AppEnabled", "PosEnabled"]:
        assert keys.change(name, "false") is ChangeResult.ACCEPTED
    assert keys.auth_options() == ["autocharge", "pnc"]


def test_r_auth_1_pnc_wins_over_autocharge():
    keys = store()
    assert keys.mac_auth_mode() is None
    keys.change("AutoCharge", "true")
    assert keys.mac_auth_mode() == "autocharge"
    keys.change("ISO15118PnCEnabled", "true")
    assert keys.mac_auth_mode() == "pnc"
    keys.change("AutoCharge", "false")
    assert keys.mac_auth_mode() == "pnc"


def test_r_auth_1_no_mac_auth_in_free_mode():
    keys = store(seeds={"AutoCharge": True, "ISO15118PnCEnabled": True, "FreeCharging": True})
    assert keys.auth_options() == ["free"]
    assert keys.mac_auth_mode() is None


# -- R-AUTH 2: legacy AuthenticationOCPPMode


def test_r_auth_2_legacy_mode_reads_from_free_charging():
    keys = store()
    assert keys.get("AuthenticationOCPPMode") == "true"
    assert keys.configuration(["authenticationocppmode"]) == (
        [("AuthenticationOCPPMode", False, "true")],
        [],
    )
    keys.change("FreeCharging", "true")
    assert keys.get("AuthenticationOCPPMode") == "false"
    assert keys.get_bool("AuthenticationOCPPMode") is False


def test_r_auth_2_legacy_false_sets_free_charging():
    keys = store()
    assert keys.change("AuthenticationOCPPMode", "false") is ChangeResult.ACCEPTED
    assert keys.get_bool("FreeCharging") is True
    assert keys.auth_options() == ["free"]
    assert keys.changed() == {"FreeCharging": "true"}


def test_r_auth_2_legacy_true_sets_rfid_and_qr_authentication():
    keys = store(
        seeds={"FreeCharging": True, "RFIDEnabled": False, "QRcodeEnabled": False},
    )
    assert keys.change("AuthenticationOCPPMode", "True") is ChangeResult.ACCEPTED
    assert keys.changed() == {
        "FreeCharging": "false",
        "RFIDEnabled": "true",
        "QRCodeEnabled": "true",
    }
    assert keys.get("AuthenticationOCPPMode") == "true"
    assert keys.auth_options() == ["rfid", "qr", "app"]


def test_r_auth_2_legacy_mode_is_not_stored_and_validated():
    keys = store()
    assert keys.change("AuthenticationOCPPMode", "maybe") is ChangeResult.REJECTED
    assert keys.change("AuthenticationOCPPMode", "true") is ChangeResult.ACCEPTED
    assert keys.changed() == {}
    assert store(persisted={"AuthenticationOCPPMode": "false"}).warnings != []
