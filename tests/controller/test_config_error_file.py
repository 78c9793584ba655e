"""R-OPSYS 2: a settings file the first-boot step refused reaches the status and the screen."""

from __future__ import annotations

import json

from controller.app import read_config_error


def test_r_opsys_2_config_error_file_read_for_the_screen(tmp_path):
    assert read_config_error(tmp_path) is None
    (tmp_path / "config-error.json").write_text(json.dumps(
        {"file": "/boot/firmware/evsectl.toml", "key": "ocpp.keys.NoSuchKey", "line": 7, "message": "unknown key"}))
    assert read_config_error(tmp_path) == "/boot/firmware/evsectl.toml:7: ocpp.keys.NoSuchKey: unknown key"
    (tmp_path / "config-error.json").write_text("not json")
    assert read_config_error(tmp_path) is None
