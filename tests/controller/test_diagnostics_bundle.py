"""GetDiagnostics / GetLog bundles (R-FW 1, R-OPSYS 3): the log lines of the window, streamed
from the rotated files into the tar.gz (one line in memory at a time)."""

from __future__ import annotations

import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

from controller.diagnostics import build_bundle, lines_in_window


def _logs(state: Path) -> Path:
    logs = state / "logs"
    logs.mkdir(parents=True)
    (logs / "evsectl.log.1").write_text(
        "2026-11-25T10:00:00.000Z INFO a: too early\n"
        "2026-11-25T11:00:00.000Z INFO a: first kept\n  a continuation line\r\n", encoding="utf-8")
    (logs / "evsectl.log").write_bytes(
        "2026-11-25T12:00:00.000Z WARNING b: second kept \u00e9\n".encode()
        + b"2026-11-25T12:30:00.000Z INFO b: bad byte \xff kept\n"
        + b"2026-11-25T14:00:00.000Z INFO b: too late\n")
    (logs / "security.log").write_text("2026-11-25T11:30:00.000Z INFO s: StartupOfTheDevice\n",
                                       encoding="utf-8")
    return logs


def test_r_fw_1_bundle_holds_the_window_of_every_rotation_oldest_first(tmp_path: Path) -> None:
    state = tmp_path / "state"
    logs = _logs(state)
    bundle = build_bundle(tmp_path / "out" / "diag.tar.gz", kind="DiagnosticsLog", state_dir=state,
                          settings_path=None, summary={"link": "connected"},
                          start="2026-11-25T10:30:00Z", stop="2026-11-25T13:00:00Z")
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        main = tar.extractfile("evsectl.log").read().decode()
        security = tar.extractfile("security.log").read().decode()
        state_json = json.loads(tar.extractfile("state.json").read())
    assert names == ["evsectl.log", "security.log", "state.json", "versions.json"]
    assert main == ("2026-11-25T11:00:00.000Z INFO a: first kept\n  a continuation line\r\n"
                    "2026-11-25T12:00:00.000Z WARNING b: second kept \u00e9\n"
                    "2026-11-25T12:30:00.000Z INFO b: bad byte \ufffd kept\n")
    lo, hi = datetime(2026, 11, 25, 10, 30, tzinfo=UTC), datetime(2026, 11, 25, 13, tzinfo=UTC)
    assert main == lines_in_window([logs / "evsectl.log.1", logs / "evsectl.log"], lo, hi)
    assert security == "2026-11-25T11:30:00.000Z INFO s: StartupOfTheDevice\n"
    assert state_json == {"link": "connected"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["diag.tar.gz"]  # no temporary left


def test_r_fw_1_security_log_bundle_has_only_the_security_log(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _logs(state)
    bundle = build_bundle(tmp_path / "sec.tar.gz", kind="SecurityLog", state_dir=state, settings_path=None,
                          summary={}, start=None, stop=None)
    with tarfile.open(bundle) as tar:
        assert tar.getnames() == ["security.log", "versions.json"]
