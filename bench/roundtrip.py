"""CSMS -> charger CALL round trip on loopback, against the bare ``ocpp`` library.

One local CSMS (``controller.csms.server.CentralSystem``) on 127.0.0.1, two charge points
connected to it, each in its own process:

- the charger: the real daemon, ``python -m controller run --config FILE`` (mock drivers);
- the baseline: ``bench/_bare_cp.py``, a minimal ``ocpp.v16.ChargePoint`` subclass with
  trivial ``@on`` handlers answering the same actions with fixed payloads (the daemon's
  own answers, so the same bytes go back).

The CSMS sends, N times each (default 500, after ``--warmup`` unmeasured calls),
interleaving the two charge points call by call:

- GetConfiguration with no key (all keys);
- RemoteStartTransaction with connectorId 99 and idTag BENCH: no such connector, so the
  charger answers Rejected, and nothing changes between calls (repeatable).

Time = from the CSMS sending the CALL to ``CentralSystem.call`` returning the result
(``time.perf_counter``). Target: charger p50/p99 <= 1.3 x the bare library's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from typing import Any

from _common import (
    IDENTITY,
    REPO,
    BenchError,
    Daemon,
    cpu_ns,
    end,
    percentile,
    run_main,
    spawn,
    table,
    verdict,
)

BARE = "CP-BARE"
RATIO_TARGET = 1.3
SHORT = {"GetConfiguration": "GetConf", "RemoteStartTransaction": "RemoteStart"}
ACTIONS: dict[str, dict[str, Any]] = {
    "GetConfiguration": {},
    "RemoteStartTransaction": {"connectorId": 99, "idTag": "BENCH"},
}


async def timed_call(csms: Any, identity: str, action: str, timeout: float) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    try:
        result = await csms.call(identity, action, ACTIONS[action], timeout=timeout)
    except Exception as e:  # noqa: BLE001 - say who failed, on what
        raise BenchError(f"{identity} {action}: {e.__class__.__name__}: {e}") from None
    return time.perf_counter() - t0, result


async def bench(args: argparse.Namespace) -> int:
    from controller.csms.server import CentralSystem

    csms = CentralSystem(port=0)
    await csms.start()
    bare = None
    try:
        with Daemon(csms.url, log_level=args.log_level) as daemon:
            daemon.start()
            await daemon.wait_boot(csms, timeout=args.timeout)
            await asyncio.sleep(args.settle)  # let the StatusNotifications go by
            daemon.check_alive()

            # The daemon's own answers become the baseline's fixed payloads.
            answers = {a: (await timed_call(csms, IDENTITY, a, args.timeout))[1] for a in ACTIONS}
            if answers["RemoteStartTransaction"].get("status") != "Rejected":
                raise BenchError(f"expected RemoteStart on connector 99 to be Rejected, got "
                                 f"{answers['RemoteStartTransaction']}")
            payload_file = daemon.dir / "bare_payloads.json"
            payload_file.write_text(json.dumps(answers))
            bare = spawn([sys.executable, str(REPO / "bench" / "_bare_cp.py"), csms.url, BARE,
                          str(payload_file), *(["--sync-validation"] if args.bare_sync_validation else [])],
                         daemon.dir / "bare.log")
            try:
                await csms.wait_connected(BARE, timeout=args.timeout)
            except AssertionError:
                log = (daemon.dir / "bare.log").read_text(errors="replace")[-2000:]
                raise BenchError(f"the bare ocpp charge point did not connect:\n{log}") from None

            who = {"charger": IDENTITY, "bare ocpp": BARE}
            for identity in who.values():
                for action in ACTIONS:
                    for _ in range(args.warmup):
                        await timed_call(csms, identity, action, args.timeout)

            samples: dict[tuple[str, str], list[float]] = {(w, a): [] for w in who for a in ACTIONS}
            replies: dict[tuple[str, str], dict[str, Any]] = {}
            pids = {"charger": daemon.pid, "bare ocpp": bare.pid}
            cpu0 = {w: cpu_ns(pid) for w, pid in pids.items()}
            gc.collect()
            t_start = time.perf_counter()
            for i in range(args.calls):
                for action in ACTIONS:
                    order = list(who.items()) if i % 2 == 0 else list(reversed(who.items()))
                    for name, identity in order:
                        dt, reply = await timed_call(csms, identity, action, args.timeout)
                        samples[(name, action)].append(dt)
                        replies[(name, action)] = reply
            elapsed = time.perf_counter() - t_start
            cpu1 = {w: cpu_ns(pid) for w, pid in pids.items()}
            daemon.check_alive()
            if bare.poll() is not None:
                raise BenchError("the bare ocpp charge point exited during the run")
            for action in ACTIONS:
                if replies[("charger", action)] != replies[("bare ocpp", action)]:
                    raise BenchError(f"{action}: the two charge points answered differently:\n"
                                     f"  charger:   {replies[('charger', action)]}\n"
                                     f"  bare ocpp: {replies[('bare ocpp', action)]}")
            await daemon.astop()
            stop_note = daemon.stop_note
    finally:
        if bare is not None:
            end(bare)
        await csms.stop()

    n_keys = len(answers["GetConfiguration"].get("configurationKey", []))
    size = len(json.dumps(answers["GetConfiguration"], separators=(",", ":")))
    print(f"\n{args.calls} measured calls per charge point and action (after {args.warmup} warm-up), "
          f"interleaved, {elapsed:.1f} s in all")
    validation = "in the receive task" if args.bare_sync_validation else "in a thread executor (library default)"
    print(f"baseline schema validation: {validation}; the daemon validates in the receive task")
    print(f"GetConfiguration answer: {n_keys} keys, {size} bytes of payload; "
          f"RemoteStartTransaction connectorId 99 -> {answers['RemoteStartTransaction']['status']}")
    print()
    ms = lambda s: f"{s * 1000:.3f}"  # noqa: E731
    rows = []
    missed = []
    for action in ACTIONS:
        c, b = samples[("charger", action)], samples[("bare ocpp", action)]
        for label, p in (("p50", 50), ("p99", 99)):
            pc, pb = percentile(c, p), percentile(b, p)
            ratio = pc / pb
            ok = ratio <= RATIO_TARGET
            if not ok:
                missed.append(f"{action} {label}: {ratio:.2f} x (target {RATIO_TARGET} x, "
                              f"+{(ratio / RATIO_TARGET - 1) * 100:.0f} % over)")
            rows.append([action, label, ms(pc), ms(pb), f"{ratio:.2f}", f"<= {RATIO_TARGET}", verdict(ok)])
    print(table(["action", "", "charger ms", "bare ocpp ms", "ratio", "target", ""], rows, "llrrrll"))

    print()
    cpu_rows = []
    calls_each = args.calls * len(ACTIONS)
    for name in ("charger", "bare ocpp"):
        if cpu0[name] is not None and cpu1[name] is not None:
            per_call = (cpu1[name] - cpu0[name]) / 1e3 / calls_each
            cpu_rows.append([name, f"{per_call:.0f} us"])
    if cpu_rows:
        print("charge point process CPU per answered call (schedstat, both actions, incl. websockets):")
        print(table(["process", "CPU / call"], cpu_rows))
    extra = [
        ["min", *(ms(min(samples[(w, a)])) for w in who for a in ACTIONS)],
        ["mean", *(ms(sum(samples[(w, a)]) / len(samples[(w, a)])) for w in who for a in ACTIONS)],
        ["p90", *(ms(percentile(samples[(w, a)], 90)) for w in who for a in ACTIONS)],
        ["max", *(ms(max(samples[(w, a)])) for w in who for a in ACTIONS)],
    ]
    print()
    print(table(["ms", *(f"{w} {SHORT[a]}" for w in who for a in ACTIONS)], extra))
    if missed:
        print("\nmissed: " + "; ".join(missed))
    if stop_note:
        print(f"\nnote on stopping: {stop_note}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--calls", type=int, default=500, help="measured calls per charge point and action")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured calls first (default 20)")
    p.add_argument("--settle", type=float, default=2.0, help="wait after BootNotification (default 2)")
    p.add_argument("--bare-sync-validation", action="store_true",
                   help="baseline with ocpp.messages.ASYNC_VALIDATION off, as the daemon runs "
                        "(default: the library's default, schema checks in a thread executor)")
    p.add_argument("--log-level", default="INFO", help="daemon [log] level (default INFO)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-call and start-up timeout (s)")
    args = p.parse_args()
    if args.calls < 1:
        p.error("--calls must be >= 1")
    return run_main(bench, args)


if __name__ == "__main__":
    sys.exit(main())
