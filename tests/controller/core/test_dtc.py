"""R-STATUS 2: the guide's vendor error table as data (controller/data/dtc.tsv)."""

from __future__ import annotations

import pytest

from controller.core import dtc
from controller.core.dtc import DTC_TABLE, Dtc, DtcTableError, load_dtc_table, lookup

# Written independently from the guide's "OCPP Vendor Error Codes" table, with
# every empty errorCode cell resolved by hand to the code printed above it.
GUIDE_TABLE: list[tuple[str, str, str]] = [
    ("0x100005", "ReaderFailure", "Card reader communication failure alarm"),
    ("0x100007", "OtherError", "Insulation warning"),
    ("0x100009", "InternalError", "Abnormal SD card of terminal warning"),
    ("0x10000C", "OtherError", "SECC socket connection fault alarm"),
    ("0x10000F", "OtherError", "Environment detection board offline alarm"),
    ("0x100101", "HighTemperature", "Terminal over-temperature alarm"),
    ("0x100102", "InternalError", "Cable connector over-temperature alarm"),
    ("0x100202", "InternalError", "Terminal emergency stop is pressed"),
    ("0x100205", "ConnectorLockFailure", "Vehicle connector lock control error"),
    ("0x100206", "GroundFailure", "Ground error"),
    ("0x100207", "InternalError", "Insulation board error"),
    ("0x100208", "InternalError", "Output relay control error"),
    ("0x10020A", "OtherError", "Insulation error"),
    ("0x10020B", "OtherError", "Power cabinet water level error"),
    ("0x10020C", "OtherError", "Terminal door open"),
    ("0x10020D", "OtherError", "High humidity error"),
    ("0x10020E", "OtherError", "Tilt sensor triggered"),
    ("0x10020F", "PowerMeterFailure", "Meter failure error"),
    ("0x100210", "InternalError", "Communication error with subboard"),
    ("0x100211", "InternalError", "Power loss error"),
    ("0x100212", "InternalError", "Communication error with power cabinet"),
    ("0x100213", "OverCurrentFailure", "Over-current error"),
    ("0x100214", "InternalError", "Output over-voltage error"),
    ("0x100216", "InternalError", "PLC board offline error"),
    ("0x200001", "InternalError", "Power module communication fault alarm"),
    ("0x200002", "InternalError", "Power module fault alarm"),
    ("0x200003", "InternalError", "PDU relay control fault alarm"),
    ("0x200004", "InternalError", "PDU communication fault alarm"),
    ("0x200008", "OtherError", "Surge protection alarm"),
    ("0x200101", "InternalError", "Power module over-temperature alarm"),
    ("0x200102", "InternalError", "PDU over-temperature alarm"),
    ("0x200103", "InternalError", "Power control fan communication alarm"),
    ("0x200104", "InternalError", "Power control fan failure alarm"),
    ("0x200202", "InternalError", "Power cabinet emergency stop is pressed"),
    ("0x200203", "OtherError", "Power cabinet water level error"),
    ("0x200204", "OtherError", "Power cabinet door open"),
    ("0x200206", "OverVoltage", "Input over-voltage error"),
    ("0x200207", "PowerSwitchFailure", "Input relay control error"),
    ("0x200208", "UnderVoltage", "Input under-voltage error"),
    ("0x200209", "OtherError", "Circuit breaker tripped"),
    ("0x20020B", "OtherError", "Tilt sensor alarm"),
    ("0x20020C", "OtherError", "Fusing error"),
    ("0xC00000", "InternalError", "Power control fan fault"),
]

OCPP16_CHARGE_POINT_ERROR_CODES = {
    "ConnectorLockFailure", "EVCommunicationError", "GroundFailure", "HighTemperature",
    "InternalError", "LocalListConflict", "NoError", "OtherError", "OverCurrentFailure",
    "OverVoltage", "PowerMeterFailure", "PowerSwitchFailure", "ReaderFailure",
    "ResetFailure", "UnderVoltage", "WeakSignal",
}  # fmt: skip

