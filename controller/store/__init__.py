"""Durable state of the charger (see :mod:`controller.store.sqlite`)."""

from controller.store.sqlite import (
    AVAILABILITY_VALUES,
    SCHEMA_VERSION,
    OutboxRow,
    Store,
    StoreError,
    TxRecord,
)

__all__ = [
    "AVAILABILITY_VALUES",
    "SCHEMA_VERSION",
    "OutboxRow",
    "Store",
    "StoreError",
    "TxRecord",
]
