"""Local authorization list at full size: load time, Authorize decision time, memory.

Builds the charger core as the daemon does (``controller/app.py``: ``Store.open`` on a
state database in a fresh temporary directory, ``KeyStore`` from the model's values and
seeds, ``Charger`` with the runtime's ``SystemClock``), with LocalAuthListEnabled,
AuthorizationCacheEnabled and LocalPreAuthorize true, and no CSMS: only the core is
measured, the way the OCPP adapter calls it once a frame has passed schema validation.

1. Load: ``--ids`` 100 000 random idTags (14 upper-hex characters, an ISO 14443 7-byte
   UID; every 10th with an expiryDate and a parentIdTag) in ``--ids``/``--batch``
   (250) SendLocalList Differential requests of ``--batch`` 400 entries, versions
   1..250. Each payload is built and checked against the OCPP 1.6 SendLocalList schema
   (as the adapter does before it calls the core), then ``charger.request("SendLocalList",
   payload)`` alone is timed (``perf_counter``). "full load" is the sum of those 250 calls:
   charger-side time. One payload is alive at a time, as frames arrive one by one.
2. Lookups with the list full: ``--lookups`` 10 000 idTags, half of them in the list
   and half not (in random order), each timed through ``authorizer.offline(id)`` (the
   offline strategies) and ``authorizer.pre_authorized(id)`` (LocalPreAuthorize);
   p50/p99 per call, hits and misses together and apart.
   Extra, without a target: ``--cache-lookups`` 1000 offline decisions answered from the
   authorization cache, which also mark the entry used (the LRU order: a synced write).
3. Memory: VmRSS of this process (``/proc/self/status``) just before the first
   SendLocalList (the 100 000 idTags and the lookup sample already in memory, the
   store open) and after the last one, both after ``gc.collect()`` and glibc's
   ``malloc_trim(0)`` (otherwise heap memory freed while building the sample is reused by
   the load and hides its growth: measured without the trim, the growth reads ~0 MB).

Targets: lookup p99 <= 0.2 ms, full load <= 3 s, RSS growth <= 20 MB. A missed target
is a figure, not a failure: the script exits 0 once it has measured.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import percentile, table, verdict

LOOKUP_TARGET_MS = 0.2
LOAD_TARGET_S = 3.0
RSS_TARGET_MB = 20.0
MODEL = "EVlink Pro DC 180"


def _malloc_trim() -> Any:
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: readings may hide growth in reused free memory
        return None


MALLOC_TRIM = _malloc_trim()


def settled_rss_kb() -> int:
    """VmRSS after a full collection and, on glibc, malloc_trim(0): freed heap memory handed back,
    so that memory freed before the first reading cannot hide growth by being reused."""
    gc.collect()
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)
    return vm_rss_kb()


def vm_rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_ids(n: int, rng: random.Random) -> tuple[list[str], set[str]]:
    """``n`` distinct random idTags, in random order, and the same as a set."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        id_tag = f"{rng.getrandbits(56):014X}"
        if id_tag not in seen:
            seen.add(id_tag)
            ids.append(id_tag)
    return ids, seen


def build_payload(ids: list[str], version: int, batch: int, expiry: str) -> dict[str, Any]:
    """SendLocalList Differential ``version`` (1-based): the ``version``-th slice of ``batch`` ids."""
    start = (version - 1) * batch
    entries = []
    for i, id_tag in enumerate(ids[start:start + batch], start=start):
        info: dict[str, Any] = {"status": "Accepted"}
        if i % 10 == 0:
            info["expiryDate"] = expiry
            info["parentIdTag"] = f"FLEET-{i % 97:02d}"
        entries.append({"idTag": id_tag, "idTagInfo": info})
    return {"listVersion": version, "updateType": "Differential", "localAuthorizationList": entries}


def schema_check(action: str) -> Any:
    """A function raising SystemExit when a payload is not valid for the OCPP 1.6 ``action`` request."""
    from ocpp.messages import MessageType, get_validator

    validator = get_validator(MessageType.Call, action, "1.6")

    def check(payload: dict[str, Any]) -> None:
        error = next(iter(validator.iter_errors(payload)), None)
        if error is not None:
            raise SystemExit(f"bench: FAILED: {action} payload is not schema-valid: {error.message}")

    return check


def build_charger(state_dir: Path) -> Any:
    from controller.core.charger import Charger, Identity
    from controller.core.keys import KeyStore
    from controller.core.models import find_model
    from controller.runtime.clock import SystemClock
    from controller.store.sqlite import Store

    store = Store.open(state_dir / "state.sqlite")
    model = find_model(MODEL)
    seeds = {
        "LocalAuthListEnabled": True, "AuthorizationCacheEnabled": True, "LocalPreAuthorize": True,
        "AllowOfflineTxForUnknownId": False,  # "local list only": a miss is refused, so it is checked
    }
    keys = KeyStore(model.key_values(), seeds=seeds, persisted=store.keys())
    return Charger(model=model, keys=keys, store=store, clock=SystemClock(), identity=Identity("SN-BENCH", "bench"))


