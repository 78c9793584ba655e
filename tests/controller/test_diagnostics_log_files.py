"""The daemon's own log files on a full or read-only state disk (issue 10 item 4)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from controller.diagnostics import LogFileHandler


def test_regression_full_disk_log_file_says_it_once_not_a_traceback_per_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found with the full-disk test: every log record printed a traceback to the journal."""
    path = tmp_path / "evsectl.log"
    handler = LogFileHandler(path, maxBytes=1_000_000, backupCount=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test.full_disk_log")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("before")
        real_open = handler._open
        monkeypatch.setattr(handler, "_open", lambda: open("/dev/full", "w"))  # noqa: SIM115
        handler.stream.close()
        handler.stream = None
        for i in range(50):
            logger.warning("while full %d", i)
        err = capsys.readouterr().err
        assert err.count("cannot write the log file") == 1 and "Traceback" not in err, err
        assert handler.failing
        monkeypatch.setattr(handler, "_open", real_open)
        logger.warning("after")
        assert "is written again" in capsys.readouterr().err
        handler.flush()
        assert path.read_text().splitlines() == ["before", "after"]
    finally:
        logger.removeHandler(handler)
        handler.close()