EXPECTED_ALARMS = {
    "0x100005", "0x100007", "0x100009", "0x10000C", "0x10000F", "0x100101", "0x100102",
    "0x200001", "0x200002", "0x200003", "0x200004", "0x200008",
    "0x200101", "0x200102", "0x200103", "0x200104",
}  # fmt: skip


def test_r_status_2_every_guide_dtc_present():
    assert len(GUIDE_TABLE) == 43
    for code, error_code, description in GUIDE_TABLE:
        entry = DTC_TABLE[code]
        assert entry == Dtc(code, error_code, description, entry.severity), code


def test_r_status_2_table_has_nothing_else():
    assert set(DTC_TABLE) == {code for code, _, _ in GUIDE_TABLE}


def test_r_status_2_fill_down_from_row_above():
    assert DTC_TABLE["0x100202"].error_code == "InternalError"  # below 0x100102 InternalError
    assert DTC_TABLE["0x10000F"].error_code == "OtherError"  # below 0x10000C OtherError
    assert DTC_TABLE["0x200204"].error_code == "OtherError"  # after the page break, below 0x200203
    assert DTC_TABLE["0x200001"].error_code == "InternalError"  # long run below 0x100214
    assert DTC_TABLE["0x20020C"].error_code == "OtherError"  # below 0x200209 OtherError


