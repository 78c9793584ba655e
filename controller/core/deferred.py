"""Answers that need blocking I/O first (R-DT 2/3 picture DataTransfers).

Most CSMS requests are answered by the core at once. A few can only be answered
after some I/O (a picture DataTransfer must carry the ``downloadStatus`` of the
download it asked for). For those the core returns a :class:`DeferredReply`:
``run`` is the blocking work (called by the runtime in a worker thread, so the
event loop keeps ticking: heartbeats, meter values, the watchdog), ``finish``
turns its outcome into the reply (called back on the loop, in the core's thread).
The core stays free of I/O and threads; a test resolves one with :func:`resolve`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DeferredReply:
    run: Callable[[], Any]
    finish: Callable[[Any], Any]  # the outcome of run -> the reply (a dict, at the core's surface)

    def then(self, wrap: Callable[[Any], Any]) -> DeferredReply:
        """The same work, its reply passed through ``wrap``."""
        return DeferredReply(self.run, lambda outcome: wrap(self.finish(outcome)))


def resolve(reply: dict[str, Any] | DeferredReply) -> dict[str, Any]:
    """The reply, doing a deferred one's work right here (tests, tools)."""
    if isinstance(reply, DeferredReply):
        return reply.finish(reply.run())
    return reply


__all__ = ["DeferredReply", "resolve"]
