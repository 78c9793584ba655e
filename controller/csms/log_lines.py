"""Readable one-line descriptions of OCPP exchanges, for the live log of `evsectl demo`/`csms`.

``→`` marks a CALL from the charge point, ``←`` a CALL from the central system; the
answer follows after a second ``→``. Each action has its own small formatter; an action
without one falls back to ``key=value`` pairs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

Payload = Mapping[str, Any]
Formatter = Callable[[Payload], str]


# ------------------------------------------------------------------ requests (CP → CSMS)


def _boot_notification(req: Payload) -> str:
    serial = req.get("chargePointSerialNumber") or req.get("chargeBoxSerialNumber")
    firmware = req.get("firmwareVersion")
    return _join(
        req.get("chargePointModel"),
        serial,
        f"fw {firmware}" if firmware else None,
    )


def _status_notification(req: Payload) -> str:
    return _join(
        f"c{req.get('connectorId')}",
        req.get("status"),
        req.get("errorCode"),
        req.get("vendorErrorCode"),
        _quoted(req.get("info")),
    )


def _meter_values(req: Payload) -> str:
    samples = req.get("meterValue") or []
    latest = samples[-1].get("sampledValue", []) if samples else []
    tx = req.get("transactionId")
    return _join(
        f"c{req.get('connectorId')}",
        _sampled_values(latest),
        f"tx {tx}" if tx is not None else None,
    )


def _authorize(req: Payload) -> str:
    return f"idTag {req.get('idTag')}"


def _start_transaction(req: Payload) -> str:
    return f"c{req.get('connectorId')} idTag {req.get('idTag')}"


def _stop_transaction(req: Payload) -> str:
    return _join(
        f"tx {req.get('transactionId')}",
        f"meterStop {req.get('meterStop')} Wh",
        f"reason {req.get('reason', 'Local')}",
        f"idTag {req['idTag']}" if req.get("idTag") else None,
    )


def _data_transfer(req: Payload) -> str:
    return _join(req.get("vendorId"), req.get("messageId"))


def _status_only(req: Payload) -> str:
    return _join(req.get("status"), _labelled("requestId", req.get("requestId")))


def _security_event(req: Payload) -> str:
    return _join(req.get("type"), _quoted(req.get("techInfo")))


def _sign_certificate(req: Payload) -> str:
    return f"CSR {len(req.get('csr', ''))} chars"


REQUEST_FORMATTERS: dict[str, Formatter] = {
    "BootNotification": _boot_notification,
    "Heartbeat": lambda req: "",
    "StatusNotification": _status_notification,
    "MeterValues": _meter_values,
    "Authorize": _authorize,
    "StartTransaction": _start_transaction,
    "StopTransaction": _stop_transaction,
    "DataTransfer": _data_transfer,
    "DiagnosticsStatusNotification": _status_only,
    "FirmwareStatusNotification": _status_only,
    "LogStatusNotification": _status_only,
    "SignedFirmwareStatusNotification": _status_only,
    "SecurityEventNotification": _security_event,
    "SignCertificate": _sign_certificate,
}


# ------------------------------------------------------------------ results (CSMS → CP)


def _boot_result(res: Payload) -> str:
    return _join(res.get("status"), _labelled("interval", res.get("interval"), "s"))


def _id_tag_status(res: Payload) -> str:
    return str((res.get("idTagInfo") or {}).get("status", ""))


def _start_result(res: Payload) -> str:
    status = _id_tag_status(res)
    return _join(f"tx {res.get('transactionId')}", status if status != "Accepted" else None)


def _stop_result(res: Payload) -> str:
    status = _id_tag_status(res)
    return status if status not in ("", "Accepted") else ""


RESULT_FORMATTERS: dict[str, Formatter] = {
    "BootNotification": _boot_result,
    "Authorize": _id_tag_status,
    "StartTransaction": _start_result,
    "StopTransaction": _stop_result,
    "DataTransfer": lambda res: _join(res.get("status"), _quoted(res.get("data"))),
    "SignCertificate": lambda res: str(res.get("status", "")),
}


# ------------------------------------------------------------------ lines


def describe_cp_call(
    identity: str, action: str, request: Any, answer: Any = None, *, no_reply: bool = False
) -> str:
    """``CP-001 → StartTransaction c1 idTag SIMTAG → tx 1``.

    ``answer`` is the CALLRESULT payload, a ``(code, description)`` CALLERROR tuple or None.
    """
    details = _format(REQUEST_FORMATTERS, action, request)
    answer_text = _answer_text(RESULT_FORMATTERS, action, answer, no_reply)
    return _join(identity, "→", action, details, answer_text)


def describe_csms_call(
    identity: str, action: str, request: Any, answer: Any = None, *, no_reply: bool = False
) -> str:
    """``CP-001 ← RemoteStartTransaction connectorId=1 idTag=SIMTAG → Accepted``."""
    details = _pairs(request) if isinstance(request, Mapping) else _compact(request)
    return _join(identity, "←", action, details, _answer_text({}, action, answer, no_reply))


def _answer_text(
    formatters: Mapping[str, Formatter], action: str, answer: Any, no_reply: bool
) -> str | None:
    if no_reply:
        return "→ (no reply)"
    if isinstance(answer, tuple):
        code, description = answer
        return _join("→ CALLERROR", code, _quoted(description))
    if answer is None:
        return None
    text = _format(formatters, action, answer) if action in formatters else _result_default(answer)
    return f"→ {text}" if text else None


def _result_default(answer: Any) -> str:
    if isinstance(answer, Mapping) and set(answer) == {"status"}:
        return str(answer["status"])
    return _pairs(answer) if isinstance(answer, Mapping) else _compact(answer)


def _format(formatters: Mapping[str, Formatter], action: str, payload: Any) -> str:
    if not isinstance(payload, Mapping):
        return _compact(payload)
    formatter = formatters.get(action, _pairs)
    try:
        return formatter(payload)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return _compact(payload)  # a malformed payload still gets a line


# ------------------------------------------------------------------ meter samples

# measurand -> ({wire unit: factor to the shown unit}, format of the shown value)
_MEASURANDS: dict[str, tuple[dict[str, float], str]] = {
    "Power.Active.Import": ({"W": 0.001, "kW": 1.0}, "{:.1f} kW"),
    "Energy.Active.Import.Register": ({"Wh": 0.001, "kWh": 1.0}, "{:.3f} kWh"),
    "SoC": ({"Percent": 1.0}, "SoC {:.0f} %"),
    "Current.Import": ({"A": 1.0}, "{:.1f} A"),
    "Voltage": ({"V": 1.0}, "{:.0f} V"),
    "Temperature": ({"Celsius": 1.0}, "{:.0f} °C"),
}
_DEFAULT_UNITS = {"Energy.Active.Import.Register": "Wh", "Power.Active.Import": "W"}


def _sampled_values(sampled: list[Mapping[str, Any]]) -> str:
    shown: dict[str, str] = {}
    for value in sampled:
        measurand = value.get("measurand", "Energy.Active.Import.Register")
        if measurand in shown or value.get("phase"):
            continue
        shown[measurand] = _sample_text(measurand, value)
    ordered = [shown.pop(name) for name in _MEASURANDS if name in shown]
    return _join(*ordered, *shown.values())


def _sample_text(measurand: str, value: Mapping[str, Any]) -> str:
    raw = value.get("value")
    unit = value.get("unit") or _DEFAULT_UNITS.get(measurand, "")
    factors, pattern = _MEASURANDS.get(measurand, ({}, ""))
    try:
        return pattern.format(float(str(raw)) * factors[unit])
    except (KeyError, TypeError, ValueError):
        return _join(measurand, raw, unit)


# ------------------------------------------------------------------ small pieces


def _join(*parts: Any) -> str:
    return " ".join(str(part) for part in parts if part not in (None, ""))


def _labelled(label: str, value: Any, unit: str = "") -> str | None:
    return None if value is None else _join(label, value, unit)


def _quoted(text: Any) -> str | None:
    return f'"{text}"' if text else None


def _pairs(payload: Payload) -> str:
    return _join(*(f"{key}={_compact(value)}" for key, value in payload.items()))


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."
