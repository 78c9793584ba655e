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

[drivers]
meter = "mock"
rfid = "mock"
power = "mock"
platform = "mock"

[rig]
control_socket = "{socket}"
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
        try:
            await _session(daemon, csms, say, charge_s)
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
    say("demo  done")
    return 0


async def _session(daemon: Daemon, csms: Any, say: _Printer, charge_s: float) -> None:
    rt = daemon.runtime
    assert rt is not None
    power, rfid = rt.drivers["power"], rt.drivers["rfid"]
    await csms.wait_for("BootNotification", timeout=15)
    await _until(lambda: rt.core.online(), 15)
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
    say("car   unplugs")
    power.unplug(1)
    await asyncio.sleep(0.5)


async def _until(predicate: Any, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("the charger did not come online")
        await asyncio.sleep(0.05)


__all__ = ["run_demo", "logging"]
