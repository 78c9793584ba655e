"""Installed charging profiles and the OCPP rules for installing them (R-SC).

:class:`ProfileBook` answers SetChargingProfile / ClearChargingProfile /
GetCompositeSchedule the way the guide says this range does (ChargePointMaxProfile
and CHAdeMO connectors refused, TxProfile only with a matching transaction,
replacement by id or by stack level and purpose on the same connector, the limits
of ChargeProfileMaxStackLevel, ChargingScheduleMaxPeriods and
MaxChargingProfilesInstalled), keeps the profiles in the state store, and turns
them into the set-point of each connector with ``limits.limit_at`` plus the CCS2
rule of the guide (a non-zero limit below 1 kW is raised to 1 kW; 0 stays 0 and
the power stage leaves its residual current).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .limits import ChargingProfile, ProfileError, composite_schedule, limit_at, parse_profile

log = logging.getLogger(__name__)

CCS2_MIN_NONZERO_W = 1000.0
PURPOSES_ACCEPTED = ("TxDefaultProfile", "TxProfile")


@dataclass(frozen=True)
class ConnectorView:
    """What the book needs to know of a connector at the moment it computes."""

    connector_id: int
    connector_type: str
    max_power_w: float
    voltage_v: float
    tx_start: datetime | None
    tx_id: int | None


class ProfileBook:
    def __init__(self, keys: Any, store: Any) -> None:
        self.keys = keys
        self.store = store
        self.by_id: dict[int, ChargingProfile] = {}

    def load(self) -> None:
        for cid, raw in self.store.charging_profiles():
            try:
                p = parse_profile(cid, raw, max_periods=10_000, max_stack_level=10_000)
            except ProfileError as e:
                log.error("stored charging profile %s unreadable, dropped: %s", raw.get("chargingProfileId"), e)
                self.store.replace_charging_profiles([raw.get("chargingProfileId", -1)], [])
                continue
            self.by_id[p.profile_id] = p

    def _int(self, key: str) -> int:
        return int(self.keys.get_int(key))

    def parse(self, cid: int, raw: dict[str, Any], now: datetime, purposes: tuple[str, ...]) -> ChargingProfile:
        unit = raw.get("chargingSchedule", {}).get("chargingRateUnit")
        allowed = self.keys.get_csl("ChargingScheduleAllowedChargingRateUnit")
        if {"A": "Current", "W": "Power"}.get(unit) not in allowed:
            raise ProfileError("unit-not-allowed", f"{unit} (ChargingScheduleAllowedChargingRateUnit={allowed})")
        return parse_profile(
            cid, raw, received_at=now, max_periods=self._int("ChargingScheduleMaxPeriods"),
            max_stack_level=self._int("ChargeProfileMaxStackLevel"), purposes=purposes,
        )

    def install(self, cid: int, raw: dict[str, Any], now: datetime, connector: ConnectorView | None) -> str:
        """SetChargingProfile: the OCPP status; on Accepted the profile is stored."""
        purpose = raw.get("chargingProfilePurpose")
        if purpose == "ChargePointMaxProfile":
            return "Rejected"  # not supported by this range (guide)
        if cid != 0 and connector is None:
            return "Rejected"
        if connector is not None and connector.connector_type == "CHAdeMO":
            return "Rejected"  # CHAdeMO does not support smart charging (guide)
        try:
            profile = self.parse(cid, raw, now, PURPOSES_ACCEPTED)
        except ProfileError as e:
            log.warning("SetChargingProfile %s refused: %s", raw.get("chargingProfileId"), e)
            return "Rejected"
        if profile.purpose == "TxProfile":
            if connector is None or connector.tx_start is None:
                return "Rejected"  # no transaction on that connector
            if profile.transaction_id is not None and profile.transaction_id != connector.tx_id:
                return "Rejected"
        return self._put(profile)

    def install_for_transaction(self, cid: int, raw: dict[str, Any], now: datetime) -> bool:
        """The TxProfile of a RemoteStartTransaction, installed when its transaction starts."""
        try:
            profile = self.parse(cid, raw, now, ("TxProfile",))
        except ProfileError as e:
            log.warning("the charging profile of the remote start is not used: %s", e)
            return False
        return self._put(profile) == "Accepted"

    def _replaced_by(self, profile_id: Any, connector_id: int, stack_level: Any, purpose: Any) -> list[int]:
        return [
            p.profile_id for p in self.by_id.values()
            if p.profile_id == profile_id or (
                p.connector_id == connector_id and p.stack_level == stack_level and p.purpose == purpose
            )
        ]

    def has_room_for(self, cid: int, raw: dict[str, Any]) -> bool:
        """Whether installing ``raw`` on connector ``cid`` stays within MaxChargingProfilesInstalled."""
        replaced = self._replaced_by(
            raw.get("chargingProfileId"), cid, raw.get("stackLevel"), raw.get("chargingProfilePurpose")
        )
        return len(self.by_id) - len(replaced) + 1 <= self._int("MaxChargingProfilesInstalled")

    def _put(self, profile: ChargingProfile) -> str:
        replaced = self._replaced_by(profile.profile_id, profile.connector_id, profile.stack_level, profile.purpose)
        if len(self.by_id) - len(replaced) + 1 > self._int("MaxChargingProfilesInstalled"):
            return "Rejected"
        self.store.replace_charging_profiles(replaced, [(profile.connector_id, _raw(profile))])
        for pid in replaced:
            self.by_id.pop(pid, None)
        self.by_id[profile.profile_id] = profile
        return "Accepted"

    def clear(self, p: dict[str, Any]) -> str:
        """ClearChargingProfile: every profile matching all the given criteria."""
        matching = [
            x.profile_id for x in self.by_id.values()
            if (p.get("id") is None or x.profile_id == p["id"])
            and (p.get("connectorId") is None or x.connector_id == p["connectorId"])
            and (p.get("chargingProfilePurpose") is None or x.purpose == p["chargingProfilePurpose"])
            and (p.get("stackLevel") is None or x.stack_level == p["stackLevel"])
        ]
        if not matching:
            return "Unknown"
        self.remove(matching)
        return "Accepted"

    def remove(self, profile_ids: list[int]) -> None:
        if profile_ids:
            self.store.replace_charging_profiles(profile_ids, [])
            for pid in profile_ids:
                self.by_id.pop(pid, None)

    def end_of_transaction(self, cid: int) -> None:
        """TxProfiles end with their transaction (OCPP 1.6 §3.13.1)."""
        self.remove([p.profile_id for p in self.by_id.values() if p.purpose == "TxProfile" and p.connector_id == cid])

    def setpoint(self, c: ConnectorView, now: datetime) -> tuple[float | None, datetime | None]:
        """The set-point for the power stage (None = no profile: the connector maximum)
        and when it may change next."""
        if c.connector_type == "CHAdeMO" or not self.by_id:
            return None, None
        limit = limit_at(
            list(self.by_id.values()), now, c.connector_id, c.tx_start, c.tx_id, c.voltage_v, c.max_power_w
        )
        power = limit.power_w
        if power is not None and 0 < power < CCS2_MIN_NONZERO_W:
            power = CCS2_MIN_NONZERO_W
        return power, limit.next_change

    def composite(
        self, c: ConnectorView, now: datetime, duration_s: int, unit: str | None
    ) -> dict[str, Any]:
        profiles = [] if c.connector_type == "CHAdeMO" else list(self.by_id.values())  # no smart charging
        schedule = composite_schedule(
            profiles, now, duration_s, c.connector_id, unit, c.tx_start, c.tx_id, c.voltage_v, c.max_power_w,
        )
        return schedule.to_ocpp()


def _raw(profile: ChargingProfile) -> dict[str, Any]:
    return profile.to_ocpp()


__all__ = ["ProfileBook", "ConnectorView", "timedelta"]
