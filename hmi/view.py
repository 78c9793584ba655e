"""Which screen to show: a pure function of the snapshot and the screen's own state.

No pygame here. ``choose`` returns the name of the screen; the renderer draws it.
Priority: out of service > fault > tariff page (opened by a touch) > screensaver
(idle, and no car at any connector) > charging/finishing/choice/welcome for the
connector shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.ipc.messages import ConnectorView, Snapshot

SCREENS = (
    "welcome", "choice", "charging", "finishing", "tariff", "screensaver", "fault", "out_of_service", "config_error",
)
CHARGING = ("Charging", "SuspendedEV", "SuspendedEVSE")


@dataclass
class UiState:
    """What only the screen knows: the page opened and the last activity."""

    page: str = "main"  # "main" | "tariff"
    last_activity: float = 0.0


def selected(snap: Snapshot) -> ConnectorView | None:
    for c in snap.connectors:
        if c.id == snap.selected_connector:
            return c
    return snap.connectors[0] if snap.connectors else None


def choose(snap: Snapshot, ui: UiState, now: float) -> str:
    if snap.config_error:
        return "config_error"
    if snap.link == "no-controller" or not snap.operative or (
        snap.connectors and all(c.status == "Unavailable" for c in snap.connectors)
    ):
        return "out_of_service"
    c = selected(snap)
    if c is None:
        return "out_of_service"
    if c.status == "Faulted" or (c.error is not None and c.status not in CHARGING):
        return "fault"
    if ui.page == "tariff" and snap.tariff is not None:
        return "tariff"
    busy = any(x.plugged or x.status not in ("Available", "Unavailable", "Faulted") for x in snap.connectors)
    if not busy and now - ui.last_activity >= snap.idle_s:
        return "screensaver"
    if c.status in CHARGING:
        return "charging"
    if c.status == "Finishing":
        return "finishing"
    if sum(1 for x in snap.connectors if x.plugged) >= 2:
        return "choice"
    return "welcome"


def activity_key(snap: Snapshot) -> tuple[object, ...]:
    """Changes of this key count as activity (a plug, a status change): wake the screen."""
    return tuple((c.id, c.status, c.plugged) for c in snap.connectors) + (snap.selected_connector,)


def format_cost(currency: str, amount: float) -> str:
    """16.78 EUR -> "16.78 EUR"; whole-number currencies (VND, JPY...) without decimals."""
    whole = currency.upper() in ("VND", "VNĐ", "JPY", "KRW", "CLP", "ISK", "HUF")
    text = f"{amount:,.0f}" if whole else f"{amount:,.2f}"
    return f"{text} {currency}".strip()


def format_duration(seconds: int | None) -> str:
    s = max(0, int(seconds or 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


AUTH_LABELS = {
    "free": "Free charging: plug in",
    "rfid": "RFID card",
    "qr": "Scan the QR code",
    "app": "Mobile app",
    "pos": "Payment terminal",
    "autocharge": "AutoCharge",
    "pnc": "Plug & Charge",
}
