"""Who may charge without asking the CSMS: the authorization cache and the local list.

:class:`Authorizer` applies the pure rules of ``auth`` to the entries kept in the
state store: offline decisions (R-AUTH 6), LocalPreAuthorize, updating the cache
from every IdTagInfo the CSMS sends (except for ids in the local list, OCPP 1.6
§3.5.1), its least-recently-used bound, ClearCache, GetLocalListVersion and
SendLocalList (R-AUTH 7). Keys are read at each decision, so a ChangeConfiguration
applies at once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from .auth import AuthCachePolicy, IdTagInfo, ListUpdate, OfflineDecision, decide_offline, plan_list_update, pre_authorized
from .timefmt import rfc3339

log = logging.getLogger(__name__)


class Authorizer:
    def __init__(self, keys: Any, store: Any, wall: Any, max_cache_entries: int = AuthCachePolicy.MAX_ENTRIES) -> None:
        self.keys = keys
        self.store = store
        self.wall = wall  # () -> aware datetime
        self.max_cache_entries = max_cache_entries

    def _flag(self, name: str) -> bool:
        return bool(self.keys.get_bool(name))

    def _entries(self, id_tag: str) -> tuple[IdTagInfo | None, IdTagInfo | None]:
        return _info(self.store.local_list_get(id_tag)), _info(self.store.cache_get(id_tag))

    def offline(self, id_tag: str) -> OfflineDecision:
        """R-AUTH 6: the guide's offline strategies."""
        list_entry, cache_entry = self._entries(id_tag)
        decision = decide_offline(
            now=self.wall(),
            allow_unknown=self._flag("AllowOfflineTxForUnknownId"),
            local_authorize_offline=self._flag("LocalAuthorizeOffline"),
            local_list_enabled=self._flag("LocalAuthListEnabled"),
            cache_enabled=self._flag("AuthorizationCacheEnabled"),
            list_entry=list_entry,
            cache_entry=cache_entry,
        )
        if decision.source == "cache":
            self.store.cache_touch(id_tag, rfc3339(self.wall()))
        return decision

    def pre_authorized(self, id_tag: str) -> IdTagInfo | None:
        """LocalPreAuthorize: a valid local entry starts the charge without asking."""
        list_entry, cache_entry = self._entries(id_tag)
        return pre_authorized(
            now=self.wall(),
            local_pre_authorize=self._flag("LocalPreAuthorize"),
            local_list_enabled=self._flag("LocalAuthListEnabled"),
            cache_enabled=self._flag("AuthorizationCacheEnabled"),
            list_entry=list_entry,
            cache_entry=cache_entry,
        )

    def parent_of(self, id_tag: str) -> str | None:
        """The parentIdTag of a valid local entry for ``id_tag`` (list first, then cache);
        a Blocked or expired badge has no group."""
        list_entry, cache_entry = self._entries(id_tag)
        now = self.wall()
        for entry in (list_entry, cache_entry):
            if entry is not None:
                return entry.parent_id_tag if entry.usable(now) else None
        return None

    def remember(self, id_tag: str, id_tag_info: dict[str, Any] | None) -> None:
        """Update the cache from an IdTagInfo of Authorize/Start/StopTransaction.conf."""
        if not id_tag_info or not self._flag("AuthorizationCacheEnabled"):
            return
        if self.store.local_list_contains(id_tag):
            return  # ids of the local list are never cached (OCPP 1.6 §3.5.1)
        try:
            IdTagInfo.from_ocpp(id_tag_info)
        except ValueError as e:
            log.warning("idTagInfo for %s not cached: %s", id_tag, e)
            return
        self.store.cache_put(id_tag, id_tag_info, rfc3339(self.wall()))
        if self.store.cache_size() > self.max_cache_entries:
            self.store.cache_evict_lru(keep=self.max_cache_entries)

    def clear_cache(self) -> None:
        self.store.cache_clear()

    def list_version(self) -> int:
        if not self._flag("LocalAuthListEnabled"):
            return -1
        return int(self.store.local_list_version())

    def send_local_list(self, payload: dict[str, Any]) -> str:
        """SendLocalList: apply the update atomically; answer the OCPP status."""
        plan = plan_list_update(
            payload,
            current_version=int(self.store.local_list_version()),
            current_size=int(self.store.local_list_size()),
            contains=self.store.local_list_contains,
            enabled=self._flag("LocalAuthListEnabled"),
            max_length=int(self.keys.get_int("LocalAuthListMaxLength")),
            max_send=int(self.keys.get_int("SendLocalListMaxLength")),
        )
        if not isinstance(plan, ListUpdate):
            log.warning("SendLocalList v%s refused: %s", payload.get("listVersion"), plan)
            return plan
        self.store.local_list_apply(
            plan.version, plan.full, {k: v.to_ocpp() for k, v in plan.upserts.items()}, plan.deletes
        )
        log.info(
            "local list now v%d (%s: %d set, %d removed)",
            plan.version, "full" if plan.full else "differential", len(plan.upserts), len(plan.deletes),
        )
        return "Accepted"


def _info(entry: dict[str, Any] | None) -> IdTagInfo | None:
    if entry is None:
        return None
    try:
        return IdTagInfo.from_ocpp(entry)
    except ValueError:
        return IdTagInfo("Invalid")


__all__ = ["Authorizer", "datetime"]
