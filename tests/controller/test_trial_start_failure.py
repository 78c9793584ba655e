"""R-FW 3: a release on trial that cannot even open (exit 3: a driver it cannot load, a
database it refuses) is rolled back at once, since systemd does not restart exit 3
(``RestartPreventExitStatus=2 3``) and the trial counts only starts that got that far."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from controller.app import EXIT_TEMPFAIL, StartupError, rollback_after_failed_start
from controller.firmware import installer

PREVIOUS = ["/var/lib/evsectl/releases/0.1.0/venv/bin/python", "-P", "-m", "controller", "run"]


def _release(state: Path, version: str) -> installer.Release:
    path = state / "releases" / version
    (path / "venv" / "bin").mkdir(parents=True)
    (path / "venv" / "bin" / "python").touch()
    (path / "release.json").write_text(json.dumps({"version": version}))
    return installer.Release.at(path)


def _on_trial(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    old, new = _release(state, "0.1.0"), _release(state, "0.2.0")
    installer.switch_to(state, old)
    installer.begin_trial(state, PREVIOUS, "0.2.0", datetime.now(UTC) + timedelta(minutes=5))
    installer.switch_to(state, new)
    return state


def test_r_fw_3_regression_release_on_trial_that_cannot_open_is_rolled_back_at_once(tmp_path):
    state = _on_trial(tmp_path)
    command = rollback_after_failed_start(state, StartupError("unknown meter driver 'modbus'"))
    assert command == PREVIOUS
    assert installer.current_release(state).version == "0.1.0"
    assert installer.trial(state).state == "rolled_back"


def test_r_fw_3_a_transient_start_failure_on_trial_is_left_to_systemd(tmp_path):
    state = _on_trial(tmp_path)
    assert rollback_after_failed_start(state, StartupError("disk full", exit_code=EXIT_TEMPFAIL)) is None
    assert installer.current_release(state).version == "0.2.0"
    assert installer.trial(state).state == "pending"


def test_r_fw_3_no_trial_no_rollback(tmp_path):
    state = tmp_path / "state"
    _release(state, "0.1.0")
    assert rollback_after_failed_start(state, StartupError("corrupt database")) is None
    assert rollback_after_failed_start(tmp_path / "missing", StartupError("corrupt database")) is None
