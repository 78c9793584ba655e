"""Product model profiles (R-MODEL): what differs between the five chargers, as data.

Owns: the model profiles loaded from ``controller/data/models.toml`` (vendor and
model sent in BootNotification, connectors and their types and power limits,
station power, screen / best tariff picture / screensaver / logo sizes and the
power-loss behaviour), the lookup of a model by name or alias, and the
read-only OCPP configuration keys that come from the model
(NumberOfConnectors, ChargeLimitedPower, ConnectorALimitedPower,
ConnectorBLimitedPower, ConnectorAType, ConnectorBType).
It does not own the configuration store or any behaviour that uses the profile.

Connector A is the connector with the lowest id (1), connector B the next (2).
Power values are integer kW; ``key_values()`` renders them as decimal strings.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

__all__ = [
    "CONNECTOR_TYPES",
    "POWER_LOSS_MODES",
    "ConnectorProfile",
    "ModelProfile",
    "ModelDataError",
    "UnknownModelError",
    "load_models",
    "find_model",
    "MODELS",
]

ConnectorType = Literal["CCS2", "CHAdeMO"]
PowerLoss = Literal["after_boot", "before_shutdown"]

CONNECTOR_TYPES: frozenset[str] = frozenset({"CCS2", "CHAdeMO"})
#: "after_boot": StopTransaction(PowerLoss) sent after the next boot (EVlink Pro DC).
#: "before_shutdown": sent before shutting down on a power-fail signal (StarCharge Fast).
POWER_LOSS_MODES: frozenset[str] = frozenset({"after_boot", "before_shutdown"})

_CI_STRING_20 = 20  # OCPP 1.6 BootNotification chargePointVendor / chargePointModel


class ModelDataError(ValueError):
    """The models data file is malformed."""


class UnknownModelError(ValueError):
    """No model profile by that name or alias; the message lists the known names."""

    def __init__(self, name: str, known: list[str] | tuple[str, ...]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(f"unknown charger model {name!r}; known models: {', '.join(self.known)}")


@dataclass(frozen=True)
class ConnectorProfile:
    id: int  # OCPP connectorId, from 1
    type: ConnectorType  # "CCS2" | "CHAdeMO"
    max_power_kw: int


@dataclass(frozen=True)
class ModelProfile:
    name: str  # e.g. "Schneider StarCharge Fast 180"
    charge_point_vendor: str  # BootNotification.chargePointVendor
    charge_point_model: str  # BootNotification.chargePointModel (<= 20 chars)
    connectors: tuple[ConnectorProfile, ...]  # sorted by id
    max_power_kw: int  # station limit (ChargeLimitedPower)
    screen: tuple[int, int]  # (w, h) px
    tariff_best: tuple[int, int]  # best tariff picture (w, h) px
    screensaver: tuple[int, int]  # (w, h) px
    logo: tuple[int, int]  # (w, h) px
    power_loss: PowerLoss  # "after_boot" | "before_shutdown"
    aliases: tuple[str, ...] = ()

    @property
    def number_of_connectors(self) -> int:
        return len(self.connectors)

    def connector(self, connector_id: int) -> ConnectorProfile:
        """The connector with that OCPP id; KeyError if none."""
        for c in self.connectors:
            if c.id == connector_id:
                return c
        raise KeyError(connector_id)

    def key_values(self) -> dict[str, str]:
        """The read-only OCPP configuration keys given by the model, as strings."""
        a, b = self.connectors[0], self.connectors[1]
        return {
            "NumberOfConnectors": str(self.number_of_connectors),
            "ChargeLimitedPower": str(self.max_power_kw),
            "ConnectorALimitedPower": str(a.max_power_kw),
            "ConnectorBLimitedPower": str(b.max_power_kw),
            "ConnectorAType": a.type,
            "ConnectorBType": b.type,
        }


def _norm(name: str) -> str:
    return " ".join(str(name).split()).casefold()


def _size(entry: dict[str, Any], field: str, where: str) -> tuple[int, int]:
    v = entry.get(field)
    if (
        not isinstance(v, list)
        or len(v) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)
    ):
        raise ModelDataError(f"{where}: {field} must be [width, height] positive integers, got {v!r}")
    return (v[0], v[1])


def _str(entry: dict[str, Any], field: str, where: str, max_len: int | None = None) -> str:
    v = entry.get(field)
    if not isinstance(v, str) or not v.strip():
        raise ModelDataError(f"{where}: {field} must be a non-empty string, got {v!r}")
    if max_len is not None and len(v) > max_len:
        raise ModelDataError(f"{where}: {field} {v!r} is longer than {max_len} characters")
    return v


def _pos_int(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise ModelDataError(f"{what} must be a positive integer, got {v!r}")
    return v


def _profile(entry: dict[str, Any], index: int) -> ModelProfile:
    where = f"model #{index + 1}"
    name = _str(entry, "name", where)
    where = f"model {name!r}"
    raw_connectors = entry.get("connectors")
    if not isinstance(raw_connectors, list) or len(raw_connectors) != 2:
        # NumberOfConnectors is RO 2 in the guide; key_values() names A and B.
        raise ModelDataError(f"{where}: connectors must be a list of exactly 2 entries")
    connectors: list[ConnectorProfile] = []
    for c in raw_connectors:
        if not isinstance(c, dict):
            raise ModelDataError(f"{where}: connector entries must be tables")
        cid = _pos_int(c.get("id"), f"{where}: connector id")
        ctype = c.get("type")
        if ctype not in CONNECTOR_TYPES:
            raise ModelDataError(f"{where}: connector {cid} type {ctype!r} not in {sorted(CONNECTOR_TYPES)}")
        cmax = _pos_int(c.get("max_power_kw"), f"{where}: connector {cid} max_power_kw")
        connectors.append(ConnectorProfile(id=cid, type=ctype, max_power_kw=cmax))
    connectors.sort(key=lambda c: c.id)
    ids = [c.id for c in connectors]
    if ids != list(range(1, len(connectors) + 1)):
        raise ModelDataError(f"{where}: connector ids must be 1..{len(connectors)}, got {ids}")
    max_power = _pos_int(entry.get("max_power_kw"), f"{where}: max_power_kw")
    for c in connectors:
        if c.max_power_kw > max_power:
            raise ModelDataError(f"{where}: connector {c.id} exceeds the station max power")
    power_loss = entry.get("power_loss")
    if power_loss not in POWER_LOSS_MODES:
        raise ModelDataError(f"{where}: power_loss {power_loss!r} not in {sorted(POWER_LOSS_MODES)}")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise ModelDataError(f"{where}: aliases must be a list of non-empty strings")
    return ModelProfile(
        name=name,
        charge_point_vendor=_str(entry, "charge_point_vendor", where, _CI_STRING_20),
        charge_point_model=_str(entry, "charge_point_model", where, _CI_STRING_20),
        connectors=tuple(connectors),
        max_power_kw=max_power,
        screen=_size(entry, "screen", where),
        tariff_best=_size(entry, "tariff_best", where),
        screensaver=_size(entry, "screensaver", where),
        logo=_size(entry, "logo", where),
        power_loss=power_loss,
        aliases=tuple(aliases),
    )


def load_models(text: str) -> dict[str, ModelProfile]:
    """Parse the models TOML (``[[model]]`` tables); keys are the canonical names, in file order.

    Raises ModelDataError on malformed data or a name/alias used twice
    (case-insensitively).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelDataError(f"models data is not valid TOML: {exc}") from None
    entries = data.get("model")
    if not isinstance(entries, list) or not entries:
        raise ModelDataError("models data has no [[model]] tables")
    models: dict[str, ModelProfile] = {}
    seen: dict[str, str] = {}
    for i, entry in enumerate(entries):
        profile = _profile(entry, i)
        for n in (profile.name, *profile.aliases):
            k = _norm(n)
            if k in seen and seen[k] != profile.name:
                raise ModelDataError(f"name or alias {n!r} used by both {seen[k]!r} and {profile.name!r}")
            seen[k] = profile.name
        models[profile.name] = profile
    return models


def _load_packaged_models() -> dict[str, ModelProfile]:
    text = resources.files("controller").joinpath("data/models.toml").read_text(encoding="utf-8")
    return load_models(text)


#: The five product models, by canonical name, loaded from ``controller/data/models.toml``.
MODELS: dict[str, ModelProfile] = _load_packaged_models()


def find_model(name: str, models: dict[str, ModelProfile] | None = None) -> ModelProfile:
    """The profile whose name or alias matches ``name`` (case-insensitive, spaces collapsed).

    Raises UnknownModelError(name, known canonical names) otherwise.
    """
    table = MODELS if models is None else models
    key = _norm(name)
    for profile in table.values():
        if key == _norm(profile.name) or any(key == _norm(a) for a in profile.aliases):
            return profile
    raise UnknownModelError(name, list(table))
