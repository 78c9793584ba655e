"""Vendor error codes (DTCs) of the charger: the guide's "OCPP Vendor Error Codes" table.

Owns: the DTC table as data (``controller/data/dtc.tsv``), its loader, and the
mapping DTC -> (OCPP ``ChargePointErrorCode``, description, severity) used for
StatusNotification (R-STATUS 2): ``errorCode`` as in the table,
``vendorErrorCode`` the DTC (``"0x100206"``), ``info`` its description.
It does not decide connector states or send anything; it is pure data.

Table format (tab-separated, header ``errorCode dtc description severity``,
``#`` lines and blank lines ignored). The guide prints the table with an empty
errorCode cell meaning "same code as the row above"; the data file keeps that
printed form and :func:`load_dtc_table` fills it down. So e.g. 0x100202
"Terminal emergency stop is pressed" is ``InternalError`` (from 0x100102),
0x10000F "Environment detection board offline alarm" is ``OtherError`` and
0x200204 "Power cabinet door open" is ``OtherError`` (from 0x200203).

Severity (written per row in the ``severity`` column, so it is data; the rule
that produced each row's value is this one):

* ``alarm`` — the description says "alarm" or "warning" (this includes
  "... fault alarm" and "... failure alarm"): reported to the CSMS, charging
  continues, the connector is not Faulted.
* ``error`` — the description says "error", "fault" (not "fault alarm"),
  "pressed", "open", "triggered" or "tripped": the charge stops and the
  connector reports Faulted.
* Exception: safety items are errors even when worded as an alarm. Emergency
  stops are worded "pressed" anyway; the one row that needs the exception is
  0x20020B "Tilt sensor alarm" (a tilted power cabinet, the same hazard as
  0x10020E "Tilt sensor triggered"), which is an ``error``.

Result: alarms are 0x100005, 0x100007, 0x100009, 0x10000C, 0x10000F, 0x100101,
0x100102, 0x200001-0x200004, 0x200008, 0x200101-0x200104; every other row is
an error (including 0xC00000 "Power control fan fault").
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Literal

__all__ = [
    "OCPP16_ERROR_CODES",
    "SEVERITIES",
    "Dtc",
    "DtcTableError",
    "load_dtc_table",
    "normalise_code",
    "lookup",
    "DTC_TABLE",
]

#: OCPP 1.6 ChargePointErrorCode values (OCPP 1.6 edition 2, §7.6).
OCPP16_ERROR_CODES: frozenset[str] = frozenset(
    {
        "ConnectorLockFailure",
        "EVCommunicationError",
        "GroundFailure",
        "HighTemperature",
        "InternalError",
        "LocalListConflict",
        "NoError",
        "OtherError",
        "OverCurrentFailure",
        "OverVoltage",
        "PowerMeterFailure",
        "PowerSwitchFailure",
        "ReaderFailure",
        "ResetFailure",
        "UnderVoltage",
        "WeakSignal",
    }
)

Severity = Literal["error", "alarm"]
SEVERITIES: frozenset[str] = frozenset({"error", "alarm"})

_HEADER = ("errorCode", "dtc", "description", "severity")


class DtcTableError(ValueError):
    """The DTC table text is malformed (bad header, code, severity, duplicate…)."""


@dataclass(frozen=True)
class Dtc:
    """One vendor error code."""

    code: str  # "0x100206" ("0x" + uppercase hex)
    error_code: str  # OCPP ChargePointErrorCode, e.g. "GroundFailure"
    description: str  # the guide's text, sent as StatusNotification.info
    severity: Severity  # "error" stops the charge (Faulted); "alarm" is reported only

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


def normalise_code(code: str | int) -> str:
    """Return ``"0x" + UPPERCASE hex`` for ``"100206"``, ``"0x100206"``, ``"0X10020a"``, ``0x100206``.

    Leading zeros are dropped (``"0x00100206"`` -> ``"0x100206"``). Raises ValueError for anything that is not a hexadecimal number.
    """
    if isinstance(code, bool):
        raise ValueError(f"not a DTC: {code!r}")
    if isinstance(code, int):
        if code < 0:
            raise ValueError(f"not a DTC: {code!r}")
        return f"0x{code:X}"
    s = str(code).strip()
    if s[:2].lower() == "0x":
        s = s[2:]
    if not s or any(c not in "0123456789abcdefABCDEF" for c in s):
        raise ValueError(f"not a DTC: {code!r}")
    return f"0x{int(s, 16):X}"


def load_dtc_table(text: str) -> dict[str, Dtc]:
    """Parse the tab-separated DTC table; keys are normalised codes ("0x100206").

    An empty errorCode cell takes the code of the row above (fill-down).
    Raises DtcTableError on a bad header, a first row without a code, an
    errorCode that is not an OCPP 1.6 ChargePointErrorCode, a bad severity,
    an empty description or a duplicate DTC.
    """
    table: dict[str, Dtc] = {}
    header_seen = False
    previous_error_code: str | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in line.split("\t")]
        if not header_seen:
            if tuple(cells) != _HEADER:
                raise DtcTableError(f"line {lineno}: expected header {_HEADER}, got {cells}")
            header_seen = True
            continue
        if len(cells) != len(_HEADER):
            raise DtcTableError(f"line {lineno}: expected {len(_HEADER)} columns, got {len(cells)}")
        error_code, code, description, severity = cells
        if not error_code:
            if previous_error_code is None:
                raise DtcTableError(f"line {lineno}: first row has no errorCode to fill down")
            error_code = previous_error_code
        if error_code not in OCPP16_ERROR_CODES:
            raise DtcTableError(
                f"line {lineno}: {error_code!r} is not an OCPP 1.6 ChargePointErrorCode"
            )
        try:
            key = normalise_code(code)
        except ValueError as exc:
            raise DtcTableError(f"line {lineno}: {exc}") from None
        if not description:
            raise DtcTableError(f"line {lineno}: empty description for {key}")
        if severity not in SEVERITIES:
            raise DtcTableError(f"line {lineno}: severity {severity!r} not in {sorted(SEVERITIES)}")
        if key in table:
            raise DtcTableError(f"line {lineno}: duplicate DTC {key}")
        table[key] = Dtc(code=key, error_code=error_code, description=description, severity=severity)  # type: ignore[arg-type]
        previous_error_code = error_code
    if not header_seen:
        raise DtcTableError("empty DTC table (no header)")
    return table


def _load_packaged_table() -> dict[str, Dtc]:
    text = resources.files("controller").joinpath("data/dtc.tsv").read_text(encoding="utf-8")
    return load_dtc_table(text)


#: The guide's table, loaded from the package data file ``controller/data/dtc.tsv``.
DTC_TABLE: dict[str, Dtc] = _load_packaged_table()


def lookup(code: str | int) -> Dtc | None:
    """The DTC for ``code`` (any case, with or without ``0x``, or an int); None if unknown/invalid."""
    try:
        key = normalise_code(code)
    except ValueError:
        return None
    return DTC_TABLE.get(key)
