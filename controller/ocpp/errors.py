"""CALLERROR codes as OCPP-J 1.6 names them, corrected at our edge.

The ``ocpp`` library 2.1.0 says ``FormatViolation`` (the OCPP 2.0 name) where
OCPP-J 1.6 says ``FormationViolation``, swaps NotImplemented/NotSupported for
unknown vs unhandled actions, and maps several JSON-schema failures to codes
1.6 reserves for other cases. This module owns the mapping from a schema
failure (as ``jsonschema`` reports it, by the name of the failed keyword) to
the 1.6 code, and the frame we send for an error.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema.exceptions import ValidationError
from ocpp.v16.enums import Action

FORMATION_VIOLATION = "FormationViolation"
NOT_IMPLEMENTED = "NotImplemented"  # action not known by the receiver
NOT_SUPPORTED = "NotSupported"  # known action the receiver does not handle
INTERNAL_ERROR = "InternalError"

_BY_KEYWORD = {
    "type": "TypeConstraintViolation",
    "required": "OccurenceConstraintViolation",
    "minItems": "OccurenceConstraintViolation",
    "maxItems": "OccurenceConstraintViolation",
    "enum": "PropertyConstraintViolation",
    "const": "PropertyConstraintViolation",
    "maxLength": "PropertyConstraintViolation",
    "minLength": "PropertyConstraintViolation",
    "pattern": "PropertyConstraintViolation",
    "format": "PropertyConstraintViolation",
    "minimum": "PropertyConstraintViolation",
    "maximum": "PropertyConstraintViolation",
    "exclusiveMinimum": "PropertyConstraintViolation",
    "exclusiveMaximum": "PropertyConstraintViolation",
    "multipleOf": "PropertyConstraintViolation",
    "additionalProperties": FORMATION_VIOLATION,
}

_DESCRIPTIONS = {
    NOT_IMPLEMENTED: "Requested Action is not known by receiver",
    NOT_SUPPORTED: "Requested Action is recognized but not supported by the receiver",
    INTERNAL_ERROR: "An internal error occurred and the receiver was not able to process the requested Action successfully",
    FORMATION_VIOLATION: "Payload for Action is syntactically incorrect or not conform the PDU structure for Action",
    "PropertyConstraintViolation": "Payload is syntactically correct but at least one field contains an invalid value",
    "OccurenceConstraintViolation": "Payload for Action is syntactically correct but at least one of the fields violates occurence constraints",
    "TypeConstraintViolation": "Payload for Action is syntactically correct but at least one of the fields violates data type constraints",
    "ProtocolError": "Payload for Action is incomplete",
}

OCPP16_ACTIONS = frozenset(a.value for a in Action)


def code_for_schema_error(error: ValidationError) -> str:
    """The OCPP-J 1.6 error code for the first schema failure of a request."""
    if error.validator == "type" and not error.path:
        return FORMATION_VIOLATION  # the payload itself is not an object
    return _BY_KEYWORD.get(str(error.validator), FORMATION_VIOLATION)


def call_error_frame(unique_id: Any, code: str, detail: str | None = None) -> str:
    details: dict[str, Any] = {"cause": detail} if detail else {}
    return json.dumps([4, unique_id, code, _DESCRIPTIONS.get(code, ""), details], separators=(",", ":"))
