"""Local authorization decisions: idTagInfo, offline strategies, local list updates.

Owns (pure: stdlib only, no I/O, never reads a clock -- ``now`` is passed in):

* :class:`IdTagInfo` -- the OCPP 1.6 ``IdTagInfo`` (status, expiryDate,
  parentIdTag) as a value, with its expiry rule.
* :func:`decide_offline` -- whether a badge starts a charge while the CSMS is
  unreachable (R-AUTH 6, the guide's "Offline strategies" table, OCPP 1.6
  §3.5.1-3.5.4).
* :func:`pre_authorized` -- LocalPreAuthorize while online (OCPP 1.6 §3.5).
* :func:`plan_list_update` -- checking a SendLocalList.req against the current
  local list and turning it into a :class:`ListUpdate` for the store, or the
  status to answer (R-AUTH 7, OCPP 1.6 §5.15).
* :class:`AuthCachePolicy` -- the size bound of the authorization cache.

It does not own the storage (``controller.store.sqlite``: ``auth_cache``,
``local_list`` tables) nor the dialogue with the CSMS (the charger core).

IdTags ("IdToken", a CiString20) are case-insensitive in OCPP 1.6: they are
kept as given and compared with :func:`id_tag_key`, which folds ASCII letters
only -- exactly what SQLite's ``COLLATE NOCASE`` in the store does, so that a
duplicate here is a duplicate there.

Rules the caller applies with these pieces (OCPP 1.6 §3.5.1, §3.5.3):

* The cache is updated from every IdTagInfo received (Authorize.conf,
  StartTransaction.conf, StopTransaction.conf), except for an idTag in the
  local list: identifiers known in the local list are never added to the cache.
* An expired entry is not usable; it is not deleted (it still refuses offline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .timefmt import parse_rfc3339, rfc3339

__all__ = [
    "AUTHORIZATION_STATUSES",
    "AuthCachePolicy",
    "IdTagInfo",
    "ListUpdate",
    "OfflineDecision",
    "OFFLINE_SOURCES",
    "decide_offline",
    "entries_to_evict",
    "id_tag_key",
    "plan_list_update",
    "pre_authorized",
]

#: OCPP 1.6 AuthorizationStatus values.
AUTHORIZATION_STATUSES = frozenset({"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"})

#: Possible :attr:`OfflineDecision.source` values.
OFFLINE_SOURCES = frozenset({"local_list", "cache", "unknown_allowed", "refused"})

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def id_tag_key(id_tag: str) -> str:
    """The comparison key of an idTag: ASCII letters folded to lower case.

    Same rule as SQLite ``COLLATE NOCASE`` (non-ASCII characters compare
    exactly), so the pure layer and the store agree on what is "the same" idTag.
    """
    return id_tag.translate(_ASCII_LOWER)


# --------------------------------------------------------------------------- IdTagInfo


@dataclass(frozen=True)
class IdTagInfo:
    """OCPP 1.6 IdTagInfo. ``expiry`` is an aware datetime (UTC) or None."""

    status: str
    expiry: datetime | None = None
    parent_id_tag: str | None = None

    def __post_init__(self) -> None:
        if self.status not in AUTHORIZATION_STATUSES:
            raise ValueError(f"unknown authorization status {self.status!r}")
        if self.expiry is not None:
            if not isinstance(self.expiry, datetime):
                raise TypeError(f"expiry must be a datetime, got {type(self.expiry).__name__}")
            if self.expiry.tzinfo is None or self.expiry.utcoffset() is None:
                raise ValueError("expiry must be an aware datetime")
        if self.parent_id_tag is not None and not isinstance(self.parent_id_tag, str):
            raise TypeError(f"parent_id_tag must be str, got {self.parent_id_tag!r}")

    @classmethod
    def from_ocpp(cls, d: dict[str, Any]) -> IdTagInfo:
        """From the camelCase dict (``status``, ``expiryDate``, ``parentIdTag``).

        Raises ValueError for a missing or unknown status, an expiryDate that is
        not an RFC 3339 date-time with an offset, or a non-string parentIdTag.
        Unknown keys are ignored.
        """
        if not isinstance(d, dict):
            raise ValueError(f"idTagInfo must be an object, got {type(d).__name__}")
        status = d.get("status")
        if not isinstance(status, str) or status not in AUTHORIZATION_STATUSES:
            raise ValueError(f"idTagInfo.status invalid: {status!r}")
        expiry_text = d.get("expiryDate")
        expiry = None
        if expiry_text is not None:
            if not isinstance(expiry_text, str):
                raise ValueError(f"idTagInfo.expiryDate must be a string, got {expiry_text!r}")
            expiry = parse_rfc3339(expiry_text)  # ValueError on a bad date
        parent = d.get("parentIdTag")
        if parent is not None and not isinstance(parent, str):
            raise ValueError(f"idTagInfo.parentIdTag must be a string, got {parent!r}")
        return cls(status=status, expiry=expiry, parent_id_tag=parent)

    def to_ocpp(self) -> dict[str, Any]:
        """The camelCase dict; absent fields are omitted. expiryDate in ms-precision UTC."""
        d: dict[str, Any] = {"status": self.status}
        if self.expiry is not None:
            d["expiryDate"] = rfc3339(self.expiry)
        if self.parent_id_tag is not None:
            d["parentIdTag"] = self.parent_id_tag
        return d

    def expired(self, now: datetime) -> bool:
        """True when an expiry is set and is at or before ``now``."""
        return self.expiry is not None and self.expiry <= now

    def effective_status(self, now: datetime) -> str:
        """The status at ``now``: "Expired" for an Accepted entry past its expiry."""
        if self.status == "Accepted" and self.expired(now):
            return "Expired"
        return self.status

    def usable(self, now: datetime) -> bool:
        """Whether this entry authorizes a start by itself: Accepted and not expired.

        ConcurrentTx is not usable: offline we cannot know whether the other
        transaction has ended.
        """
        return self.effective_status(now) == "Accepted"


# ----------------------------------------------------------------- offline decisions


@dataclass(frozen=True)
class OfflineDecision:
    """The outcome of an offline authorization.

    ``source``: "local_list" / "cache" (accepted by a usable entry, ``info`` is
    that entry), "unknown_allowed" (accepted by AllowOfflineTxForUnknownId,
    ``info`` None) or "refused" (``info`` is the entry that refused, or None
    when the idTag was unknown).
    """

    accepted: bool
    source: str
    info: IdTagInfo | None

    def __post_init__(self) -> None:
        if self.source not in OFFLINE_SOURCES:
            raise ValueError(f"unknown offline decision source {self.source!r}")
        if self.accepted == (self.source == "refused"):
            raise ValueError(f"accepted={self.accepted} contradicts source {self.source!r}")


_REFUSED_UNKNOWN = OfflineDecision(False, "refused", None)
_ALLOWED_UNKNOWN = OfflineDecision(True, "unknown_allowed", None)


def decide_offline(
    *,
    now: datetime,
    allow_unknown: bool,
    local_authorize_offline: bool,
    local_list_enabled: bool,
    cache_enabled: bool,
    list_entry: IdTagInfo | None,
    cache_entry: IdTagInfo | None,
) -> OfflineDecision:
    """May this idTag start a charge while the CSMS is unreachable? (R-AUTH 6)

    ``list_entry`` / ``cache_entry`` are what the local list and the cache hold
    for the idTag (None: not there); an entry of a disabled list
    (LocalAuthListEnabled false) or cache (AuthorizationCacheEnabled false) is
    ignored. Precedence, first match wins:

    1. LocalAuthorizeOffline true and the idTag is in the local list: the list
       entry decides -- usable (Accepted, not expired) -> accepted
       ("local_list"), otherwise refused. The cache is not looked at: the local
       list has priority over the cache (OCPP 1.6 §3.5.3).
    2. LocalAuthorizeOffline true and the idTag is in the cache: the cache entry
       decides the same way ("cache" or refused).
    3. LocalAuthorizeOffline false and the idTag is in the local list with an
       entry that is not usable (Blocked, Invalid, Expired, ConcurrentTx):
       refused. OCPP 1.6 §3.5.4: identifiers present in the local list with a
       status other than Accepted must be rejected -- a badge the CSMS has
       blocked in its list never charges offline. With LocalAuthorizeOffline
       false neither a usable list entry nor any cache entry authorizes or
       refuses anything: the idTag goes on to rule 4.
    4. Otherwise the idTag is unknown: accepted ("unknown_allowed") iff
       AllowOfflineTxForUnknownId; else refused.

    A known idTag that is not usable is refused even when
    AllowOfflineTxForUnknownId is true: only *unknown* ids are let in.

    The guide's table follows: "Allow all" (AllowOfflineTxForUnknownId true)
    accepts every badge not explicitly refused by rules 1-3; "Cache list only"
    and "Local list only" (unknown false, LocalAuthorizeOffline true, cache or
    list enabled) accept exactly the usable entries; "Reject all" (unknown
    false, LocalAuthorizeOffline false) refuses everything.
    """
    in_list = list_entry if local_list_enabled else None
    in_cache = cache_entry if cache_enabled else None
    if local_authorize_offline:
        for entry, source in ((in_list, "local_list"), (in_cache, "cache")):
            if entry is not None:
                if entry.usable(now):
                    return OfflineDecision(True, source, entry)
                return OfflineDecision(False, "refused", entry)
    elif in_list is not None and not in_list.usable(now):
        return OfflineDecision(False, "refused", in_list)
    return _ALLOWED_UNKNOWN if allow_unknown else _REFUSED_UNKNOWN


def pre_authorized(
    *,
    now: datetime,
    local_pre_authorize: bool,
    local_list_enabled: bool,
    cache_enabled: bool,
    list_entry: IdTagInfo | None,
    cache_entry: IdTagInfo | None,
) -> IdTagInfo | None:
    """LocalPreAuthorize while online: the entry that lets the charge start at once.

    Returns the usable entry (local list before cache, OCPP 1.6 §3.5.3), or
    None when the CSMS must be asked (Authorize.req): LocalPreAuthorize false,
    idTag in neither enabled store, or its entry not usable (an entry that is
    not Accepted or is expired never starts a charge without the CSMS; the
    CSMS's answer may have changed). An idTag in the local list is decided by
    the list alone, even if the cache holds a usable entry for it.
    """
    if not local_pre_authorize:
        return None
    if local_list_enabled and list_entry is not None:
        return list_entry if list_entry.usable(now) else None
    if cache_enabled and cache_entry is not None and cache_entry.usable(now):
        return cache_entry
    return None


# ------------------------------------------------------------------ local list updates


@dataclass(frozen=True)
class ListUpdate:
    """A checked SendLocalList.req, ready for ``Store.local_list_apply``.

    ``full``: replace the whole list by ``upserts`` (``deletes`` is empty).
    Otherwise differential: insert or replace ``upserts``, remove ``deletes``
    (ids not in the list are ignored). ``version`` becomes the list version.
    IdTags are as the CSMS sent them; no two of them are equal by
    :func:`id_tag_key`.
    """

    version: int
    full: bool
    upserts: dict[str, IdTagInfo] = field(default_factory=dict)
    deletes: frozenset[str] = frozenset()


_UPDATE_TYPES = frozenset({"Full", "Differential"})


def plan_list_update(
    payload: dict[str, Any],
    *,
    current_version: int,
    current_size: int,
    contains: Callable[[str], bool],
    enabled: bool,
    max_length: int,
    max_send: int,
) -> ListUpdate | str:
    """Check a SendLocalList.req (camelCase dict) against the current list. (R-AUTH 7)

    Returns the :class:`ListUpdate` to apply, or the SendLocalList.conf status
    to answer instead ("NotSupported", "Failed" or "VersionMismatch"; never
    "Accepted" -- the caller answers Accepted once the update is stored).
    ``contains(id_tag)`` tells whether the current list holds an idTag
    (case-insensitively); it is called only for differential updates.

    Checks, in this order (the first that fails decides):

    1. ``enabled`` false (LocalAuthListEnabled false) -> "NotSupported".
    2. The request itself, -> "Failed":
       * more than ``max_send`` (SendLocalListMaxLength) entries;
       * an entry without a non-empty idTag, or the same idTag twice (compared
         case-insensitively, an upsert and a delete of one idTag included);
       * a Full entry without idTagInfo (in a Differential update an entry
         without idTagInfo removes the idTag);
       * an idTagInfo that cannot be read (status, expiryDate not RFC 3339);
       * listVersion < 0 (-1 means "no local list" in GetLocalListVersion), or
         0 except for a Full update with an empty list: version 0 is the version
         of the empty list (OCPP 1.6 §5.10), so "Full, 0, no entries" clears it.
    3. Differential with listVersion <= ``current_version`` -> "VersionMismatch"
       (OCPP 1.6 §5.15). A Full update may carry any version (>= 1, or 0 as
       above), lower or equal ones included: it replaces everything, and a CSMS
       that renumbered its lists must be able to resynchronise the charger.
    4. Capacity -> "Failed": a Full update of more than ``max_length``
       (LocalAuthListMaxLength) entries, or a Differential after which the list
       would hold more than ``max_length`` entries (new ids counted with
       ``contains``, removed ids that are present subtracted).

    An absent or empty localAuthorizationList in a Full update means "empty
    list"; in a Differential update it only sets the version.
    """
    if not enabled:
        return "NotSupported"

    version = payload.get("listVersion")
    update_type = payload.get("updateType")
    entries = payload.get("localAuthorizationList")
    if entries is None:
        entries = []
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or update_type not in _UPDATE_TYPES
        or not isinstance(entries, list)
    ):
        return "Failed"
    full = update_type == "Full"
    if len(entries) > max_send:
        return "Failed"

    upserts: dict[str, IdTagInfo] = {}
    deletes: set[str] = set()
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            return "Failed"
        id_tag = entry.get("idTag")
        if not isinstance(id_tag, str) or not id_tag:
            return "Failed"
        key = id_tag_key(id_tag)
        if key in seen:
            return "Failed"
        seen.add(key)
        raw_info = entry.get("idTagInfo")
        if raw_info is None:
            if full:
                return "Failed"
            deletes.add(id_tag)
            continue
        try:
            upserts[id_tag] = IdTagInfo.from_ocpp(raw_info)
        except (ValueError, TypeError):
            return "Failed"

    if version < 0 or (version == 0 and not (full and not entries)):
        return "Failed"

    if not full and version <= current_version:
        return "VersionMismatch"

    if full:
        if len(upserts) > max_length:
            return "Failed"
    else:
        added = sum(1 for id_tag in upserts if not contains(id_tag))
        removed = sum(1 for id_tag in deletes if contains(id_tag))
        if current_size + added - removed > max_length:
            return "Failed"

    return ListUpdate(version=version, full=full, upserts=upserts, deletes=frozenset(deletes))


# ------------------------------------------------------------------ authorization cache


class AuthCachePolicy:
    """Bounds of the authorization cache (AuthorizationCacheEnabled, R-AUTH 7).

    ``MAX_ENTRIES = 10_000``: the cache only holds idTags seen at this charger.
    A busy public DC charger serves some tens of sessions a day, so 10 000
    distinct badges is more than a year of distinct users -- the cache keeps
    the regulars, which is its purpose. Bounded, the database stays around a
    megabyte on the SD card and an eviction is one indexed delete; and it is an
    order of magnitude below LocalAuthListMaxLength (100 000), whose lookup
    speed the store is tested for. Beyond it the least recently used entries
    go (``Store.cache_evict_lru(keep=MAX_ENTRIES)``).
    """

    MAX_ENTRIES = 10_000

    @staticmethod
    def entries_to_evict(size: int, max_entries: int) -> int:
        """How many entries must go so that at most ``max_entries`` remain (>= 0)."""
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        return max(0, size - max_entries)


entries_to_evict = AuthCachePolicy.entries_to_evict
