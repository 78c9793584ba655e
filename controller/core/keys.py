"""OCPP configuration keys (R-CONF 1-4, R-AUTH 1-2): the key table and the key store.

Owns: the table of every configuration key the charger knows, as data (the
connectivity guide's standard, non-standard and Plug & Charge/security
tables: canonical name, aliases, access mode, type, default in OCPP string
form, integer range, maximum length, RebootRequired flag, PnC flag); the
validation and normalisation of key values; and ``KeyStore``, which resolves
defaults, the installer's seeds and persisted values, answers
GetConfiguration / ChangeConfiguration in plain Python terms, applies the
authentication-mode rules (FreeCharging exclusivity, legacy
AuthenticationOCPPMode) and records which keys changed so that the caller can
persist them.

Does not own: persistence, OCPP messages, reboots or TLS; callers do those
with what this module returns. Pure Python, no I/O.

Values are always held in OCPP string form: booleans "true"/"false", integers
in decimal, lists comma-separated without spaces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal
from urllib.parse import urlsplit

__all__ = [
    "KEYS",
    "MEASURANDS",
    "Access",
    "ChangeResult",
    "KeyConfigError",
    "KeyDef",
    "KeyStore",
    "KeyType",
    "limit_keys",
    "lookup",
]

#: OCPP 1.6 "integer" is 32 bit: the upper bound of integer keys given no other.
INT32_MAX = 2**31 - 1


class Access(StrEnum):
    RO = "RO"
    RW = "RW"
    WO = "WO"


class KeyType(StrEnum):
    BOOL = "bool"
    INT = "int"
    STR = "str"
    CSL = "csl"


class ChangeResult(StrEnum):
    """Outcome of a change; the values are OCPP ConfigurationStatus strings."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    REBOOT_REQUIRED = "RebootRequired"
    NOT_SUPPORTED = "NotSupported"


