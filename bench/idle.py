"""Idle footprint of the charger daemon: RSS and CPU while connected, booted, doing nothing.

Starts a local CSMS (``controller.csms.server.CentralSystem``) on 127.0.0.1 and the real
daemon (``python -m controller run --config FILE``, mock drivers, temporary state dir),
waits for the BootNotification and ``--settle`` seconds more (StatusNotifications), then
samples the daemon for ``--seconds`` (default 60):

- RSS: /proc/PID/status VmRSS every ``--interval`` s (start, end, max) and VmHWM;
- CPU: utime+stime from /proc/PID/stat over the window, as % of one core
  (cross-checked with the ns-resolution /proc/PID/task/*/schedstat).

Targets: RSS <= 45 MB (max over the window), idle CPU <= 0.3 % of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from _common import CLK_TCK, IDENTITY, Daemon, cpu_ns, cpu_ticks, rss_kb, run_main, table, verdict

RSS_TARGET_MB = 45.0
CPU_TARGET_PCT = 0.3


async def bench(args: argparse.Namespace) -> int:
    from controller.csms.server import CentralSystem

    csms = CentralSystem(port=0, heartbeat_interval_s=args.heartbeat)
    await csms.start()
    try:
        with Daemon(csms.url, log_level=args.log_level) as daemon:
            daemon.start()
            boot = await daemon.wait_boot(csms, timeout=args.timeout)
            booted_after = boot.time.timestamp() - daemon.t_start_wall
            print(f"daemon pid {daemon.pid} booted after {booted_after:.2f} s; "
                  f"settling {args.settle:g} s, then measuring {args.seconds:g} s ...", flush=True)
            await asyncio.sleep(args.settle)
            daemon.check_alive()

            pid = daemon.pid
            mark = csms.mark()
            rss_samples: list[int] = []
            t0 = time.monotonic()
            ticks0, ns0 = cpu_ticks(pid), cpu_ns(pid)
            rss_samples.append(rss_kb(pid)[0])
            end = t0 + args.seconds
            while (now := time.monotonic()) < end:
                await asyncio.sleep(min(args.interval, end - now))
                daemon.check_alive()
                rss_samples.append(rss_kb(pid)[0])
            ticks1, ns1 = cpu_ticks(pid), cpu_ns(pid)
            t1 = time.monotonic()
            rss_end, hwm = rss_kb(pid)
            frames_in = len(csms.frames(IDENTITY, "in", since=mark))
            frames_out = len(csms.frames(IDENTITY, "out", since=mark))
            still_connected = csms.connected(IDENTITY)
            code = await daemon.astop()
            exit_note = daemon.stop_note or ("" if code in (0, None) else f"exited with code {code}")
            if exit_note:
                exit_note = f"note on stopping: {exit_note}\n{daemon.log_tail(6)}"
    finally:
        await csms.stop()

    window = t1 - t0
    cpu_s = (ticks1 - ticks0) / CLK_TCK
    cpu_pct = 100.0 * cpu_s / window
    ns_pct = 100.0 * (ns1 - ns0) / 1e9 / window if ns0 is not None and ns1 is not None else None
    rss_max = max(rss_samples) / 1024
    mb = lambda kb: f"{kb / 1024:.1f} MB"  # noqa: E731

    print()
    print(f"idle window {window:.1f} s, {len(rss_samples)} RSS samples, CSMS heartbeat interval "
          f"{args.heartbeat} s, frames during the window: {frames_in} from / {frames_out} to the charger")
    if not still_connected:
        print("warning: the charger was not connected at the end of the window", file=sys.stderr)
    rows = [
        ["RSS at window start", mb(rss_samples[0]), "", ""],
        ["RSS at window end", mb(rss_end), "", ""],
        ["RSS max (VmRSS samples)", f"{rss_max:.1f} MB", f"<= {RSS_TARGET_MB:g} MB",
         verdict(rss_max <= RSS_TARGET_MB)],
        ["RSS peak since start (VmHWM)", mb(hwm), "", ""],
        ["CPU time in window (stat)", f"{cpu_s * 1000:.0f} ms ({ticks1 - ticks0} ticks)", "", ""],
        ["CPU % of one core (stat)", f"{cpu_pct:.3f} %", f"<= {CPU_TARGET_PCT:g} %",
         verdict(cpu_pct <= CPU_TARGET_PCT)],
    ]
    if ns_pct is not None:
        rows.append(["CPU % of one core (schedstat)", f"{ns_pct:.3f} %", "", "cross-check"])
    print(table(["measure", "value", "target", ""], rows, "lrll"))
    if window < 30:
        print(f"note: /proc/PID/stat counts in {1000 // CLK_TCK} ms ticks; over {window:.0f} s one tick "
              f"is {100.0 / CLK_TCK / window:.3f} % - use the full 60 s for the verdict.")
    if exit_note:
        print(exit_note)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="measuring window (default 60)")
    p.add_argument("--settle", type=float, default=5.0, help="wait after BootNotification (default 5)")
    p.add_argument("--interval", type=float, default=1.0, help="RSS sampling interval (default 1)")
    p.add_argument("--heartbeat", type=int, default=60,
                   help="HeartbeatInterval the CSMS gives in BootNotification (default 60)")
    p.add_argument("--log-level", default="INFO", help="daemon [log] level (default INFO)")
    p.add_argument("--timeout", type=float, default=20.0, help="max wait for BootNotification")
    args = p.parse_args()
    if args.seconds <= 0 or args.interval <= 0:
        p.error("--seconds and --interval must be > 0")
    return run_main(bench, args)


if __name__ == "__main__":
    sys.exit(main())