def time_calls(fn: Any, ids: list[str]) -> list[float]:
    """Per-call wall time in ms."""
    out = []
    clock = time.perf_counter
    for id_tag in ids:
        t0 = clock()
        fn(id_tag)
        out.append((clock() - t0) * 1000.0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", type=int, default=100_000, help="idTags loaded (default 100000)")
    ap.add_argument("--batch", type=int, default=400, help="entries per SendLocalList (default 400)")
    ap.add_argument("--lookups", type=int, default=10_000, help="timed lookups per function (default 10000)")
    ap.add_argument("--cache-lookups", type=int, default=1000,
                    help="offline decisions timed on cached ids (extra, default 1000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    ids, in_list = make_ids(args.ids, rng)
    expiry = (datetime.now(UTC) + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    check = schema_check("SendLocalList")
    versions = range(1, -(-args.ids // args.batch) + 1)
    misses: list[str] = []
    while len(misses) < args.lookups - args.lookups // 2:
        candidate = f"{rng.getrandbits(56):014X}"
        if candidate not in in_list:
            misses.append(candidate)
    hits = rng.sample(ids, args.lookups // 2)
    lookups = hits + misses
    rng.shuffle(lookups)
    is_hit = {t: True for t in hits} | {t: False for t in misses}

    with tempfile.TemporaryDirectory(prefix="evsectl-bench-list-") as tmp:
        charger = build_charger(Path(tmp))
        authorizer = charger.authorizer
        store = charger.store
        check(build_payload(ids, 1, args.batch, expiry))  # warm the validator up before the first reading
        rss_before = settled_rss_kb()

        # -- 1. the load, charger-side time only: each payload is built and schema-checked
        #       first (as the OCPP adapter does before it calls the core), then timed alone
        per_call: list[float] = []
        for version in versions:
            payload = build_payload(ids, version, args.batch, expiry)
            check(payload)
            t0 = time.perf_counter()
            reply = charger.request("SendLocalList", payload)
            per_call.append(time.perf_counter() - t0)
            if reply != {"status": "Accepted"}:
                print(f"bench: FAILED: SendLocalList v{version} answered {reply}", file=sys.stderr)
                return 1
            del payload
        load_s = sum(per_call)
        rss_after = settled_rss_kb()
        size, version = store.local_list_size(), authorizer.list_version()
        if size != args.ids or version != len(versions):
            print(f"bench: FAILED: list holds {size} ids at version {version}", file=sys.stderr)
            return 1
        db_mb = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 1e6

        # -- 2. lookups with the list full (a warm-up pass first: the first read of each page)
        for id_tag in lookups[:500]:
            authorizer.offline(id_tag)
            authorizer.pre_authorized(id_tag)
        offline_ms = time_calls(authorizer.offline, lookups)
        pre_ms = time_calls(authorizer.pre_authorized, lookups)
        wrong = [t for t in lookups if authorizer.offline(t).accepted != is_hit[t]]
        wrong += [t for t in lookups if (authorizer.pre_authorized(t) is not None) != is_hit[t]]
        if wrong:
            print(f"bench: FAILED: {len(wrong)} wrong decisions, e.g. {wrong[0]}", file=sys.stderr)
            return 1

        # -- extra (no target): an offline decision taken from the cache also marks the entry
        #    used (LRU), a synced write; the ids learnt are the misses above, not in the list
        cached = misses[:args.cache_lookups]
        for id_tag in cached:
            authorizer.remember(id_tag, {"status": "Accepted"})
        cache_ms = time_calls(authorizer.offline, cached)
        if any(authorizer.offline(t).source != "cache" for t in cached[:10]):
            print("bench: FAILED: cached ids not decided from the cache", file=sys.stderr)
            return 1
        store.close()

    def split(values: list[float], hit: bool) -> list[float]:
        return [v for v, t in zip(values, lookups) if is_hit[t] is hit]

    growth_mb = (rss_after - rss_before) / 1024.0
    rows: list[list[Any]] = []
    for name, values in (("authorizer.offline(id)", offline_ms), ("authorizer.pre_authorized(id)", pre_ms)):
        p50, p99 = percentile(values, 50), percentile(values, 99)
        rows.append([f"{name} p50 / p99, all", f"p99 <= {LOOKUP_TARGET_MS} ms",
                     f"{p50:.3f} / {p99:.3f} ms", verdict(p99 <= LOOKUP_TARGET_MS)])
        for label, hit in (("hits", True), ("misses", False)):
            part = split(values, hit)
            rows.append([f"  {label} ({len(part)})", "",
                         f"{percentile(part, 50):.3f} / {percentile(part, 99):.3f} ms", ""])
    rows.append([f"  offline(id) from the cache, p50 / p99 ({len(cache_ms)})", "(no target)",
                 f"{percentile(cache_ms, 50):.3f} / {percentile(cache_ms, 99):.3f} ms", ""])
    rows.append([f"full load: {len(versions)} x SendLocalList Differential of {args.batch}",
                 f"<= {LOAD_TARGET_S:g} s", f"{load_s:.3f} s", verdict(load_s <= LOAD_TARGET_S)])
    rows.append(["  one SendLocalList p50 / p99 / max", "",
                 f"{percentile(per_call, 50) * 1000:.2f} / {percentile(per_call, 99) * 1000:.2f} / "
                 f"{max(per_call) * 1000:.2f} ms", ""])
    rows.append(["RSS growth across the load (VmRSS)", f"<= {RSS_TARGET_MB:g} MB",
                 f"{growth_mb:+.1f} MB ({rss_before / 1024:.1f} -> {rss_after / 1024:.1f})",
                 verdict(growth_mb <= RSS_TARGET_MB)])
    rows.append(["state database on disk (db + wal)", "", f"{db_mb:.1f} MB", ""])

    print(f"local list: {args.ids} ids, {len(versions)} SendLocalList of {args.batch}, "
          f"{args.lookups} lookups ({len(hits)} hits, {len(misses)} misses); "
          f"Python {sys.version.split()[0]}")
    print(table(["measure", "target", "measured", "verdict"], rows, align="llrl"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
