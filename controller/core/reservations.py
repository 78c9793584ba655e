"""Reservations (R-RES): ReserveNow / CancelReservation, who may use a reservation, expiry.

A reservation holds a connector (or, with connector 0, any one connector of the
station) for one idTag, or for every idTag of its parentIdTag group, until
``expiry``. The book is kept in memory and in the state store (reservations
survive a restart); the charger core asks it whether a start is allowed and
tells it when a reservation is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .auth import id_tag_key
from .timefmt import parse_rfc3339


@dataclass(frozen=True)
class Reservation:
    reservation_id: int
    connector_id: int  # 0 = any connector of the station
    id_tag: str
    parent_id_tag: str | None
    expiry: datetime

    def admits(self, id_tag: str, parent_id_tag: str | None) -> bool:
        """The reserving idTag itself, or one of the same parentIdTag group."""
        if id_tag_key(id_tag) == id_tag_key(self.id_tag):
            return True
        return bool(self.parent_id_tag and parent_id_tag) and id_tag_key(self.parent_id_tag) == id_tag_key(
            parent_id_tag or ""
        )


@dataclass(frozen=True)
class _Row:
    """The store's reservation row (same attributes as the store's ReservationRow)."""

    reservation_id: int
    connector_id: int
    id_tag: str
    parent_id_tag: str | None
    expiry: str


class ReservationBook:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.by_id: dict[int, Reservation] = {}

    def load(self) -> None:
        for row in self.store.reservations():
            try:
                expiry = parse_rfc3339(row.expiry)
            except ValueError:
                self.store.remove_reservation(row.reservation_id)
                continue
            self.by_id[row.reservation_id] = Reservation(
                row.reservation_id, row.connector_id, row.id_tag, row.parent_id_tag, expiry
            )

    def put(self, r: Reservation, expiry_text: str) -> None:
        self.store.put_reservation(_Row(r.reservation_id, r.connector_id, r.id_tag, r.parent_id_tag, expiry_text))
        self.by_id[r.reservation_id] = r

    def remove(self, reservation_id: int) -> Reservation | None:
        r = self.by_id.pop(reservation_id, None)
        if r is not None:
            self.store.remove_reservation(reservation_id)
        return r

    def on_connector(self, cid: int) -> Reservation | None:
        return next((r for r in self.by_id.values() if r.connector_id == cid), None)

    def station_wide(self) -> list[Reservation]:
        return [r for r in self.by_id.values() if r.connector_id == 0]

    def expired(self, now: datetime) -> list[Reservation]:
        return [r for r in self.by_id.values() if r.expiry <= now]

    def next_expiry(self) -> datetime | None:
        return min((r.expiry for r in self.by_id.values()), default=None)
