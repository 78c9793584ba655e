"""The HMI main loop: render only when something changed; touches become intents.

Run as ``evsectl hmi`` (or ``python -m hmi``). Full screen at the model's
resolution (the controller's snapshot says which); ``SDL_VIDEODRIVER`` picks the
backend (``kmsdrm`` on the Pi, ``dummy`` headless). The loop sleeps until
a snapshot arrives (the IPC thread sets an event), input is due to be read
(every 50 ms) or the picture must change by itself (screensaver, the cost
counter), and draws only when something visible changed.
A crash here never reaches the controller: it is another process.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Callable

import pygame

from controller.ipc import messages as m

from . import view
from .client import Client
from .render import Frame, Renderer, hit

log = logging.getLogger(__name__)
POLL_S = 0.05  # how often input is looked at while nothing else happens


class Hmi:
    """The screen's state machine, without the event loop (the tests drive it)."""

    def __init__(self, size: tuple[int, int], *, send: Callable[[m.Message], object] = lambda _m: None,
                 clock: Callable[[], float] = time.monotonic, surface: pygame.Surface | None = None) -> None:
        self.clock = clock
        self.send = send
        self.snap = m.out_of_service()
        self.ui = view.UiState(last_activity=clock())
        self.renderer = Renderer(size, surface)
        self.frame: Frame | None = None
        self._drawn: tuple[object, ...] | None = None
        self._activity = view.activity_key(self.snap)

    def update(self, snap: m.Snapshot) -> None:
        key = view.activity_key(snap)
        if key != self._activity:  # a plug, a status change: someone is there
            self._activity = key
            self.ui.last_activity = self.clock()
        self.snap = snap

    def touch(self, pos: tuple[int, int]) -> None:
        now = self.clock()
        was_asleep = self.frame is not None and self.frame.screen == "screensaver"
        self.ui.last_activity = now
        self.send(m.Awake())
        if was_asleep or self.frame is None:
            self.ui.page = "main"
            return
        target = hit(self.frame, pos)
        if target == "tariff":
            self.ui.page = "tariff"
        elif target == "close":
            self.ui.page = "main"
        elif target and target.startswith("connector"):
            self.send(m.Touched(int(target[len("connector"):])))

    def render(self, force: bool = False) -> bool:
        """Draw a frame if anything visible changed; True when drawn."""
        now = self.clock()
        screen = view.choose(self.snap, self.ui, now)
        tick = int(now // 10) if screen == "screensaver" else None
        animating = self.renderer.animating(now)
        key = (self.snap, self.ui.page, screen, tick)
        if not force and not animating and key == self._drawn:
            return False
        self.frame = self.renderer.draw(self.snap, self.ui, now)
        self._drawn = key
        return True

    def next_wake(self) -> float | None:
        """Seconds until the picture changes by itself (None: only on an event)."""
        now = self.clock()
        if self.renderer.animating(now):
            return 1 / 30
        screen = view.choose(self.snap, self.ui, now)
        if screen == "screensaver":
            return 10 - now % 10 if len(self.snap.screensaver) > 1 else None
        return max(0.05, self.ui.last_activity + self.snap.idle_s - now)


def run(socket_path: str, *, windowed: bool = False, size: tuple[int, int] | None = None,
        max_seconds: float | None = None) -> int:
    pygame.display.init()
    pygame.font.init()
    pygame.mouse.set_visible(windowed)
    wake = threading.Event()
    client = Client(socket_path, notify=wake.set)
    current = size or (800, 480)
    flags = 0 if windowed or os.environ.get("SDL_VIDEODRIVER") == "dummy" else pygame.FULLSCREEN
    display = pygame.display.set_mode(current, flags)
    pygame.display.set_caption("evsectl")
    hmi = Hmi(current, send=client.send, surface=display)
    client.start()
    end = None if max_seconds is None else time.monotonic() + max_seconds
    try:
        while end is None or time.monotonic() < end:
            # Sleep on our own event, not pygame.event.wait: without a video driver that can
            # wait (dummy, and kmsdrm for touch input) SDL polls it every millisecond. Input
            # is looked at POLL_S after the last look at the latest: touch latency <= 50 ms.
            wait = hmi.next_wake()
            wake.wait(POLL_S if wait is None else max(0.0, min(POLL_S, wait)))
            wake.clear()
            events = pygame.event.get()
            for e in events:
                if e.type == pygame.QUIT:
                    return 0
                if e.type == pygame.KEYDOWN and e.key == pygame.K_ESCAPE and windowed:
                    return 0
                if e.type == pygame.MOUSEBUTTONDOWN:
                    hmi.touch(e.pos)
                elif e.type == pygame.FINGERDOWN:
                    hmi.touch((int(e.x * current[0]), int(e.y * current[1])))
            while not client.inbox.empty():
                snap = client.inbox.get_nowait()
                if snap.link != "no-controller" and tuple(snap.screen) != current and size is None:
                    current = tuple(snap.screen)  # type: ignore[assignment]
                    display = pygame.display.set_mode(current, flags)
                    hmi = _resized(hmi, current, display, client)
                hmi.update(snap)
            if hmi.render():
                pygame.display.flip()
    finally:
        client.stop()
        pygame.quit()
    return 0


def _resized(old: Hmi, size: tuple[int, int], display: pygame.Surface, client: Client) -> Hmi:
    new = Hmi(size, send=client.send, surface=display)
    new.snap, new.ui = old.snap, old.ui
    return new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evsectl hmi", description="the charger's touchscreen")
    parser.add_argument("--socket", required=True, help="the controller's HMI socket")
    parser.add_argument("--windowed", action="store_true", help="a window instead of full screen")
    parser.add_argument("--size", help="WxH instead of the model's resolution")
    parser.add_argument("--seconds", type=float, help="quit after this long (benches, demos)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s hmi: %(message)s")
    size = tuple(int(x) for x in args.size.split("x")) if args.size else None
    return run(args.socket, windowed=args.windowed, size=size, max_seconds=args.seconds)  # type: ignore[arg-type]
