"""R-OPSYS 1: the daemon tells systemd it is ready and pings the watchdog from its event loop."""

from __future__ import annotations

import asyncio
import os
import socket
import time

from controller.runtime import sdnotify


def _socket(tmp_path):
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.setblocking(False)
    return s, path


def _drain(s: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(s.recv(4096).decode())
        except BlockingIOError:
            return out


def test_r_opsys_1_notify_sends_one_datagram_and_is_silent_without_systemd(tmp_path, monkeypatch):
    s, path = _socket(tmp_path)
    assert sdnotify.notify("READY=1", str(path)) is True
    assert _drain(s) == ["READY=1"]
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False


def test_r_opsys_1_abstract_socket_names(tmp_path):
    name = f"@evsectl-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name[1:])
    try:
        assert sdnotify.notify("WATCHDOG=1", name)
        assert s.recv(100) == b"WATCHDOG=1"
    finally:
        s.close()


def test_r_opsys_1_watchdog_interval_is_half_the_period_for_this_process():
    assert sdnotify.watchdog_interval_s({"WATCHDOG_USEC": "2000000"}) == 1.0
    assert sdnotify.watchdog_interval_s({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert sdnotify.watchdog_interval_s({}) is None


async def test_r_opsys_1_daemon_ready_then_watchdog_pings_stop_when_the_loop_hangs(csms, make_daemon, tmp_path):
    s, path = _socket(tmp_path)
    d = make_daemon(csms.url)
    os.environ["NOTIFY_SOCKET"] = str(path)
    os.environ["WATCHDOG_USEC"] = "200000"  # a ping every 0.1 s
    try:
        await d.start()
    finally:
        del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
    end = time.monotonic() + 10
    seen: list[str] = []
    while time.monotonic() < end and sum(m == "WATCHDOG=1" for m in seen) < 3:
        await asyncio.sleep(0.05)
        seen += _drain(s)
    assert any(m.startswith("READY=1") for m in seen), seen
    assert sum(m == "WATCHDOG=1" for m in seen) >= 3
    # a blocked event loop: no ping while it is blocked
    blocker = asyncio.create_task(asyncio.to_thread(d.rig, cmd="block-loop", seconds=1.5))
    await asyncio.sleep(0.3)  # the block has begun
    _drain(s)
    await asyncio.sleep(0.9)
    assert [m for m in _drain(s) if m == "WATCHDOG=1"] == []
    await blocker
    await asyncio.sleep(0.5)
    assert "WATCHDOG=1" in _drain(s)  # alive again
    assert await d.stop() == 0
    assert any(m.startswith("STOPPING=1") for m in _drain(s))
