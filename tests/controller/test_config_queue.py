"""R-TX 4: the ``[queue] max_messages`` setting (the bound of the on-disk message queue)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import ConfigError, load
from controller.core.outbox import MAX_QUEUED_MESSAGES

BASE = """\
[station]
model = "EVlink Pro DC 180"
serial_number = "SN-1"
state_dir = "{state}"

[ocpp]
supervision_url = "ws://127.0.0.1:9/ocpp"
box_identifier = "CP-1"
"""


def write(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "evsectl.toml"
    path.write_text(BASE.format(state=tmp_path / "state") + extra)
    return path


def test_r_tx_4_queue_bound_defaults_to_200000(tmp_path: Path) -> None:
    assert load(write(tmp_path)).max_queued_messages == MAX_QUEUED_MESSAGES == 200_000


def test_r_tx_4_queue_bound_from_the_settings_file(tmp_path: Path) -> None:
    assert load(write(tmp_path, "\n[queue]\nmax_messages = 500\n")).max_queued_messages == 500


@pytest.mark.parametrize("value", ["10", "0", '"big"', "true"])
def test_r_tx_4_queue_bound_refused_names_the_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, f"\n[queue]\nmax_messages = {value}\n"))
    assert "queue.max_messages" in str(e.value)
