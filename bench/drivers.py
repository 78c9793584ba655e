"""Real hardware drivers: meter poll time per reading (Modbus TCP and RTU) and
badge -> Authorize latency through the daemon (issue 8, R-HW).

1. Meter poll: ``ModbusMeter.read(1)`` (the generic map: energy, power, voltage and
   current in one request) against the simulated meter of ``tests/drivers/fake_modbus.py``
   -- a pymodbus server in this process (same event loop as the client, so the figure
   includes the server's work), on 127.0.0.1 (TCP) and on a socat pty pair (RTU,
   115200 baud, which a pty ignores). ``--reads`` (500) timed reads after 20 untimed
   ones; p50 / p99 / max per reading. RTU is skipped, with a message, without socat.
2. Badge -> Authorize: ``python -m controller run`` (the real daemon, mock power stage,
   meter and platform) against our CSMS (``controller/csms/server.py``) on 127.0.0.1,
   connector 1 plugged through the rig. Each repetition presents a new idTag, which the
   CSMS answers Invalid (so the connector stays in Preparing and the next badge sends
   the next Authorize); ``--reps`` (20) timed after one untimed warm-up.

   * ``pcsc`` reader (needs root, pcscd and vsmartcard-vpcd: ``fake_pcsc.why_unavailable``):
     the real PC/SC backend with pcscd + vpcd in their own network namespace and the
     virtual card of ``tests/drivers/fake_pcsc.py``. Three instants, one clock
     (``time.time`` of this process): *insert* (the card connects to vpcd), *seen* (the
     backend's GET DATA ``FF CA`` reaches the card: pcscd has reported the card and the
     daemon asks for its UID) and *Authorize* (the CSMS records the CALL).
   * ``mock`` reader: the rig's ``badge`` command (what ``evsectl sim badge`` sends,
     sent from here over the control socket so the CLI's start-up is not counted), from
     just before the command to the CSMS recording the Authorize.

Targets: <= 5 ms per TCP poll; badge -> Authorize <= 50 ms after the card is seen
(pcscd itself takes ~0.45 s to see a card: reported apart, as insert -> seen).

    python bench/drivers.py                      # everything (pcsc if available, else mock)
    python bench/drivers.py --reader both        # both badge paths
    python bench/drivers.py --skip-badge --reads 2000
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO, BenchError, Daemon, percentile, run_main, table, verdict

# This file is named like the ``drivers`` package: take bench/ off the path so that
# ``import drivers`` finds the package, not this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(1, str(REPO / "tests" / "drivers"))

TCP_TARGET_MS = 5.0
BADGE_TARGET_MS = 50.0
WARMUP_READS = 20


# ---------------------------------------------------------------- meter poll


def meter_ctx(options: dict[str, Any], state_dir: Path) -> Any:
    from drivers.interfaces import ConnectorSpec, DriverContext

    return DriverContext(
        state_dir=state_dir, connectors=(ConnectorSpec(1, "CCS2", 60_000.0),),
        station_max_power_w=60_000.0, emit=lambda event: None, monotonic=time.monotonic,
        options=options,
    )


async def time_reads(options: dict[str, Any], n: int, state_dir: Path) -> tuple[list[float], float]:
    """Milliseconds per ``read(1)``, and requests per read."""
    from drivers.meter.modbus import ModbusMeter

    meter = ModbusMeter(meter_ctx(options, state_dir))
    await meter.start()
    try:
        for _ in range(WARMUP_READS):
            await meter.read(1)
        before = meter.requests
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            reading = await meter.read(1)
            times.append((time.perf_counter() - t0) * 1000)
        if reading.energy_wh != 1_234_567:
            raise BenchError(f"the meter read {reading}, expected 1 234 567 Wh")
        return times, (meter.requests - before) / n
    finally:
        await meter.close()


async def bench_meter(args: argparse.Namespace, tmp: Path) -> list[list[Any]]:
    from fake_modbus import FakeModbusMeter, SocatPair

    rows = []
    sim = FakeModbusMeter()
    port = await sim.serve_tcp()
    try:
        await sim.set(1, energy_wh=1_234_567, power_w=50_000.0, voltage_v=400.0, current_a=125.0)
        times, per_read = await time_reads({"host": "127.0.0.1", "port": port}, args.reads, tmp)
    finally:
        await sim.stop()
    p99 = percentile(times, 99)
    rows.append(["meter poll, Modbus TCP 127.0.0.1", len(times), per_read, *_ms(times),
                 f"<= {TCP_TARGET_MS:g} ms", verdict(p99 <= TCP_TARGET_MS)])
    if not SocatPair.available():
        print("RTU: skipped: socat is not installed (apt-get install socat)")
        return rows
    pair = SocatPair(tmp)
    pair.start()
    sim = FakeModbusMeter()
    try:
        await sim.serve_rtu(pair.a)
        await sim.set(1, energy_wh=1_234_567, power_w=50_000.0, voltage_v=400.0, current_a=125.0)
        times, per_read = await time_reads(
            {"transport": "rtu", "serial_port": pair.b, "baudrate": 115200}, args.reads, tmp
        )
    finally:
        await sim.stop()
        pair.stop()
    rows.append(["meter poll, Modbus RTU socat pty", len(times), per_read, *_ms(times), "", ""])
    return rows


def _ms(values: list[float]) -> list[str]:
    return [f"{percentile(values, 50):.2f}", f"{percentile(values, 99):.2f}", f"{max(values):.2f}"]


# ---------------------------------------------------------------- badge -> Authorize


class TimedCard:
    """The virtual card of fake_pcsc, noting when the UID is asked for (``seen_at``)."""

    def __init__(self, pcscd: Any) -> None:
        from fake_pcsc import VirtualCard

        outer = self

        class Card(VirtualCard):
            def _answer(self, data: bytes) -> bytes | None:
                if data[:4] == b"\xff\xca\x00\x00" and outer.seen_at is None:
                    outer.seen_at = time.time()
                return super()._answer(data)

        self.card = Card(pcscd)
        self.seen_at: float | None = None

    def insert(self, uid: str) -> float:
        self.seen_at = None
        t0 = time.time()
        self.card.insert(uid)
        return t0

    def remove(self) -> None:
        self.card.remove()


async def rig(daemon: Daemon, **message: Any) -> dict[str, Any]:
    from controller.rig import client

    return await asyncio.to_thread(client.request, daemon.dir / "control.sock", message)


async def connector_status(daemon: Daemon) -> str:
    answer = await rig(daemon, cmd="status")
    return answer["status"]["connectors"][0]["status"]


async def until_preparing(daemon: Daemon, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while (status := await connector_status(daemon)) != "Preparing":
        daemon.check_alive()
        if time.monotonic() > end:
            raise BenchError(f"connector 1 is {status}, not Preparing\n{daemon.log_tail()}")
        await asyncio.sleep(0.05)


async def bench_badge(reader: str, reps: int) -> list[list[Any]]:
    from controller.csms.server import CentralSystem

    pcscd = card = None
    if reader == "pcsc":
        from fake_pcsc import Pcscd

        pcscd = Pcscd()
        await asyncio.to_thread(pcscd.start)
        card = TimedCard(pcscd)
    csms = CentralSystem(port=0)
    await csms.start()
    daemon = Daemon(csms.url)
    try:
        if reader == "pcsc":
            text = daemon.config.read_text().replace('rfid = "mock"', 'rfid = "pcsc"', 1)
            daemon.config.write_text(text + "\n[drivers.options.rfid]\nwait_s = 0.2\nretry_interval_s = 0.2\n")
        daemon.start()
        await daemon.wait_boot(csms)
        await rig(daemon, cmd="plug", connector=1)
        await until_preparing(daemon)
        to_seen, seen_to_auth, total = [], [], []
        for i in range(reps + 1):  # the first one warms up (and waits for the reader)
            id_tag = f"04BE{i:010X}"
            csms.rejected_tags.add(id_tag)
            mark = csms.mark()
            if card is not None:
                t0 = await asyncio.to_thread(card.insert, id_tag)
            else:
                t0 = time.time()
                await rig(daemon, cmd="badge", id_tag=id_tag)
            try:
                record = await csms.wait_for("Authorize", since=mark, timeout=15 if i == 0 else 5)
            except AssertionError as e:
                raise BenchError(f"no Authorize for badge {i}: {e}\n{daemon.log_tail()}") from None
            if record.payload.get("idTag") != id_tag:
                raise BenchError(f"Authorize for {record.payload}, expected {id_tag}")
            t_auth = record.time.timestamp()
            if i:
                total.append((t_auth - t0) * 1000)
                if card is not None:
                    assert card.seen_at is not None
                    to_seen.append((card.seen_at - t0) * 1000)
                    seen_to_auth.append((t_auth - card.seen_at) * 1000)
            await asyncio.sleep(0.2)  # the Invalid answer handled: not "already authorizing"
            if card is not None:
                await asyncio.to_thread(card.remove)
                await asyncio.sleep(1.0)  # pcscd sees the card gone: the next one is a new presentation
            await until_preparing(daemon)
    finally:
        await daemon.astop()
        daemon.close()
        await csms.stop()
        if card is not None:
            card.remove()
        if pcscd is not None:
            await asyncio.to_thread(pcscd.stop)
    if card is None:
        return [["badge -> Authorize, mock reader (rig badge -> CSMS)", len(total), "", *_ms(total),
                 f"<= {BADGE_TARGET_MS:g} ms", verdict(percentile(total, 99) <= BADGE_TARGET_MS)]]
    return [
        ["badge -> Authorize, PC/SC: card seen -> CSMS", len(seen_to_auth), "", *_ms(seen_to_auth),
         f"<= {BADGE_TARGET_MS:g} ms", verdict(percentile(seen_to_auth, 99) <= BADGE_TARGET_MS)],
        ["  PC/SC: card inserted -> seen (pcscd + vpcd)", len(to_seen), "", *_ms(to_seen), "", ""],
        ["  PC/SC: card inserted -> CSMS", len(total), "", *_ms(total), "", ""],
    ]


# ---------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> int:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory(prefix="evsectl-bench-drivers-") as tmp:
        if not args.skip_meter:
            rows += await bench_meter(args, Path(tmp))
    if not args.skip_badge:
        readers = [args.reader]
        if args.reader in ("auto", "both"):
            from fake_pcsc import why_unavailable

            reason = why_unavailable()
            if reason:
                print(f"badge: the PC/SC path is not available here ({reason}): mock reader only")
                readers = ["mock"]
            else:
                readers = ["pcsc", "mock"] if args.reader == "both" else ["pcsc"]
        for reader in readers:
            rows += await bench_badge(reader, args.reps)
    print(table(["measure", "n", "requests/read", "p50 ms", "p99 ms", "max ms", "target", "verdict"],
                rows, align="lrrrrrll"))
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reads", type=int, default=500, help="timed meter reads per transport")
    p.add_argument("--reps", type=int, default=20, help="timed badges per reader")
    p.add_argument("--reader", choices=["auto", "pcsc", "mock", "both"], default="auto",
                   help="badge path: auto = pcsc if root+pcscd+vpcd are here, else mock")
    p.add_argument("--skip-meter", action="store_true")
    p.add_argument("--skip-badge", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(run_main(main, parse()))