def test_r_status_2_data_file_keeps_printed_form_with_empty_cells():
    from importlib import resources

    text = resources.files("controller").joinpath("data/dtc.tsv").read_text(encoding="utf-8")
    rows = [ln.split("\t") for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert rows[0] == ["errorCode", "dtc", "description", "severity"]
    by_code = {r[1]: r for r in rows[1:]}
    assert by_code["0x10000F"][0] == ""
    assert by_code["0x100202"][0] == ""
    assert by_code["0x200204"][0] == ""
    assert all(r[3] in {"error", "alarm"} for r in rows[1:])  # decided per row


def test_r_status_2_every_error_code_is_ocpp16():
    for entry in DTC_TABLE.values():
        assert entry.error_code in OCPP16_CHARGE_POINT_ERROR_CODES, entry
    assert dtc.OCPP16_ERROR_CODES == OCPP16_CHARGE_POINT_ERROR_CODES


def test_r_status_2_error_codes_match_ocpp_library_enum():
    enums = pytest.importorskip("ocpp.v16.enums")
    values = {e.value for e in enums.ChargePointErrorCode}
    assert values == OCPP16_CHARGE_POINT_ERROR_CODES
    assert {e.error_code for e in DTC_TABLE.values()} <= values


@pytest.mark.parametrize(
    "query",
    ["0x100206", "0X100206", "100206", " 0x100206 ", 0x100206, "0x00100206"],
)
def test_r_status_2_lookup_normalises(query):
    entry = lookup(query)
    assert entry is not None
    assert entry.code == "0x100206"
    assert entry.error_code == "GroundFailure"
    assert entry.description == "Ground error"


@pytest.mark.parametrize("query", ["0x10020a", "10020A", "0x10020A", "0X10020a"])
def test_r_status_2_lookup_any_case_hex_letters(query):
    assert lookup(query).code == "0x10020A"


@pytest.mark.parametrize("query", ["0x999999", "", "0x", "zz", "0xG1", "-1", True, -5])
def test_r_status_2_lookup_unknown_or_invalid_is_none(query):
    assert lookup(query) is None


def test_r_status_2_keys_are_canonical():
    for key, entry in DTC_TABLE.items():
        assert key == entry.code
        assert key.startswith("0x") and key[2:] == key[2:].upper()


@pytest.mark.parametrize(
    ("code", "severity"),
    [
        ("0x100202", "error"),  # Terminal emergency stop is pressed
        ("0x200202", "error"),  # Power cabinet emergency stop is pressed
        ("0x100206", "error"),  # Ground error
        ("0x10020C", "error"),  # Terminal door open
        ("0x10020E", "error"),  # Tilt sensor triggered
        ("0x200209", "error"),  # Circuit breaker tripped
        ("0x20020B", "error"),  # Tilt sensor alarm: safety item, error despite "alarm"
        ("0xC00000", "error"),  # Power control fan fault ("fault", not "fault alarm")
        ("0x100005", "alarm"),  # Card reader communication failure alarm
        ("0x100007", "alarm"),  # Insulation warning
        ("0x10000C", "alarm"),  # SECC socket connection fault alarm
        ("0x100101", "alarm"),  # Terminal over-temperature alarm
        ("0x200002", "alarm"),  # Power module fault alarm
        ("0x200104", "alarm"),  # Power control fan failure alarm
    ],
)
def test_r_status_2_severity_of_rows(code, severity):
    assert DTC_TABLE[code].severity == severity
    assert DTC_TABLE[code].is_error == (severity == "error")


def test_r_status_2_alarm_error_split_is_the_documented_one():
    assert {c for c, e in DTC_TABLE.items() if e.severity == "alarm"} == EXPECTED_ALARMS


def test_r_status_2_severity_follows_wording_rule():
    """Every "error"/"pressed"/"open"/"triggered"/"tripped"/plain "fault" row is an error."""
    for entry in DTC_TABLE.values():
        d = entry.description.lower()
        if any(w in d for w in ("error", "pressed", "open", "triggered", "tripped")):
            assert entry.severity == "error", entry
        elif d.endswith(" fault"):
            assert entry.severity == "error", entry
        elif "tilt" in d:
            assert entry.severity == "error", entry  # safety exception
        else:
            assert "alarm" in d or "warning" in d, entry
            assert entry.severity == "alarm", entry


HEADER = "errorCode\tdtc\tdescription\tseverity\n"


def test_r_status_2_loader_fills_down_and_skips_comments_and_blank_lines():
    text = (
        "# comment\n" + HEADER
        + "OtherError\t0x1\tA\talarm\n"
        + "\t0x2\tB\terror\n"
        + "\n"  # page break in the guide
        + "\t0x3\tC\terror\n"
        + "GroundFailure\t0xa\tD\terror\n"
        + "\t0xb\tE\talarm\n"
    )
    table = load_dtc_table(text)
    assert [(e.code, e.error_code) for e in table.values()] == [
        ("0x1", "OtherError"),
        ("0x2", "OtherError"),
        ("0x3", "OtherError"),
        ("0xA", "GroundFailure"),
        ("0xB", "GroundFailure"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        "\t0x1\tA\terror\n",  # nothing to fill down from
        "Bogus\t0x1\tA\terror\n",  # not an OCPP error code
        "OtherError\t0x1\tA\tfatal\n",  # bad severity
        "OtherError\t0x1\tA\t\n",  # severity not decided
        "OtherError\tnothex\tA\terror\n",  # bad DTC
        "OtherError\t0x1\t\terror\n",  # no description
        "OtherError\t0x1\tA\terror\n\t0X01\tB\terror\n",  # duplicate
        "OtherError\t0x1\tA\n",  # missing column
    ],
)
def test_r_status_2_loader_rejects_bad_rows(body):
    with pytest.raises(DtcTableError):
        load_dtc_table(HEADER + body)


def test_r_status_2_loader_requires_header():
    with pytest.raises(DtcTableError):
        load_dtc_table("OtherError\t0x1\tA\terror\n")
    with pytest.raises(DtcTableError):
        load_dtc_table("")


def test_r_status_2_dtc_is_frozen():
    entry = DTC_TABLE["0x100206"]
    with pytest.raises(AttributeError):
        entry.severity = "alarm"  # type: ignore[misc]
