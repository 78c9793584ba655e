"""Sample snapshots of every screen (for the tests, the screenshots and the bench).

``python -m hmi.samples OUT_DIR`` renders every screen at 800x480 and 1024x768
into ``OUT_DIR/<screen>-<w>x<h>.png`` (docs/screens.sh uses it).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import pygame

from controller.ipc.messages import ConnectorView, Cost, Fault, Picture, Snapshot

from . import view
from .render import Renderer

SIZES = ((800, 480), (1024, 768))
QR1 = "https://pay.example.com/start?cp=CP-DEMO&c=1"
QR2 = "https://pay.example.com/start?cp=CP-DEMO&c=2"


def make_pictures(folder: Path, screen: tuple[int, int]) -> dict[str, Picture]:
    """A tariff picture (47:26), a 200x60 logo and two screensaver pictures, drawn here."""
    folder.mkdir(parents=True, exist_ok=True)
    if not pygame.font.get_init():
        pygame.font.init()
    font = pygame.font.Font(None, 48)
    out = {}
    tariff_size = (987, 546) if screen[1] > 480 else (564, 312)
    specs = {
        "tariff": (tariff_size, (255, 255, 255), "Tariff: 0.45 EUR/kWh + 0.10 EUR/min"),
        "logo": ((200, 60), (0, 120, 60), "ACME Charge"),
        "screensaver1": (screen, (10, 60, 120), "Charge here: 180 kW"),
        "screensaver2": (screen, (120, 40, 10), "Open 24/7"),
    }
    for name, (size, color, label) in specs.items():
        surf = pygame.Surface(size)
        surf.fill(color)
        ink = (0, 0, 0) if name == "tariff" else (255, 255, 255)
        text = font.render(label, True, ink)
        surf.blit(text, text.get_rect(center=(size[0] // 2, size[1] // 2)))
        path = folder / f"{name}.png"
        pygame.image.save(surf, str(path))
        out[name] = Picture(str(path), 1)
    return out


def base(screen: tuple[int, int]) -> Snapshot:
    return Snapshot(
        link="connected", model="EVlink Pro DC 180", screen=screen,
        connectors=(ConnectorView(1, "CCS2", "Available", qr_url=QR1), ConnectorView(2, "CHAdeMO", "Available", qr_url=QR2)),
        selected_connector=1, auth_options=("rfid", "qr", "app", "pos", "autocharge", "pnc"), idle_s=120,
    )


def snapshots(screen: tuple[int, int], pics: dict[str, Picture]) -> dict[str, Snapshot]:
    b = replace(base(screen), logo=pics["logo"], tariff=pics["tariff"])
    c1, c2 = b.connectors
    charging = replace(c1, status="Charging", plugged=True, energy_wh=12_345, power_w=97_400, soc=63,
                       duration_s=754, cost=Cost("EUR", 16.78))
    return {
        "welcome": b,
        "choice": replace(b, connectors=(replace(c1, status="Preparing", plugged=True),
                                         replace(c2, status="Preparing", plugged=True))),
        "charging": replace(b, connectors=(charging, c2)),
        "charging_no_cost": replace(b, connectors=(replace(charging, cost=None), c2)),
        "finishing": replace(b, connectors=(replace(charging, status="Finishing", power_w=0), c2)),
        "tariff": b,
        "screensaver": replace(b, screensaver=(pics["screensaver1"], pics["screensaver2"])),
        "screensaver_default": b,
        "fault": replace(b, connectors=(replace(c1, status="Faulted", error=Fault("GroundFailure", "0x100206", "Insulation fault")), c2)),
        "out_of_service": replace(b, link="no-controller", operative=False),
        "config_error": replace(b, config_error="/boot/firmware/evsectl.toml:7: ocpp.keys.NoSuchKey: unknown key"),
    }


def render_all(out: Path, sizes: tuple[tuple[int, int], ...] = SIZES) -> list[Path]:
    written = []
    for size in sizes:
        pics = make_pictures(out / "_pictures" / f"{size[0]}x{size[1]}", size)
        for name, snap in snapshots(size, pics).items():
            ui = view.UiState(page="tariff" if name == "tariff" else "main", last_activity=1000.0)
            now = 1000.0 + (500 if name.startswith("screensaver") else 5)
            r = Renderer(size)
            r.draw(snap, ui, now)
            path = out / f"{name}-{size[0]}x{size[1]}.png"
            pygame.image.save(r.surface, str(path))
            written.append(path)
    return written


if __name__ == "__main__":
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screens")
    target.mkdir(parents=True, exist_ok=True)
    for p in render_all(target):
        print(p)