class KeyConfigError(ValueError):
    """A configuration value given at start-up (model or seed) is not acceptable."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


#: An extra rule on a normalised value: raises ValueError with a message.
Check = Callable[[str], None]


@dataclass(frozen=True)
class KeyDef:
    """One configuration key.

    ``default`` is None for the read-only keys whose value comes from the
    charger model. ``range`` bounds INT values (inclusive), ``max_len`` STR
    values (characters). For CSL keys, ``items`` is the set of allowed items
    (None: any) and ``max_items_key`` names the read-only key giving the
    maximum number of items. ``pnc`` keys are visible and writable only while
    ISO15118PnCEnabled is true.
    """

    name: str
    access: Access
    type: KeyType
    default: str | None
    aliases: tuple[str, ...] = ()
    range: tuple[int, int] = (0, INT32_MAX)
    max_len: int | None = None
    items: frozenset[str] | None = None
    max_items_key: str | None = None
    check: Check | None = None
    reboot: bool = False
    pnc: bool = False


MEASURANDS: frozenset[str] = frozenset(
    {
        "Energy.Active.Import.Register",
        "Power.Active.Import",
        "Power.Offered",
        "SoC",
        "Current.Import",
        "Current.Offered",
        "Voltage",
    }
)


def _non_empty(value: str) -> None:
    if not value:
        raise ValueError("must not be empty")


def _websocket_url(value: str) -> None:
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError("must be a ws:// or wss:// URL with a host")


def _box_identifier(value: str) -> None:
    _non_empty(value)
    if "/" in value:
        raise ValueError("must not contain '/'")


def _offline_interval(value: str) -> None:
    if 0 < int(value) < 5:
        raise ValueError("must be 0 or 5..3600")


_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}){16,40}")


def _authorization_key(value: str) -> None:
    if not _HEX.fullmatch(value):
        raise ValueError("must be 16..40 bytes written as hexadecimal (32..80 hex digits)")


_PHASE_ROTATION = re.compile(r"(?:[0-9]+\.)?(?:NotApplicable|Unknown|RST|RTS|SRT|STR|TRS|TSR)")


def _phase_rotation(value: str) -> None:
    for item in value.split(","):
        if not _PHASE_ROTATION.fullmatch(item):
            raise ValueError(f"bad phase rotation {item!r}")


RO, RW, WO = Access.RO, Access.RW, Access.WO
BOOL, INT, STR, CSL = KeyType.BOOL, KeyType.INT, KeyType.STR, KeyType.CSL

KEYS: tuple[KeyDef, ...] = (
    # -- Standard keys (guide table "Standard Keys"; OCPP 1.6 and security whitepaper)
    KeyDef("AllowOfflineTxForUnknownId", RW, BOOL, "true"),
    KeyDef("AuthorizationCacheEnabled", RW, BOOL, "false", aliases=("AuthorizationCacheEnable",)),
    KeyDef("AuthorizeRemoteTxRequests", RW, BOOL, "true"),
    KeyDef("ClockAlignedDataInterval", RW, INT, "0", range=(0, 86400)),
    KeyDef("ConnectionTimeOut", RW, INT, "120", range=(1, 3600)),
    KeyDef("GetConfigurationMaxKeys", RO, INT, "200"),
    KeyDef("HeartbeatInterval", RW, INT, "60"),
    KeyDef("LocalAuthorizeOffline", RW, BOOL, "true"),
    KeyDef("LocalPreAuthorize", RW, BOOL, "false"),
    KeyDef(
        "MeterValuesAlignedData",
        RW,
        CSL,
        "Current.Import,Current.Offered,Energy.Active.Import.Register,Power.Offered,"
        "Power.Active.Import",
        items=MEASURANDS,
        max_items_key="MeterValuesAlignedDataMaxLength",
    ),
    KeyDef("MeterValuesAlignedDataMaxLength", RO, INT, "9"),
    KeyDef(
        "MeterValuesSampledData",
        RW,
        CSL,
        "Current.Import,Current.Offered,Energy.Active.Import.Register,Power.Offered,"
        "Power.Active.Import,SoC",
        items=MEASURANDS,
        max_items_key="MeterValuesSampledDataMaxLength",
    ),
    KeyDef("MeterValuesSampledDataMaxLength", RO, INT, "8"),
    KeyDef("MeterValueSampleInterval", RW, INT, "60"),
    KeyDef("MinimumStatusDuration", RW, INT, "10", range=(0, 3600)),
    KeyDef("NumberOfConnectors", RO, INT, None),
    KeyDef("ResetRetries", RW, INT, "2", range=(0, 100)),
    KeyDef("ConnectorPhaseRotationMaxLength", RO, INT, "1"),
    KeyDef(
        "ConnectorPhaseRotation",
        RW,
        CSL,
        "NotApplicable",
        max_items_key="ConnectorPhaseRotationMaxLength",
        check=_phase_rotation,
    ),
    KeyDef("StopTransactionOnEVSideDisconnect", RW, BOOL, "true"),
    KeyDef("StopTransactionOnInvalidId", RW, BOOL, "true"),
    KeyDef("StopTxnAlignedDataMaxLength", RO, INT, "1"),
    KeyDef("StopTxnSampledDataMaxLength", RO, INT, "2"),
    KeyDef(
        "SupportedFeatureProfiles",
        RO,
        CSL,
        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger",
    ),
    KeyDef("SupportedFeatureProfilesMaxLength", RO, INT, "6"),
    KeyDef("TransactionMessageAttempts", RW, INT, "2", range=(0, 100)),
    KeyDef("TransactionMessageRetryInterval", RW, INT, "10", range=(0, 3600)),
    KeyDef("UnlockConnectorOnEVSideDisconnect", RW, BOOL, "false"),
    KeyDef("WebSocketPingInterval", RW, INT, "20", range=(0, 3600)),
    KeyDef("LocalAuthListEnabled", RW, BOOL, "false"),
    KeyDef("LocalAuthListMaxLength", RO, INT, "100000"),
    KeyDef("SendLocalListMaxLength", RO, INT, "400"),
    KeyDef("ReserveConnectorZeroSupported", RO, BOOL, "true"),
    KeyDef("ChargeProfileMaxStackLevel", RO, INT, "20"),
    KeyDef("ChargingScheduleMaxPeriods", RO, INT, "50"),
    KeyDef("ConnectorSwitch3to1PhaseSupported", RO, BOOL, "false"),
    KeyDef("MaxChargingProfilesInstalled", RO, INT, "40"),
    KeyDef("ChargingScheduleAllowedChargingRateUnit", RO, CSL, "Current,Power"),
    KeyDef(
        "StopTxnAlignedData",
        RW,
        CSL,
        "",
        items=MEASURANDS,
        max_items_key="StopTxnAlignedDataMaxLength",
    ),
    KeyDef(
        "StopTxnSampledData",
        RW,
        CSL,
        "",
        items=MEASURANDS,
        max_items_key="StopTxnSampledDataMaxLength",
    ),
    KeyDef("AuthorizationKey", WO, STR, "", check=_authorization_key),
    KeyDef("SecurityProfile", RW, INT, "1", range=(0, 3)),
    KeyDef("CertificateSignedMaxChain", RO, INT, "1000"),
    KeyDef("CertificateStoreMaxLength", RO, INT, "10"),
    KeyDef("ISO15118PnCEnabled", RW, BOOL, "false"),
    # -- Non-standard keys (guide table "Non-Standard Keys")
    KeyDef("AuthenticationOCPPMode", RW, BOOL, "true"),  # legacy: derived from FreeCharging
    KeyDef("DefaultIdTag", RW, STR, "SIMTAG", max_len=20, check=_non_empty),
    KeyDef("SupervisionUrl", RW, STR, "", max_len=255, check=_websocket_url, reboot=True),
    KeyDef("BoxIdentifier", RW, STR, "", max_len=50, check=_box_identifier, reboot=True),
    KeyDef("ChargeLimitedPower", RO, INT, None),
    KeyDef("ConnectorALimitedPower", RO, INT, None),
    KeyDef("ConnectorBLimitedPower", RO, INT, None),
    KeyDef("ConnectorAType", RO, STR, None),
    KeyDef("ConnectorBType", RO, STR, None),
    KeyDef(
        "disconnectedMeterValueSampleInterval",
        RW,
        INT,
        "900",
        range=(0, 3600),
        check=_offline_interval,
    ),
    KeyDef("SecurityEventsEnabled", RW, BOOL, "true"),
    KeyDef("EnableMeterValuesContainVoltage", RW, BOOL, "false"),
    KeyDef("EnableRemoteStartNoConnectedEV", RW, BOOL, "true"),
    KeyDef("MacAddressPrefix", RW, STR, "", max_len=20),
    KeyDef("QRcode1", RW, STR, "", max_len=120),
    KeyDef("QRcode2", RW, STR, "", max_len=120),
    KeyDef("QRCodeEnabled", RW, BOOL, "true", aliases=("QRcodeEnabled",)),
    KeyDef("RFIDEnabled", RW, BOOL, "true"),
    KeyDef("PosEnabled", RW, BOOL, "false", aliases=("POSEnabled",)),
    KeyDef("APPEEnabled", RW, BOOL, "true", aliases=("AppEnabled",)),
    KeyDef("AutoCharge", RW, BOOL, "false", aliases=("Autocharge",)),
    KeyDef("FreeCharging", RW, BOOL, "false"),
    KeyDef("CallMsgInOrder", RW, BOOL, "true"),
    KeyDef("OfflineTxMsgQueueEnable", RW, BOOL, "true"),
    # -- Plug & Charge and security extension (guide table; SecurityProfile and
    #    CertificateStoreMaxLength are in the standard table above, whose rows win)
    KeyDef("CentralContractValidationAllowed", RW, BOOL, "false", pnc=True),
    KeyDef("CertificateSignedMaxChainSize", RO, INT, "10000", pnc=True),
    KeyDef("CertSigningWaitMinimum", RW, INT, "0", pnc=True),
    KeyDef("CertSigningRepeatTimes", RW, INT, "0", pnc=True),
    KeyDef("ContractValidationOffline", RW, BOOL, "false", pnc=True),
    KeyDef("SeccLeafSubjectCommonName", RW, STR, "", pnc=True),
    KeyDef("SeccLeafSubjectCountry", RW, STR, "", pnc=True),
    KeyDef("SeccLeafSubjectOrganization", RW, STR, "", pnc=True),
    KeyDef("ConnectorEvseIds", RW, CSL, "", aliases=("ConnectorEvselds",), pnc=True),
    KeyDef("CpoName", RW, STR, "", pnc=True),
    KeyDef("AdditionalRootCertificateCheck", RW, BOOL, "false", pnc=True),
)

_BY_NAME: dict[str, KeyDef] = {
    spelling.lower(): key for key in KEYS for spelling in (key.name, *key.aliases)
}

_LEGACY_AUTH = "AuthenticationOCPPMode"
_FREE = "FreeCharging"
_PNC = "ISO15118PnCEnabled"
_AUTOCHARGE = "AutoCharge"
#: Auth option name -> key enabling it, in the order auth_options() lists them.
_AUTH_OPTIONS: dict[str, str] = {
    "rfid": "RFIDEnabled",
    "qr": "QRCodeEnabled",
    "app": "APPEEnabled",
    "pos": "PosEnabled",
    "autocharge": _AUTOCHARGE,
    "pnc": _PNC,
}
_EMPTY: Mapping[str, str] = MappingProxyType({})


def lookup(name: str) -> KeyDef | None:
    """The key called ``name`` (any case, canonical name or alias), or None."""
    return _BY_NAME.get(name.lower())


def _normalize(key: KeyDef, value: str) -> str:
    """``value`` in the key's canonical string form; ValueError if it does not fit the key."""
    match key.type:
        case KeyType.BOOL:
            value = value.lower()
            if value not in ("true", "false"):
                raise ValueError("must be true or false")
        case KeyType.INT:
            if not re.fullmatch(r"[0-9]+", value):
                raise ValueError("must be a non-negative decimal integer")
            low, high = key.range
            if not low <= int(value) <= high:
                raise ValueError(f"must be in {low}..{high}")
            value = str(int(value))
        case KeyType.STR:
            if key.max_len is not None and len(value) > key.max_len:
                raise ValueError(f"must be at most {key.max_len} characters")
        case KeyType.CSL:
            items = [item.strip() for item in value.split(",")] if value.strip() else []
            if "" in items:
                raise ValueError("empty list item")
            if len(set(items)) != len(items):
                raise ValueError("repeated list item")
            if key.items is not None and not key.items.issuperset(items):
                raise ValueError(f"unsupported items {sorted(set(items) - key.items)}")
            if key.max_items_key is not None:
                limit = int(str(_BY_NAME[key.max_items_key.lower()].default))
                if len(items) > limit:
                    raise ValueError(f"at most {limit} items ({key.max_items_key})")
            value = ",".join(items)
    if key.check is not None:
        key.check(value)
    return value


