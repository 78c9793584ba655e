"""``evsectl demo``: a local CSMS, the charger on mock hardware, one charging session.

Everything runs in this process on 127.0.0.1, with its state in a temporary
directory: the CSMS prints what it receives, the demo prints what the driver
does and what the charger shows. It exits 0 when the StopTransaction has
reached the CSMS, or keeps running with ``--forever`` (then ``evsectl sim`` and
``evsectl status`` work against it, with ``EVSECTL_CONFIG`` pointing at the
settings file it prints).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .app import Daemon, setup_logging
from .config import load
from .csms.server import CentralSystem

BADGE = "04A1B2C3D4"
TARIFF_EUR_PER_KWH = 0.45


def _settings_text(url: str, state_dir: Path, socket: Path) -> str:
    return f"""\
[station]
model = "EVlink Pro DC 180"
serial_number = "SN-DEMO-0001"
state_dir = "{state_dir}"

[ocpp]
supervision_url = "{url}"
box_identifier = "CP-DEMO"

[ocpp.keys]
MeterValueSampleInterval = 5
MinimumStatusDuration = 0
HeartbeatInterval = 60
QRcode1 = "https://pay.example.com/start?cp=CP-DEMO&c=1"
QRcode2 = "https://pay.example.com/start?cp=CP-DEMO&c=2"

[drivers]
meter = "mock"
rfid = "mock"
power = "mock"
platform = "mock"

[rig]
control_socket = "{socket}"

[hmi]
idle_s = 60
"""


class _Printer:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, line: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {line}", flush=True)


async def run_demo(*, forever: bool = False, charge_s: float = 12.0) -> int:
    say = _Printer()
    setup_logging(os.environ.get("EVSECTL_LOG_LEVEL", "WARNING"))
    with tempfile.TemporaryDirectory(prefix="evsectl-demo-") as tmp:
        work = Path(tmp)
        csms = CentralSystem(port=0, log=lambda line: say(f"CSMS  {line}"))
        await csms.start()
        cfg = work / "evsectl.toml"
        cfg.write_text(_settings_text(csms.url, work / "state", work / "control.sock"))
        say(f"CSMS  listening on {csms.url}")
        say(f"demo  settings in {cfg}")
        daemon = Daemon(load(cfg))
        await daemon.open()
        run = asyncio.ensure_future(daemon.run())
        screen = _start_screen(daemon.settings.hmi_socket, say)
        files = _serve_pictures(work / "www")
        try:
            await _session(daemon, csms, say, charge_s, files)
            if forever:
                say(f"demo  still running: EVSECTL_CONFIG={cfg} evsectl status  (Ctrl-C to stop)")
                await run
            else:
                daemon._on_signal()
                await run
        finally:
            if not run.done():
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run
            await daemon.close("exit")
            await csms.stop()
            files.shutdown()
            if screen is not None and screen.poll() is None:
                screen.terminate()
                await asyncio.to_thread(screen.wait, 5)
    say("demo  done")
    return 0


async def _session(daemon: Daemon, csms: Any, say: _Printer, charge_s: float, files: Any) -> None:
    rt = daemon.runtime
    assert rt is not None
    power, rfid = rt.drivers["power"], rt.drivers["rfid"]
    await csms.wait_for("BootNotification", timeout=15)
    await _until(lambda: rt.core.online(), 15)
    location = f"http://127.0.0.1:{files.server_address[1]}/tariff.png"
    answer = await csms.call("CP-DEMO", "DataTransfer", {
        "vendorId": "com.se.tariff", "messageId": "TariffDownload",
        "data": json.dumps({"fileType": "Tariff", "type": "file", "location": location}),
    })
    say(f"CSMS  TariffDownload -> {answer}: a Tariff button is on the screen")
    costs = asyncio.ensure_future(_send_costs(rt, csms, say))
    say("car   plugs into connector 1 (CCS2), SoC 35 %")
    power.set_ev(1, soc=35)
    power.plug(1)
    await asyncio.sleep(1.0)
    say(f"user  presents badge {BADGE}")
    rfid.present(BADGE)
    await csms.wait_for("StartTransaction", timeout=15)
    end = time.monotonic() + charge_s
    while time.monotonic() < end:
        await asyncio.sleep(2.0)
        c = rt.core.snapshot()["connectors"][0]
        say(f"screen connector 1 {c['status']}: {c['power_w'] / 1000:.1f} kW, "
            f"{c['energy_wh'] / 1000:.3f} kWh, SoC {c['soc']} %, {c['duration_s']} s")
    say(f"user  presents badge {BADGE} again to stop")
    rfid.present(BADGE)
    await csms.wait_for("StopTransaction", timeout=15)
    costs.cancel()
    say("car   unplugs")
    power.unplug(1)
    await asyncio.sleep(0.5)


async def _send_costs(rt: Any, csms: Any, say: _Printer) -> None:
    """The demo CSMS's tariff: 0.45 EUR/kWh, sent as CostUpdated every 3 s while charging."""
    while True:
        await asyncio.sleep(3.0)
        c = rt.core.snapshot()["connectors"][0]
        if c["transaction_id"] is None:
            continue
        total = round(c["energy_wh"] / 1000 * TARIFF_EUR_PER_KWH, 2)
        data = {"currency": "EUR", "method": "CostUpdated", "connectID": 1, "totalCost": total,
                "transactionId": c["transaction_id"]}
        with contextlib.suppress(Exception):
            await csms.call("CP-DEMO", "DataTransfer", {
                "vendorId": "com.se.cost", "messageId": "CostUpdated", "data": json.dumps(data)})
            say(f"CSMS  CostUpdated {total:.2f} EUR")


def _start_screen(socket_path: Path, say: _Printer) -> Any:
    """The HMI in a window where a display exists, headless otherwise (its own process)."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("pygame") is None:
        say("demo  no screen: install the hmi extra (pip install -e '.[hmi]') to see it")
        return None
    env = dict(os.environ, PYGAME_HIDE_SUPPORT_PROMPT="1")
    windowed = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if not windowed:
        env["SDL_VIDEODRIVER"] = "dummy"
    args = [sys.executable, "-m", "hmi", "--socket", str(socket_path)] + (["--windowed"] if windowed else [])
    say("demo  screen " + ("in a window" if windowed else "headless (no display)"))
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _serve_pictures(folder: Path) -> Any:
    """A file server on 127.0.0.1 with the demo tariff picture (a PNG made with zlib)."""
    import functools
    import threading

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tariff.png").write_bytes(_tariff_png(564, 312))
    handler = functools.partial(_QuietHandler, directory=str(folder))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _tariff_png(w: int, h: int) -> bytes:
    """A plain tariff card: white, a green band, three grey "price" bars."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = []
    for y in range(h):
        row = bytearray()
        for x in range(w):
            if y < h // 5:
                px = (61, 205, 88)
            elif any(h * (2 + 2 * k) // 10 <= y < h * (3 + 2 * k) // 10 and w // 10 <= x < w * (6 - k) // 10
                     for k in range(3)):
                px = (90, 96, 104)
            else:
                px = (255, 255, 255)
            row += bytes(px)
        rows.append(b"\0" + bytes(row))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


async def _until(predicate: Any, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("the charger did not come online")
        await asyncio.sleep(0.05)


__all__ = ["run_demo", "logging"]
