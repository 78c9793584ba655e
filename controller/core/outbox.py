"""Delivery policy of the transaction-message queue (pure).

The queue itself lives in the state store; the runtime sends its head. This
module owns the default bound of the queue (``MAX_QUEUED_MESSAGES``; the settings
file's ``[queue] max_messages`` changes it) and decides what a CALLERROR answer
to a queued message means: retry after
TransactionMessageRetryInterval × attempts, or give up after
TransactionMessageAttempts (OCPP 1.6 §4.10). A timeout or a lost link is not an
attempt: the message waits for the link, however long that takes (after a timeout
on a link that stays up, the runtime sends it again after
TransactionMessageRetryInterval).
"""

from __future__ import annotations

from dataclasses import dataclass

#: the most messages kept queued on disk by default (a day offline at 1 sample/s per
#: connector fits); beyond it the oldest non-transaction messages, then the oldest
#: MeterValues are dropped; StartTransaction and StopTransaction never
MAX_QUEUED_MESSAGES = 200_000


@dataclass(frozen=True, slots=True)
class Retry:
    delay_s: float


@dataclass(frozen=True, slots=True)
class Drop:
    reason: str


def after_error(attempts: int, max_attempts: int, retry_interval_s: int) -> Retry | Drop:
    """Decision after the ``attempts``-th CALLERROR for one queued message."""
    if attempts >= max(1, max_attempts):
        return Drop(f"CSMS refused it {attempts} times (TransactionMessageAttempts={max_attempts})")
    return Retry(float(retry_interval_s * attempts))
