"""Start-up time of the charger daemon: process start -> BootNotification at the CSMS.

For each of ``--runs`` runs (default 5): a fresh temporary state dir and settings file,
then ``t0`` just before ``subprocess.Popen(python -m controller run --config FILE)``;
the local CSMS (``controller.csms.server.CentralSystem``, 127.0.0.1) stamps the WebSocket
connection and the BootNotification CALL as it receives them. Figures: connect - t0 and
BootNotification - t0, median over the runs. Target: median <= 1.0 s.

Then where start-up goes: wall time of ``python -c pass`` and of
``python -c "import controller.app"`` (median of ``--import-runs``), and one
``python -X importtime -c "import controller.app"`` (after a warm-up run): the top 10
modules by cumulative time, the top 10 by self time, and self time summed per top-level
package.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections import defaultdict

from _common import IDENTITY, REPO, BenchError, Daemon, run_main, table, verdict

TARGET_S = 1.0
IMPORT = "import controller.app"


async def one_run(csms: object, timeout: float) -> tuple[float, float, str]:
    """(connect - t0, BootNotification - t0, note on stopping) of one fresh daemon."""
    mark = csms.mark()  # type: ignore[attr-defined]
    with Daemon(csms.url) as daemon:  # type: ignore[attr-defined]
        daemon.start()
        boot = await daemon.wait_boot(csms, since=mark, timeout=timeout)
        connects = csms.events(IDENTITY, "connect", since=mark)  # type: ignore[attr-defined]
        t_connect = connects[0].time.timestamp() - daemon.t_start_wall if connects else float("nan")
        t_boot = boot.time.timestamp() - daemon.t_start_wall
        await daemon.astop()
        note = daemon.stop_note
    try:
        await csms.wait_disconnected(IDENTITY, timeout=5)  # type: ignore[attr-defined]
    except AssertionError:
        pass
    return t_connect, t_boot, note


def wall_time(code: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=60)
    dt = time.perf_counter() - t0
    if done.returncode != 0:
        raise BenchError(f"python -c {code!r} failed:\n{done.stderr.decode(errors='replace')[-2000:]}")
    return dt


def importtime() -> list[tuple[int, int, int, str]]:
    """(self us, cumulative us, depth, module) from one ``python -X importtime`` run."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", IMPORT], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise BenchError(f"python -X importtime -c {IMPORT!r} failed:\n{done.stderr[-2000:]}")
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|", 2)
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((int(self_us), int(cum_us), depth, name.strip()))
    return rows


async def bench(args: argparse.Namespace) -> int:
    from controller.csms.server import CentralSystem

    runs: list[tuple[float, float]] = []
    notes: set[str] = set()
    async with CentralSystem(port=0) as csms:
        for i in range(args.runs):
            t_connect, t_boot, note = await one_run(csms, args.timeout)
            runs.append((t_connect, t_boot))
            if note:
                notes.add(note)
            print(f"run {i + 1}/{args.runs}: connected {t_connect:.3f} s, BootNotification {t_boot:.3f} s",
                  flush=True)

    med_boot = statistics.median(b for _, b in runs)
    med_connect = statistics.median(c for c, _ in runs)
    print()
    print(table(
        ["process start ->", "median", "min", "max", "target", ""],
        [["WebSocket connected", f"{med_connect:.3f} s", f"{min(c for c, _ in runs):.3f} s",
          f"{max(c for c, _ in runs):.3f} s", "", ""],
         ["BootNotification received", f"{med_boot:.3f} s", f"{min(b for _, b in runs):.3f} s",
          f"{max(b for _, b in runs):.3f} s", f"<= {TARGET_S:g} s", verdict(med_boot <= TARGET_S)]],
        "lrrrll",
    ))
    if med_boot > TARGET_S:
        print(f"missed by {med_boot - TARGET_S:.3f} s ({(med_boot / TARGET_S - 1) * 100:.0f} % over)")
    for note in sorted(notes):
        print(f"note on stopping: {note} (in some runs)")

    # ------------------------------------------------------------ where start-up goes
    print(f"\nstart-up cost, median of {args.import_runs} runs each:")
    wall_time("pass")  # warm the page cache
    bare = statistics.median(wall_time("pass") for _ in range(args.import_runs))
    wall_time(IMPORT)
    imp = statistics.median(wall_time(IMPORT) for _ in range(args.import_runs))
    print(table(["command", "wall"], [
        ["python -c pass  (interpreter + site)", f"{bare * 1000:.0f} ms"],
        [f'python -c "{IMPORT}"', f"{imp * 1000:.0f} ms"],
        [f"  => {IMPORT} alone", f"{(imp - bare) * 1000:.0f} ms"],
        ["  => remainder of boot median (approx.: settings, store, drivers, connect)",
         f"{(med_boot - imp) * 1000:.0f} ms"],
    ]))

    importtime()  # warm-up run
    rows = importtime()
    total = next((cum for _, cum, _, name in rows if name == "controller.app"), None)
    print(f"\npython -X importtime -c \"{IMPORT}\": top {args.top} by cumulative time"
          + (f" (controller.app total {total / 1000:.1f} ms)" if total else ""))
    top = sorted(rows, key=lambda r: r[1], reverse=True)[: args.top]
    print(table(["module", "depth", "cumulative", "self"],
                [[name, d, f"{cum / 1000:.1f} ms", f"{s / 1000:.1f} ms"] for s, cum, d, name in top]))
    top_self = sorted(rows, key=lambda r: r[0], reverse=True)[: args.top]
    print(f"\ntop {args.top} by self time (the module's own body, imports excluded)")
    print(table(["module", "self", "cumulative"],
                [[name, f"{s / 1000:.1f} ms", f"{cum / 1000:.1f} ms"] for s, cum, _, name in top_self]))
    per_package: dict[str, int] = defaultdict(int)
    for s, _, _, name in rows:
        per_package[name.split(".")[0]] += s
    packages = sorted(per_package.items(), key=lambda kv: kv[1], reverse=True)[: args.top]
    all_self = sum(per_package.values())
    print(f"\nself time summed per top-level package (all {len(rows)} modules: {all_self / 1000:.1f} ms)")
    print(table(["package", "self", "share"],
                [[name, f"{us / 1000:.1f} ms", f"{100 * us / all_self:.0f} %"] for name, us in packages]))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="daemon starts to time (default 5)")
    p.add_argument("--import-runs", type=int, default=5, help="runs of the python -c timings (default 5)")
    p.add_argument("--top", type=int, default=10, help="rows of the importtime tables (default 10)")
    p.add_argument("--timeout", type=float, default=20.0, help="max wait for BootNotification (s)")
    args = p.parse_args()
    if args.runs < 1 or args.import_runs < 1:
        p.error("--runs and --import-runs must be >= 1")
    return run_main(bench, args)


if __name__ == "__main__":
    sys.exit(main())
