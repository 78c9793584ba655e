"""R-CONF over the wire: GetConfiguration defaults, ChangeConfiguration, persistence."""

from __future__ import annotations

import pytest

BOX = "CP-TEST"

# The guide's defaults (standard and non-standard tables), as a CSMS reads them.
# Written here from the guide, independently of controller/core/keys.py.
GUIDE_DEFAULTS = {
    "AllowOfflineTxForUnknownId": ("true", False),
    "AuthorizationCacheEnabled": ("false", False),
    "AuthorizeRemoteTxRequests": ("true", False),
    "ClockAlignedDataInterval": ("0", False),
    "ConnectionTimeOut": ("120", False),
    "GetConfigurationMaxKeys": ("200", True),
    "HeartbeatInterval": ("300", False),  # from our CSMS's BootNotification interval (guide default 60)
    "LocalAuthorizeOffline": ("true", False),
    "LocalPreAuthorize": ("false", False),
    "MeterValuesAlignedData": (
        "Current.Import,Current.Offered,Energy.Active.Import.Register,Power.Offered,Power.Active.Import", False),
    "MeterValuesAlignedDataMaxLength": ("9", True),
    "MeterValuesSampledData": (
        "Current.Import,Current.Offered,Energy.Active.Import.Register,Power.Offered,Power.Active.Import,SoC",
        False),
    "MeterValuesSampledDataMaxLength": ("8", True),
    "MeterValueSampleInterval": ("60", False),
    "MinimumStatusDuration": ("0", False),  # seeded by the test settings (guide default 10)
    "NumberOfConnectors": ("2", True),
    "ResetRetries": ("2", False),
    "ConnectorPhaseRotationMaxLength": ("1", True),
    "StopTransactionOnEVSideDisconnect": ("true", False),
    "StopTransactionOnInvalidId": ("true", False),
    "StopTxnAlignedDataMaxLength": ("1", True),
    "StopTxnSampledDataMaxLength": ("2", True),
    "SupportedFeatureProfiles": (
        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger", True),
    "SupportedFeatureProfilesMaxLength": ("6", True),
    "TransactionMessageAttempts": ("2", False),
    "TransactionMessageRetryInterval": ("10", False),
    "UnlockConnectorOnEVSideDisconnect": ("false", False),
    "WebSocketPingInterval": ("20", False),
    "LocalAuthListEnabled": ("false", False),
    "LocalAuthListMaxLength": ("100000", True),
    "SendLocalListMaxLength": ("400", True),
    "ReserveConnectorZeroSupported": ("true", True),
    "ChargeProfileMaxStackLevel": ("20", True),
    "ChargingScheduleMaxPeriods": ("50", True),
    "ConnectorSwitch3to1PhaseSupported": ("false", True),
    "MaxChargingProfilesInstalled": ("40", True),
    "ChargingScheduleAllowedChargingRateUnit": ("Current,Power", True),
    "StopTxnAlignedData": ("", False),
    "StopTxnSampledData": ("", False),
    "SecurityProfile": ("1", False),
    "CertificateSignedMaxChain": ("1000", True),
    "CertificateStoreMaxLength": ("10", True),
    "ISO15118PnCEnabled": ("false", False),
    "AuthenticationOCPPMode": ("true", False),
    "DefaultIdTag": ("SIMTAG", False),
    "ChargeLimitedPower": ("180", True),
    "ConnectorALimitedPower": ("150", True),
    "ConnectorBLimitedPower": ("150", True),
    "ConnectorAType": ("CCS2", True),
    "ConnectorBType": ("CHAdeMO", True),
    "disconnectedMeterValueSampleInterval": ("900", False),
    "SecurityEventsEnabled": ("true", False),
    "EnableMeterValuesContainVoltage": ("false", False),
    "EnableRemoteStartNoConnectedEV": ("true", False),
    "MacAddressPrefix": ("", False),
    "QRcode1": ("", False),
    "QRcode2": ("", False),
    "QRCodeEnabled": ("true", False),
    "RFIDEnabled": ("true", False),
    "PosEnabled": ("false", False),
    "APPEEnabled": ("true", False),
    "AutoCharge": ("false", False),
    "FreeCharging": ("false", False),
    "CallMsgInOrder": ("true", False),
    "OfflineTxMsgQueueEnable": ("true", False),
}


async def test_r_conf_1_get_configuration_reports_every_guide_key_with_its_default(daemon, csms):
    answer = await csms.call(BOX, "GetConfiguration", {})
    got = {k["key"].lower(): (k.get("value"), k["readonly"]) for k in answer["configurationKey"]}
    for key, expected in GUIDE_DEFAULTS.items():
        assert got.get(key.lower()) == expected, key
    assert "authorizationkey" not in got  # write-only
    assert "unknownKey" not in answer


async def test_r_conf_2_asked_keys_unknown_keys_and_case(daemon, csms):
    answer = await csms.call(BOX, "GetConfiguration",
                             {"key": ["heartbeatinterval", "NoSuchKey", "AuthorizationKey", "appenabled"]})
    keys = {k["key"]: k["value"] for k in answer["configurationKey"]}
    assert keys == {"HeartbeatInterval": "300", "APPEEnabled": "true"}
    assert sorted(answer["unknownKey"]) == ["AuthorizationKey", "NoSuchKey"]


async def test_r_conf_2_never_more_than_get_configuration_max_keys(daemon, csms):
    asked = [f"Unknown{i}" for i in range(150)] + list(GUIDE_DEFAULTS)
    answer = await csms.call(BOX, "GetConfiguration", {"key": asked})
    total = len(answer.get("configurationKey", [])) + len(answer.get("unknownKey", []))
    assert total == 200


@pytest.mark.parametrize(
    ("key", "value", "status"),
    [
        ("NumberOfConnectors", "3", "Rejected"),  # read-only
        ("GetConfigurationMaxKeys", "10", "Rejected"),
        ("HeartbeatInterval", "often", "Rejected"),  # type
        ("DefaultIdTag", "X" * 21, "Rejected"),  # length
        ("QRcode1", "https://" + "q" * 120, "Rejected"),
        ("disconnectedMeterValueSampleInterval", "3", "Rejected"),  # 0 or 5..3600
        ("disconnectedMeterValueSampleInterval", "3601", "Rejected"),
        ("MeterValuesSampledData", "Energy.Active.Import.Register,Frequency", "Rejected"),
        ("StopTxnSampledData", "SoC,Voltage,Power.Offered", "Rejected"),  # > MaxLength 2
        ("NoSuchKey", "1", "NotSupported"),
        ("SeccLeafSubjectCountry", "FR", "NotSupported"),  # PnC key while PnC is off
        ("BoxIdentifier", "CP-OTHER", "RebootRequired"),
        ("RFIDEnabled", "false", "Accepted"),
        ("disconnectedMeterValueSampleInterval", "0", "Accepted"),
    ],
)
async def test_r_conf_3_change_configuration_answers(daemon, csms, key, value, status):
    assert (await csms.call(BOX, "ChangeConfiguration", {"key": key, "value": value})) == {"status": status}


async def test_r_auth_1_free_charging_is_exclusive(daemon, csms):
    assert (await csms.call(BOX, "ChangeConfiguration", {"key": "FreeCharging", "value": "true"})) == {
        "status": "Accepted"}
    assert (await csms.call(BOX, "ChangeConfiguration", {"key": "PosEnabled", "value": "true"})) == {
        "status": "Rejected"}
    assert daemon.status()["auth_options"] == ["free"]
    assert (await csms.call(BOX, "ChangeConfiguration", {"key": "AuthenticationOCPPMode", "value": "true"})) == {
        "status": "Accepted"}
    conf = await csms.call(BOX, "GetConfiguration", {"key": ["FreeCharging", "AuthenticationOCPPMode"]})
    assert {k["key"]: k["value"] for k in conf["configurationKey"]} == {
        "FreeCharging": "false", "AuthenticationOCPPMode": "true"}


async def test_r_conf_5_accepted_values_persist_across_restart(daemon, csms):
    for key, value in (("MeterValueSampleInterval", "15"), ("MacAddressPrefix", "VID:"),
                       ("QRcode2", "https://pay.example/cp/2")):
        assert (await csms.call(BOX, "ChangeConfiguration", {"key": key, "value": value})) == {"status": "Accepted"}
    assert await daemon.stop() == 0
    mark = csms.mark()
    await daemon.start()
    await csms.wait_for("BootNotification", since=mark)
    await daemon.until(lambda s: s["link"] == "connected", what="boot")
    conf = await csms.call(BOX, "GetConfiguration",
                           {"key": ["MeterValueSampleInterval", "MacAddressPrefix", "QRcode2"]})
    assert {k["key"]: k["value"] for k in conf["configurationKey"]} == {
        "MeterValueSampleInterval": "15", "MacAddressPrefix": "VID:", "QRcode2": "https://pay.example/cp/2"}
