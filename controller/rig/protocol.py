"""The control socket's wire format: one JSON object per line, each way.

Request ``{"cmd": "plug", "connector": 1}``; answer ``{"ok": true, ...}`` or
``{"ok": false, "error": "text"}``. Commands: status, plug, unplug, badge, ev,
fault, power-fail, touch, clock-advance.
"""

from __future__ import annotations

import json
from typing import Any

COMMANDS = (
    "status", "plug", "unplug", "badge", "ev", "fault", "power-fail", "touch", "clock-advance", "block-loop",
)


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("a control message is a JSON object")
    return obj
