"""`evsectl status` (human form): the storage fault line (R-TX 4, docs/recovery.md)."""

from __future__ import annotations

from controller.cli import format_status

STATUS = {
    "model": "EVlink Pro DC 180", "box_identifier": "CP-1", "link": "connected", "auth_options": ["badge"],
    "queued_messages": 3, "connectors": [], "last_error": None, "storage_fault": None,
}


def test_r_tx_4_status_says_when_the_state_is_held_in_memory() -> None:
    assert "storage" not in format_status(STATUS)
    text = format_status({**STATUS, "storage_fault": "disk full"})
    assert "storage: state held in memory (disk full)" in text


def test_status_from_a_daemon_without_the_storage_field_still_prints() -> None:
    old = {k: v for k, v in STATUS.items() if k != "storage_fault"}
    assert format_status(old).startswith("EVlink Pro DC 180  CP-1  link: connected")
