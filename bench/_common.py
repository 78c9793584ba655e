"""Shared plumbing for the benchmark scripts in ``bench/`` (not a benchmark itself).

- :func:`settings_text` writes a mock-hardware settings file (as ``evsectl demo`` does);
- :class:`Daemon` runs the real ``python -m controller run --config FILE`` in a
  temporary directory and always kills it on the way out;
- ``/proc`` readers for RSS and CPU time, percentiles and a plain-text table.

The scripts run as ``python bench/<name>.py``, so this module is imported as
``_common`` (``bench/`` is ``sys.path[0]``).
"""

from __future__ import annotations

import asyncio
import atexit
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # so `import controller` works without the editable install too
    sys.path.insert(1, str(REPO))

CLK_TCK = os.sysconf("SC_CLK_TCK")
IDENTITY = "CP-BENCH"
#: how long to wait for the daemon to leave after SIGTERM before SIGKILL (idle, no transaction:
#: it has nothing to deliver, so anything beyond a second or so is a hang)
STOP_GRACE_S = 5.0


class BenchError(Exception):
    """Something the benchmark needs did not happen; the message says what."""


# ---------------------------------------------------------------- settings


def settings_text(
    url: str,
    state_dir: Path,
    socket: Path,
    *,
    identity: str = IDENTITY,
    log_level: str = "INFO",
) -> str:
    """A mock-hardware settings file, as ``controller/demo.py`` writes one."""
    return f"""\
[station]
model = "EVlink Pro DC 180"
serial_number = "SN-BENCH-0001"
state_dir = "{state_dir}"

[ocpp]
supervision_url = "{url}"
box_identifier = "{identity}"

[ocpp.keys]
MeterValueSampleInterval = 5
MinimumStatusDuration = 0

[drivers]
meter = "mock"
rfid = "mock"
power = "mock"
platform = "mock"

[rig]
control_socket = "{socket}"

[log]
level = "{log_level}"
"""


# ---------------------------------------------------------------- the daemon


_LIVE: set[subprocess.Popen[bytes]] = set()


def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _LIVE.clear()


atexit.register(_kill_leftovers)


def spawn(cmd: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a helper process (output to ``log_path``); killed at exit if still running."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(cmd), cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _LIVE.add(proc)
    return proc


def end(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> int:
    """SIGTERM a helper process, SIGKILL it after ``grace_s``; returns its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _LIVE.discard(proc)
    return proc.returncode


class Daemon:
    """``python -m controller run`` in its own temporary directory, killed on exit.

    Use as a context manager; :meth:`start` notes ``t_start`` (monotonic and
    wall clock) just before ``Popen``. The daemon's stdout/stderr go to
    ``daemon.log`` in the temporary directory; :meth:`log_tail` shows it when
    something fails.
    """

    def __init__(self, url: str, *, identity: str = IDENTITY, log_level: str = "INFO") -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="evsectl-bench-")
        self.dir = Path(self._tmp.name)
        self.config = self.dir / "evsectl.toml"
        self.log_path = self.dir / "daemon.log"
        self.config.write_text(
            settings_text(url, self.dir / "state", self.dir / "control.sock",
                          identity=identity, log_level=log_level)
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.t_start_mono = 0.0
        self.t_start_wall = 0.0
        self._log_file: Any = None
        self.stop_note = ""  # set when SIGTERM was not enough
        self.stop_s: float | None = None  # how long the daemon took to leave after SIGTERM

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self._log_file = self.log_path.open("wb")
        cmd = [sys.executable, "-m", "controller", "run", "--config", str(self.config)]
        env = {k: v for k, v in os.environ.items() if k != "EVSECTL_CONFIG"}
        self.t_start_wall = time.time()
        self.t_start_mono = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we stop it
        )
        _LIVE.add(self.proc)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(
                f"the daemon exited early with code {self.proc.returncode}\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no daemon log)"
        body = "\n".join("    " + line for line in text[-lines:]) or "    (empty)"
        return f"  last lines of {self.log_path.name}:\n{body}"

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; returns the exit code.

        If the daemon did not leave by itself, :attr:`stop_note` says so.
        """
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.stop_note = (f"the daemon did not exit within {grace_s:g} s of SIGTERM; "
                                  f"killed it (SIGKILL)")
        _LIVE.discard(proc)
        return proc.returncode

    async def astop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """:meth:`stop` without blocking the event loop (the CSMS keeps answering)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            while proc.poll() is None and time.monotonic() < t0 + grace_s:
                await asyncio.sleep(0.02)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                self.stop_note = (f"the daemon did not exit within {grace_s:g} s of SIGTERM; "
                                  f"killed it (SIGKILL)")
            else:
                self.stop_s = time.monotonic() - t0
        _LIVE.discard(proc)
        return proc.returncode

    def close(self) -> None:
        self.stop()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._tmp.cleanup()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def wait_boot(self, csms: Any, since: int = 0, timeout: float = 20.0,
                        identity: str = IDENTITY) -> Any:
        """The BootNotification CallRecord; fails fast if the daemon dies meanwhile."""
        waiting = asyncio.ensure_future(
            csms.wait_for("BootNotification", identity=identity, since=since, timeout=timeout)
        )
        try:
            while not waiting.done():
                self.check_alive()
                await asyncio.wait({waiting}, timeout=0.02)
            try:
                return waiting.result()
            except AssertionError as e:  # CentralSystem's timeout
                raise BenchError(f"no BootNotification within {timeout} s: {e}\n{self.log_tail()}") from None
        finally:
            if not waiting.done():
                waiting.cancel()


# ---------------------------------------------------------------- /proc


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB from /proc/PID/status."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                values[name] = int(value.split()[0])
    return values["VmRSS"], values["VmHWM"]


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads) in clock ticks, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text.rsplit(")", 1)[1].split()  # the comm field may contain spaces
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def cpu_ns(pid: int) -> int | None:
    """CPU time of all threads in ns from /proc/PID/task/*/schedstat (None if unavailable).

    Finer than the 10 ms ticks of /proc/PID/stat; used as a cross-check.
    """
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


# ---------------------------------------------------------------- figures


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (as numpy's default), p in 0..100."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A plain-text table; ``align`` has one 'l' or 'r' per column (default: l then r...)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)).rstrip()

    out = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    out += [fmt(row) for row in cells[1:]]
    return "\n".join(out)


def run_main(coro_fn: Any, *args: Any) -> int:
    """asyncio.run with a clear one-line error and exit code 1 on failure."""
    try:
        return int(asyncio.run(coro_fn(*args)) or 0)
    except BenchError as e:
        print(f"\nbench: FAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        return 130
    finally:
        _kill_leftovers()
