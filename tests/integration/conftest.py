"""Fixtures that run the real daemon against a real CSMS on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import Daemon

BOX = "CP-TEST"


@pytest.fixture
async def make_daemon(tmp_path: Path) -> AsyncIterator[Callable[..., Daemon]]:
    """Factory: ``make_daemon(url, **settings)``; every daemon is stopped at the end."""
    made: list[Daemon] = []

    def make(url: str, **settings: Any) -> Daemon:
        work = tmp_path / f"daemon{len(made)}"
        work.mkdir()
        made.append(Daemon(work, url, **settings))
        return made[-1]

    yield make
    for d in made:
        if d.proc is not None and d.proc.returncode is None:
            d.proc.kill()
            await d.proc.wait()


@pytest.fixture
async def daemon(csms: Any, make_daemon: Callable[..., Daemon]) -> AsyncIterator[Daemon]:
    """The daemon connected to our CSMS with boot accepted."""
    d = make_daemon(csms.url)
    await d.start()
    await csms.wait_for("BootNotification", identity=BOX, timeout=15)
    await d.until(lambda s: s["link"] == "connected", what="boot accepted")
    yield d