def _seed_text(key: KeyDef, raw: object) -> str:
    """A TOML seed value in OCPP string form (before validation); ValueError if of a wrong type."""
    match key.type, raw:
        case KeyType.BOOL, bool():
            return "true" if raw else "false"
        case KeyType.INT, int() if not isinstance(raw, bool):
            return str(raw)
        case KeyType.CSL, list() if all(isinstance(item, str) for item in raw):
            return ",".join(raw)
        case _, str():
            return raw
    raise ValueError(f"expected a {key.type} value, got {type(raw).__name__}")


def limit_keys(
    items: Sequence[tuple[str, bool, str]], unknown: Sequence[str], max_keys: int
) -> tuple[list[tuple[str, bool, str]], list[str]]:
    """Truncate a GetConfiguration answer to at most ``max_keys`` entries in total.

    Rule: configuration keys and unknown keys together count against
    ``max_keys`` (GetConfigurationMaxKeys). Known keys come first, in the order
    given; unknown names fill whatever room is left, in the order given.
    Whatever does not fit is dropped (a CSMS that needs more asks for the
    remaining keys by name).
    """
    kept = list(items[: max(max_keys, 0)])
    return kept, list(unknown[: max(max_keys - len(kept), 0)])


class KeyStore:
    """The charger's configuration keys and their current values.

    Precedence at construction: persisted (changed over OCPP, from the state
    store) over seeds (installer's TOML ``[ocpp.keys]``) over the table's
    defaults; model-derived read-only keys come from ``model_values``.
    Lookups accept any case and any alias; answers use canonical names.
    """

    def __init__(
        self,
        model_values: Mapping[str, str],
        seeds: Mapping[str, object] = _EMPTY,
        persisted: Mapping[str, str] = _EMPTY,
    ) -> None:
        self.warnings: list[str] = []
        self._values: dict[str, str] = {
            key.name: key.default
            for key in KEYS
            if key.default is not None and key.name != _LEGACY_AUTH
        }
        self._changes: dict[str, str] = {}
        self._load_model(model_values)
        self._load_seeds(seeds)
        self._load_persisted(persisted)

    def _load_model(self, model_values: Mapping[str, str]) -> None:
        for name, raw in model_values.items():
            key = lookup(name)
            if key is None or key.default is not None:
                raise KeyConfigError(name, "not a model-derived key")
            try:
                self._values[key.name] = _normalize(key, raw)
            except ValueError as exc:
                raise KeyConfigError(name, str(exc)) from None
        for key in KEYS:
            if key.default is None and key.name not in self._values:
                raise KeyConfigError(key.name, "missing from the model values")

    def _load_seeds(self, seeds: Mapping[str, object]) -> None:
        for name, raw in seeds.items():
            key = lookup(name)
            if key is None:
                raise KeyConfigError(name, "unknown configuration key")
            if key.access is Access.RO:
                raise KeyConfigError(name, "read-only key cannot be seeded")
            if key.name == _LEGACY_AUTH:
                raise KeyConfigError(
                    name, "legacy key cannot be seeded; seed FreeCharging/RFIDEnabled/QRCodeEnabled"
                )
            try:
                self._values[key.name] = _normalize(key, _seed_text(key, raw))
            except ValueError as exc:
                raise KeyConfigError(name, str(exc)) from None

    def _load_persisted(self, persisted: Mapping[str, str]) -> None:
        for name, raw in persisted.items():
            key = lookup(name)
            if key is None or key.access is Access.RO or key.name == _LEGACY_AUTH:
                self.warnings.append(f"{name}: persisted value ignored: not a writable key")
                continue
            try:
                self._values[key.name] = _normalize(key, raw)
            except ValueError as exc:
                # The value itself is not quoted: it may be a secret (AuthorizationKey).
                self.warnings.append(f"{name}: persisted value ignored: {exc}")

    # -- reading

    def get(self, name: str) -> str | None:
        """Current value of any key (hidden and write-only included), or None if unknown."""
        key = lookup(name)
        return None if key is None else self._value(key)

    def _value(self, key: KeyDef) -> str:
        if key.name == _LEGACY_AUTH:
            return "false" if self._is_true(_FREE) else "true"
        return self._values[key.name]

    def get_bool(self, name: str) -> bool:
        return self._typed(name, KeyType.BOOL) == "true"

    def get_int(self, name: str) -> int:
        return int(self._typed(name, KeyType.INT))

    def get_csl(self, name: str) -> list[str]:
        value = self._typed(name, KeyType.CSL)
        return value.split(",") if value else []

    def _typed(self, name: str, type_: KeyType) -> str:
        """Value of a key of type ``type_``: KeyError if unknown, TypeError if of another type."""
        key = lookup(name)
        if key is None:
            raise KeyError(name)
        if key.type is not type_:
            raise TypeError(f"{key.name} is a {key.type} key, not {type_}")
        return self._value(key)

    def _is_true(self, canonical: str) -> bool:
        return self._values[canonical] == "true"

    def _visible(self, key: KeyDef) -> bool:
        return key.access is not Access.WO and (not key.pnc or self._is_true(_PNC))

    def configuration(
        self, names: list[str] | None = None
    ) -> tuple[list[tuple[str, bool, str]], list[str]]:
        """GetConfiguration: ((key, readonly, value) list, unknown names as asked).

        All visible keys when ``names`` is None or empty. Write-only keys and
        PnC keys while ISO15118PnCEnabled is false are never reported: asked
        for, they are unknown. A key asked twice (any spelling) is reported
        once. Not truncated: see ``limit_keys``.
        """
        if names:
            keys: list[KeyDef] = []
            unknown: list[str] = []
            for name in names:
                key = lookup(name)
                if key is None or not self._visible(key):
                    unknown.append(name)
                elif key not in keys:
                    keys.append(key)
        else:
            keys, unknown = [key for key in KEYS if self._visible(key)], []
        return [(key.name, key.access is Access.RO, self._value(key)) for key in keys], unknown

    def snapshot(self) -> dict[str, str]:
        """Canonical name -> value of every key, write-only and hidden ones included."""
        return {key.name: self._value(key) for key in KEYS}

    # -- authentication modes (R-AUTH 1)

    def auth_options(self) -> list[str]:
        """Effective authentication options: ["free"], or the enabled ones of
        "rfid", "qr", "app", "pos", "autocharge", "pnc" in that order."""
        if self._is_true(_FREE):
            return ["free"]
        return [option for option, key in _AUTH_OPTIONS.items() if self._is_true(key)]

    def mac_auth_mode(self) -> Literal["pnc", "autocharge"] | None:
        """Which EV-side authentication runs: PnC wins over AutoCharge; None in free mode."""
        if self._is_true(_FREE):
            return None
        if self._is_true(_PNC):
            return "pnc"
        if self._is_true(_AUTOCHARGE):
            return "autocharge"
        return None

    # -- changing

    def change(self, name: str, value: str) -> ChangeResult:
        """ChangeConfiguration. Accepted and RebootRequired values are stored at once."""
        key = lookup(name)
        if key is None or (key.pnc and not self._is_true(_PNC)):
            return ChangeResult.NOT_SUPPORTED
        if key.access is Access.RO:
            return ChangeResult.REJECTED
        try:
            value = _normalize(key, value)
        except ValueError:
            return ChangeResult.REJECTED
        if key.name == _LEGACY_AUTH:
            self._change_legacy_auth(value == "true")
            return ChangeResult.ACCEPTED
        if value == "true" and key.name in _AUTH_OPTIONS.values() and self._is_true(_FREE):
            return ChangeResult.REJECTED
        current = self._values[key.name]
        if value == current:
            return ChangeResult.ACCEPTED
        if key.name == "SecurityProfile" and int(value) < int(current):
            return ChangeResult.REJECTED
        self._set(key.name, value)
        return ChangeResult.REBOOT_REQUIRED if key.reboot else ChangeResult.ACCEPTED

    def fall_back_security_profile(self, profile: int) -> None:
        """The charger itself returns to the last profile that worked (R-SEC 1); the
        CSMS can never lower it, this is the only way down."""
        self._set("SecurityProfile", str(int(profile)))

    def _change_legacy_auth(self, authenticate: bool) -> None:
        if authenticate:
            self._set(_FREE, "false")
            self._set(_AUTH_OPTIONS["rfid"], "true")
            self._set(_AUTH_OPTIONS["qr"], "true")
        else:
            self._set(_FREE, "true")

    def _set(self, canonical: str, value: str) -> None:
        if self._values[canonical] != value:
            self._values[canonical] = value
            self._changes[canonical] = value

    def changed(self) -> dict[str, str]:
        """Canonical name -> value of every key change() modified since construction
        or the last take_changes()."""
        return dict(self._changes)

    def take_changes(self) -> dict[str, str]:
        """changed(), then forget those changes (the caller persists them)."""
        changes, self._changes = self._changes, {}
        return changes
