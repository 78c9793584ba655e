"""A small local OCPP 1.6-J central system for `evsectl demo`/`evsectl csms` and tests.

Not part of the charger: nothing under ``controller.core``/``runtime``/``ocpp`` imports it.
"""

from controller.csms.records import CallRecord, ConnectionEvent, Frame
from controller.csms.server import (
    CP_ACTIONS,
    DEFAULT_HOST,
    DEFAULT_PORT,
    CallErrorReceived,
    CentralSystem,
    CsmsError,
    InvalidCallResultError,
    NotConnectedError,
    run_forever,
)

__all__ = [
    "CP_ACTIONS",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "CallErrorReceived",
    "CallRecord",
    "CentralSystem",
    "ConnectionEvent",
    "CsmsError",
    "Frame",
    "InvalidCallResultError",
    "NotConnectedError",
    "run_forever",
]
