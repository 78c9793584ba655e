"""Turning meter and power-stage readings into OCPP MeterValue entries.

Owns the measurands this charger supports, their units, and the rule that
Voltage is added when EnableMeterValuesContainVoltage is true. Values are
formatted Raw, as strings, as OCPP 1.6 requires.
"""

from __future__ import annotations

from typing import Any

SUPPORTED_MEASURANDS = (
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Power.Offered",
    "SoC",
    "Current.Import",
    "Current.Offered",
    "Voltage",
)

_UNITS = {
    "Energy.Active.Import.Register": "Wh",
    "Power.Active.Import": "W",
    "Power.Offered": "W",
    "SoC": "Percent",
    "Current.Import": "A",
    "Current.Offered": "A",
    "Voltage": "V",
}


def _fmt(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.1f}"


def _value_of(measurand: str, meter: Any, power: Any) -> float | None:
    if measurand == "Energy.Active.Import.Register":
        return None if meter is None else meter.energy_wh
    if measurand == "Power.Active.Import":
        return None if meter is None else round(meter.power_w)
    if measurand == "Current.Import":
        return None if meter is None else meter.current_a
    if measurand == "Voltage":
        return None if meter is None else meter.voltage_v
    if power is None:
        return None
    if measurand == "Power.Offered":
        return round(power.offered_w)
    if measurand == "Current.Offered":
        return power.offered_w / power.voltage_v if power.voltage_v > 0 else 0.0
    if measurand == "SoC":
        return power.soc_pct
    return None


def sampled_values(
    measurands: list[str], context: str, meter: Any, power: Any, with_voltage: bool
) -> list[dict[str, Any]]:
    """SampledValue dicts (camelCase, as on the wire) for the measurands we can read."""
    wanted = [m for m in measurands if m in _UNITS]
    if with_voltage and "Voltage" not in wanted:
        wanted.append("Voltage")
    out: list[dict[str, Any]] = []
    for m in wanted:
        value = _value_of(m, meter, power)
        if value is None:
            continue
        sv: dict[str, Any] = {
            "value": _fmt(value),
            "context": context,
            "format": "Raw",
            "measurand": m,
            "unit": _UNITS[m],
        }
        if m == "SoC":
            sv["location"] = "EV"
        elif m in ("Power.Offered", "Current.Offered"):
            sv["location"] = "Outlet"
        out.append(sv)
    return out
