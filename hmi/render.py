"""Drawing every screen with pygame, at the model's resolution (800x480 or 1024x768).

``Renderer.draw(snapshot, ui, now)`` paints one frame on ``self.surface`` and
returns a :class:`Frame` saying which screen it is, where the touch targets are
and what text each area holds (the tests check these, and the pixels).
Pictures are loaded once per (path, version) and scaled to fit their box
keeping their ratio (docs/decisions.md); QR codes come from ``segno``'s matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import pygame

from controller.ipc.messages import ConnectorView, Picture, Snapshot

from . import view

BG = (246, 247, 249)
INK = (20, 24, 28)
MUTED = (100, 108, 118)
GREEN = (61, 205, 88)
DARK = (16, 24, 32)
RED = (200, 40, 40)
WHITE = (255, 255, 255)
MIN_TARGET = 48  # px: smallest touch target

STATUS_TEXT = {
    "Available": "Available", "Preparing": "Plugged in", "Charging": "Charging",
    "SuspendedEV": "Paused by the car", "SuspendedEVSE": "Paused", "Finishing": "Finished",
    "Reserved": "Reserved", "Unavailable": "Unavailable", "Faulted": "Out of order",
}


@dataclass
class Frame:
    screen: str
    targets: dict[str, pygame.Rect] = field(default_factory=dict)  # touch targets
    areas: dict[str, pygame.Rect] = field(default_factory=dict)  # drawn areas (cost, qr, logo...)
    texts: dict[str, str] = field(default_factory=dict)


class Renderer:
    def __init__(self, size: tuple[int, int], surface: pygame.Surface | None = None) -> None:
        if not pygame.font.get_init():
            pygame.font.init()
        self.size = size
        self.surface = surface if surface is not None else pygame.Surface(size)
        self.w, self.h = size
        self.u = self.h / 480.0  # layout unit: 1 at 800x480, 1.6 at 1024x768
        self._fonts: dict[int, pygame.font.Font] = {}
        self._pictures: dict[tuple[str, int, tuple[int, int]], pygame.Surface | None] = {}
        self._qr: dict[tuple[str, int], pygame.Surface] = {}
        # the fuel-pump counter: (from, to, since) per connector
        self._cost: dict[int, tuple[float, float, float]] = {}

    # ------------------------------------------------------------ helpers
    def font(self, px: float) -> pygame.font.Font:
        size = max(12, int(px * self.u))
        f = self._fonts.get(size)
        if f is None:
            f = self._fonts[size] = pygame.font.Font(None, size)  # the font shipped in the pygame wheel
        return f

    def text(self, s: str, px: float, pos: tuple[int, int], color: tuple[int, int, int] = INK,
             anchor: str = "topleft") -> pygame.Rect:
        img = self.font(px).render(s, True, color)
        rect = img.get_rect(**{anchor: pos})
        self.surface.blit(img, rect)
        return rect

    def picture(self, pic: Picture | None, box: pygame.Rect) -> pygame.Rect | None:
        """Blit ``pic`` scaled to fit ``box`` keeping its ratio, centred; None if it does not load."""
        if pic is None:
            return None
        key = (pic.path, pic.version, box.size)
        if key not in self._pictures:
            try:
                img = pygame.image.load(pic.path)
            except (pygame.error, OSError, FileNotFoundError):
                img = None
            if img is not None:
                iw, ih = img.get_size()
                scale = min(box.w / iw, box.h / ih)
                if abs(scale - 1.0) > 1e-3:
                    rgba = pygame.Surface((iw, ih), pygame.SRCALPHA, 32)  # smoothscale needs 24/32 bit
                    rgba.blit(img, (0, 0))
                    img = pygame.transform.smoothscale(rgba, (max(1, round(iw * scale)), max(1, round(ih * scale))))
            self._pictures[key] = img
        img = self._pictures[key]
        if img is None:
            return None
        rect = img.get_rect(center=box.center)
        self.surface.blit(img, rect)
        return rect

    def qr(self, url: str, box_px: int) -> pygame.Surface:
        key = (url, box_px)
        surf = self._qr.get(key)
        if surf is None:
            import segno

            matrix = segno.make(url, error="m", micro=False).matrix
            n = len(matrix) + 8  # 4 modules of quiet zone each side
            scale = max(2, box_px // n)
            surf = pygame.Surface((n * scale, n * scale))
            surf.fill(WHITE)
            for y, row in enumerate(matrix):
                for x, v in enumerate(row):
                    if v:
                        surf.fill((0, 0, 0), ((x + 4) * scale, (y + 4) * scale, scale, scale))
            self._qr[key] = surf
        return surf

    def cost_value(self, cid: int, target: float, now: float) -> float:
        """The amount shown: counts up to the latest CostUpdated over 1.5 s, like a fuel pump."""
        start, goal, since = self._cost.get(cid, (target, target, now))
        shown = self._interp(start, goal, since, now)
        if goal != target:
            start, goal, since = shown, target, now
            self._cost[cid] = (start, goal, since)
        elif cid not in self._cost:
            self._cost[cid] = (start, goal, since)
        return self._interp(start, goal, since, now)

    def animating(self, now: float) -> bool:
        return any(now - since < 1.5 and a != b for a, b, since in self._cost.values())

    @staticmethod
    def _interp(a: float, b: float, since: float, now: float) -> float:
        t = min(1.0, max(0.0, (now - since) / 1.5))
        return a + (b - a) * t

    # ------------------------------------------------------------ frame
    def draw(self, snap: Snapshot, ui: view.UiState, now: float) -> Frame:
        name = view.choose(snap, ui, now)
        frame = Frame(name)
        getattr(self, "_" + name)(snap, ui, now, frame)
        return frame

    def _header(self, snap: Snapshot, frame: Frame, title: str) -> None:
        s, u = self.surface, self.u
        bar = pygame.Rect(0, 0, self.w, int(72 * u))
        s.fill(WHITE, bar)
        logo_box = pygame.Rect(int(12 * u), (bar.h - 60) // 2, 200, 60)
        drawn = self.picture(snap.logo, logo_box)
        if drawn is None:
            self.text("EVlink", 34, (logo_box.x, bar.centery), GREEN, "midleft")
        frame.areas["logo"] = logo_box
        self.text(title, 30, (self.w // 2, bar.centery), INK, "center")
        frame.texts["title"] = title
        if snap.tariff is not None:
            btn = pygame.Rect(0, 0, int(120 * u), max(MIN_TARGET, int(52 * u)))
            btn.midright = (self.w - int(12 * u), bar.centery)
            pygame.draw.rect(s, DARK, btn, border_radius=int(8 * u))
            self.text("Tariff", 28, btn.center, WHITE, "center")
            frame.targets["tariff"] = btn
        link = {"connected": ("online", GREEN)}.get(snap.link, ("offline", MUTED))
        self.text(link[0], 18, (self.w - int(12 * u), bar.bottom - 2), link[1], "bottomright")
        pygame.draw.line(s, (220, 224, 228), (0, bar.bottom), (self.w, bar.bottom), 2)

    def _tabs(self, snap: Snapshot, frame: Frame) -> None:
        """One tab per connector at the bottom: touch to show that connector."""
        if len(snap.connectors) < 2:
            return
        u = self.u
        h = max(MIN_TARGET, int(64 * u))
        wtab = self.w // len(snap.connectors)
        for i, c in enumerate(snap.connectors):
            r = pygame.Rect(i * wtab, self.h - h, wtab, h)
            sel = c.id == snap.selected_connector
            self.surface.fill(DARK if sel else (228, 231, 235), r)
            pygame.draw.line(self.surface, BG, r.topleft, r.bottomleft, 2)
            label = f"{c.id}  {c.type}  ·  {STATUS_TEXT.get(c.status, c.status)}"
            self.text(label, 26, r.center, WHITE if sel else INK, "center")
            frame.targets[f"connector{c.id}"] = r

    def _body(self) -> pygame.Rect:
        top = int(72 * self.u) + 2
        return pygame.Rect(0, top, self.w, self.h - top - max(MIN_TARGET, int(64 * self.u)))

    # ------------------------------------------------------------ screens
    def _welcome(self, snap: Snapshot, ui: view.UiState, now: float, frame: Frame) -> None:
        s, u = self.surface, self.u
        s.fill(BG)
        c = view.selected(snap)
        assert c is not None
        self._header(snap, frame, f"Connector {c.id} · {c.type}")
        body = self._body()
        status = STATUS_TEXT.get(c.status, c.status)
        self.text(status, 44, (body.x + int(24 * u), body.y + int(20 * u)), GREEN if c.status == "Available" else INK)
        frame.texts["status"] = status
        hint = "Plug in your car, then start with:" if not c.plugged else "Start charging with:"
        self.text(hint, 26, (body.x + int(24 * u), body.y + int(70 * u)), MUTED)
        y = body.y + int(108 * u)
        shown = []
        for opt in snap.auth_options:
            label = view.AUTH_LABELS.get(opt, opt)
            pygame.draw.circle(s, GREEN, (body.x + int(34 * u), y + int(12 * u)), int(7 * u))
            self.text(label, 28, (body.x + int(52 * u), y))
            shown.append(label)
            y += int(34 * u)
        frame.texts["auth"] = " | ".join(shown)
        if "qr" in snap.auth_options and c.qr_url:
            side = min(body.h - int(20 * u), int(self.w * 0.36))
            surf = self.qr(c.qr_url, side)
            rect = surf.get_rect(midright=(self.w - int(24 * u), body.centery))
            s.blit(surf, rect)
            frame.areas["qr"] = rect
            frame.texts["qr"] = c.qr_url
        self._tabs(snap, frame)

    def _choice(self, snap: Snapshot, ui: view.UiState, now: float, frame: Frame) -> None:
        s, u = self.surface, self.u
        s.fill(BG)
        self._header(snap, frame, "Two cars plugged in")
        body = self._body()
        self.text("Touch a connector to choose it", 34, (self.w // 2, body.y + int(30 * u)), INK, "midtop")
        frame.texts["status"] = "Touch a connector to choose it"
        n = len(snap.connectors)
        gap = int(24 * u)
        wcard = (self.w - gap * (n + 1)) // n
        for i, c in enumerate(snap.connectors):
            r = pygame.Rect(gap + i * (wcard + gap), body.y + int(90 * u), wcard, body.h - int(110 * u))
            sel = c.id == snap.selected_connector
            pygame.draw.rect(s, DARK if sel else WHITE, r, border_radius=int(12 * u))
            pygame.draw.rect(s, GREEN if sel else (210, 214, 218), r, width=4, border_radius=int(12 * u))
            fg = WHITE if sel else INK
            self.text(f"Connector {c.id}", 38, (r.centerx, r.y + int(24 * u)), fg, "midtop")
            self.text(c.type, 30, (r.centerx, r.y + int(70 * u)), fg, "midtop")
            self.text(STATUS_TEXT.get(c.status, c.status), 28, (r.centerx, r.y + int(110 * u)), fg, "midtop")
            frame.targets[f"connector{c.id}"] = r

    def _charging(self, snap: Snapshot, ui: view.UiState, now: float, frame: Frame) -> None:
        s, u = self.surface, self.u
        s.fill(BG)
        c = view.selected(snap)
        assert c is not None
        self._header(snap, frame, f"Connector {c.id} · {STATUS_TEXT.get(c.status, c.status)}")
        body = self._body()
        cells = [
            ("energy", "Energy", f"{c.energy_wh / 1000:.2f} kWh"),
            ("power", "Power", f"{c.power_w / 1000:.1f} kW"),
            ("soc", "Battery", "--" if c.soc is None else f"{c.soc:.0f} %"),
            ("time", "Time", view.format_duration(c.duration_s)),
        ]
        cw = (self.w - int(48 * u)) // 2
        ch = int(82 * u)
        for i, (key, label, value) in enumerate(cells):
            r = pygame.Rect(int(24 * u) + (i % 2) * cw, body.y + int(12 * u) + (i // 2) * ch, cw - int(12 * u), ch - int(10 * u))
            pygame.draw.rect(s, WHITE, r, border_radius=int(10 * u))
            self.text(label, 22, (r.x + int(14 * u), r.y + int(8 * u)), MUTED)
            self.text(value, 44, (r.x + int(14 * u), r.bottom - int(8 * u)), INK, "bottomleft")
            frame.texts[key] = value
        self._cost_area(c, body, now, frame)
        self._tabs(snap, frame)

    def _cost_area(self, c: ConnectorView, body: pygame.Rect, now: float, frame: Frame) -> None:
        u = self.u
        top = body.y + int(12 * u) + 2 * int(82 * u)
        area = pygame.Rect(int(24 * u), top, self.w - int(48 * u) - int(12 * u), body.bottom - top - int(8 * u))
        frame.areas["cost"] = area
        if c.cost is None:
            frame.texts["cost"] = ""  # the guide: "the place is totally empty"
            return
        pygame.draw.rect(self.surface, DARK, area, border_radius=int(10 * u))
        amount = self.cost_value(c.id, c.cost.total_cost, now)
        text = view.format_cost(c.cost.currency, amount)
        self.text("Cost", 22, (area.x + int(14 * u), area.centery), (170, 180, 190), "midleft")
        self.text(text, 56, (area.right - int(18 * u), area.centery), GREEN, "midright")
        frame.texts["cost"] = text

    def _finishing(self, snap: Snapshot, ui: view.UiState, now: float, frame: Frame) -> None:
        s, u = self.surface, self.u
        s.fill(BG)
        c = view.selected(snap)
        assert c is not None
        self._header(snap, frame, f"Connector {c.id} · Finished")
        body = self._body()
        self.text("Charge complete: unplug your car", 38, (self.w // 2, body.y + int(24 * u)), INK, "midtop")
        lines = [f"Energy  {c.energy_wh / 1000:.2f} kWh", f"Time  {view.format_duration(c.duration_s)}"]
        if c.soc is not None:
            lines.append(f"Battery  {c.soc:.0f} %")
        if c.cost is not None:
            lines.append("Cost  " + view.format_cost(c.cost.currency, c.cost.total_cost))
        for i, line in enumerate(lines):
            self.text(line, 34, (self.w // 2, body.y + int((84 + 40 * i) * u)), INK, "midtop")
        frame.texts["summary"] = " | ".join(lines)
        self._tabs(snap, frame)

    def _tariff(self, snap: Snapshot, ui: view.UiState, now: float, frame: Frame) -> None:
        s, u = self.surface, self.u
        s.fill(WHITE)
        drawn = self.picture(snap.tariff, pygame.Rect(0, 0, self.w, self.h))
        frame.areas["tariff_picture"] = drawn or pygame.Rect(0, 0, 0, 0)
        btn = pygame.Rect(0, 0, max(MIN_TARGET, int(110 * u)), max(MIN_TARGET, int(52 * u)))
        btn.topright = (self.w - int(10 * u), int(10 * u))
        pygame.draw.rect(s, DARK, btn, border_radius=int(8 * u))
        self.text("Close", 28, btn.center, WHITE, "center")
        frame.targets["close"] = btn

    def _screensaver(self, snap: Snapshot, ui: view.UiState, now: float, frame: Frame) -> None:
        s = self.surface
        s.fill(DARK)
        pics = list(snap.screensaver)
        if pics:  # one or two pictures, alternating every 10 s
            pic = pics[int(now // 10) % len(pics)]
            if self.picture(pic, pygame.Rect(0, 0, self.w, self.h)) is not None:
                frame.texts["picture"] = pic.path
                frame.targets["wake"] = pygame.Rect(0, 0, self.w, self.h)
                return
        # the default picture
        self.text("EVlink", 96, (self.w // 2, self.h // 2 - int(30 * self.u)), GREEN, "center")
        self.text("Touch the screen to start", 32, (self.w // 2, self.h // 2 + int(50 * self.u)), WHITE, "center")
        frame.texts["picture"] = "default"
        frame.targets["wake"] = pygame.Rect(0, 0, self.w, self.h)

    def _fault(self, snap: Snapshot, ui: view.UiState, now: float, frame: Frame) -> None:
        s, u = self.surface, self.u
        s.fill(BG)
        c = view.selected(snap)
        assert c is not None
        self._header(snap, frame, f"Connector {c.id} · Out of order")
        body = self._body()
        pygame.draw.circle(s, RED, (self.w // 2, body.y + int(60 * u)), int(34 * u))
        self.text("!", 64, (self.w // 2, body.y + int(60 * u)), WHITE, "center")
        self.text("This connector is out of order", 38, (self.w // 2, body.y + int(110 * u)), INK, "midtop")
        err = c.error
        detail = "" if err is None else " ".join(x for x in (err.dtc, err.info or err.error_code) if x)
        if detail:
            self.text(detail, 28, (self.w // 2, body.y + int(160 * u)), RED, "midtop")
        frame.texts["error"] = detail
        self._tabs(snap, frame)

    def _out_of_service(self, snap: Snapshot, ui: view.UiState, now: float, frame: Frame) -> None:
        s = self.surface
        s.fill(DARK)
        self.text("Out of service", 72, (self.w // 2, self.h // 2 - int(20 * self.u)), WHITE, "center")
        self.text("Sorry, this charger is not available right now", 30,
                  (self.w // 2, self.h // 2 + int(50 * self.u)), (170, 180, 190), "center")
        frame.texts["status"] = "Out of service"


    def _config_error(self, snap: Snapshot, ui: view.UiState, now: float, frame: Frame) -> None:
        s = self.surface
        s.fill(DARK)
        self.text("Configuration error", 64, (self.w // 2, self.h // 2 - int(40 * self.u)), WHITE, "center")
        self.text(str(snap.config_error)[:90], 26, (self.w // 2, self.h // 2 + int(30 * self.u)),
                  (240, 190, 120), "center")
        self.text("The previous configuration is in use", 26, (self.w // 2, self.h // 2 + int(80 * self.u)),
                  (170, 180, 190), "center")
        frame.texts["status"] = "Configuration error"
        frame.texts["config_error"] = str(snap.config_error)


def hit(frame: Frame, pos: tuple[int, int]) -> str | None:
    for name, rect in frame.targets.items():
        if rect.collidepoint(pos):
            return name
    return None


__all__ = ["Renderer", "Frame", "hit"]
