"""R-FW 1/3 and R-TRIG over the wire: firmware updates, diagnostics and log uploads.

The real daemon (``python -m controller run``, mock drivers, simulated clock)
talks to our CSMS on 127.0.0.1 and fetches from / sends to real servers started
here on 127.0.0.1 (``file_servers``): HTTP, HTTPS with a test CA (installed as
``<state>/certs/central_system_root.pem``) and FTP with credentials in the URL.

The firmware is this software: release artifacts of the project are built once
per module with ``tools/build_release.py`` (0.2.0, and a broken 0.2.1 whose
BootNotification breaks the schema so it never goes out); installing one makes
the daemon process re-execute itself into ``<state>/releases/<version>/venv``
(same pid), which must reach BootNotification Accepted within
``[firmware] trial_s`` or the previous version comes back.

Every FirmwareStatusNotification / DiagnosticsStatusNotification /
LogStatusNotification sequence is compared message by message with what the
CSMS received.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import REPO, Daemon, kill_all
from file_servers import FTP_PASSWORD, FTP_QPASSWORD

from controller import __version__
from controller.csms import CentralSystem

BOX = "CP-TEST"
FW = "FirmwareStatusNotification"
DIAG = "DiagnosticsStatusNotification"
LOG = "LogStatusNotification"
AUTH_KEY = "00112233445566778899aabbccddeeff"
GOOD_VERSION = "0.2.0"
BROKEN_VERSION = "0.2.1"
TOOL = REPO / "tools" / "build_release.py"

pytestmark = pytest.mark.timeout(120)
pytest_plugins = ["file_servers"]  # web, tls_web, untrusted_web, pki, ftp, tarpit, closed_port


# --------------------------------------------------------------------------- artifacts


def _load_tool() -> Any:
    spec = importlib.util.spec_from_file_location("build_release", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(*args: str) -> Path:
    done = subprocess.run([sys.executable, str(TOOL), "--no-index", *args], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_file()
    return path


@dataclass(frozen=True)
class Artifacts:
    good: bytes  # evsectl 0.2.0
    good_name: str
    broken: bytes  # evsectl 0.2.1: its BootNotification never goes out
    broken_name: str


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """The wheels of 0.2.0 (good) and 0.2.1 (its BootNotification is schema-invalid), by file name."""
    root = tmp_path_factory.mktemp("artifacts")
    good = _build("--out", str(root / "good"), "--version", GOOD_VERSION)
    broken_src = _load_tool().copy_source(REPO, root / "src-broken")
    charger = broken_src / "controller" / "core" / "charger.py"
    text = charger.read_text()
    original = '"chargePointVendor": self.model.charge_point_vendor,'
    assert original in text
    # 30 characters: over CiString20Type, so the ocpp library refuses to send the CALL
    charger.write_text(text.replace(original, '"chargePointVendor": "V" * 30,'))
    broken = _build("--source", str(broken_src), "--out", str(root / "broken"), "--version", BROKEN_VERSION)
    return Artifacts(good.read_bytes(), good.name, broken.read_bytes(), broken.name)


# --------------------------------------------------------------------------- helpers


def now_text(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def statuses(csms: CentralSystem, action: str, since: int) -> list[str]:
    return [r.payload["status"] for r in csms.calls(action) if r.seq > since]


async def sequence(csms: CentralSystem, action: str, since: int, last: str, *,
                   timeout: float = 20.0, settle: float = 0.3) -> list[dict[str, Any]]:
    """Payloads of every ``action`` since ``since``, once one with status ``last`` came (and a moment more)."""
    await csms.wait_for(action, since=since, predicate=lambda r: r.payload["status"] == last, timeout=timeout)
    await asyncio.sleep(settle)
    return [r.payload for r in csms.calls(action) if r.seq > since]


def cmdline(pid: int) -> list[str]:
    """The argv of a process (read again while it is empty: the moment of an exec)."""
    end = time.monotonic() + 5
    while not (raw := Path(f"/proc/{pid}/cmdline").read_bytes()) and time.monotonic() < end:
        time.sleep(0.01)
    return raw.decode().split("\0")[:-1] or [""]


def try_rig(d: Daemon, **message: Any) -> bool:
    """A rig command that may meet the daemon between two programs (exec)."""
    try:
        d.rig(**message)
        return True
    except Exception:  # noqa: BLE001 - the socket comes and goes around an exec
        return False


async def wait_log(d: Daemon, needle: str, count: int = 1, timeout: float = 10.0) -> None:
    """Until the daemon's output holds ``needle`` ``count`` times."""
    end = time.monotonic() + timeout
    while d.log_path.read_text(errors="replace").count(needle) < count:
        assert time.monotonic() < end, f"{needle!r} x{count} never logged:\n{d.log_tail()}"
        await asyncio.sleep(0.02)


class QuickTimeoutDaemon(Daemon):
    """The daemon with its 60 s transfer timeout cut to 2 s (test-only injection: the
    timeout is a constant of controller.runtime.maintenance, not a setting)."""

    BOOT = ("import sys, controller.runtime.maintenance as m; m.DOWNLOAD_TIMEOUT_S = 2.0; "
            "from controller.cli import main; sys.exit(main(sys.argv[1:]))")

    def _open_log(self) -> Any:
        log = self.log_path.open("ab")
        log.write(f"\n===== run {self.runs} =====\n".encode())
        log.flush()
        return log

    async def start(self, wait_socket: bool = True) -> None:
        self.runs += 1
        log = self._open_log()
        env = {**os.environ, "EVSECTL_CONFIG": str(self.config), "PYTHONUNBUFFERED": "1"}
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", self.BOOT, "run", "--config", str(self.config),
                stdout=log, stderr=log, env=env, cwd=str(REPO),
            )
        finally:
            log.close()
        if wait_socket:
            await self.wait_ready()


@pytest.fixture
async def boot(csms: CentralSystem, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await boot(ca=None, quick_timeout=False, seed_logs=None, **settings)``: a daemon, boot accepted."""
    made: list[Daemon] = []

    async def start(*, ca: Path | None = None, quick_timeout: bool = False, seed_logs: str | None = None,
                    **settings: Any) -> Daemon:
        work = tmp_path / f"daemon{len(made)}"
        work.mkdir()
        d = (QuickTimeoutDaemon if quick_timeout else Daemon)(work, csms.url, **settings)
        made.append(d)
        if ca is not None:
            (d.state_dir / "certs").mkdir(parents=True)
            (d.state_dir / "certs" / "central_system_root.pem").write_bytes(ca.read_bytes())
        if seed_logs is not None:
            (d.state_dir / "logs").mkdir(parents=True)
            (d.state_dir / "logs" / "evsectl.log").write_text(seed_logs)
        await d.start_booted(csms, BOX)
        return d

    yield start
    await kill_all(made)


async def update_firmware(csms: CentralSystem, location: str, *, retrieve_in_s: float = 0,
                          retries: int | None = None, retry_interval: int | None = None) -> None:
    payload: dict[str, Any] = {"location": location, "retrieveDate": now_text(retrieve_in_s)}
    if retries is not None:
        payload["retries"] = retries
    if retry_interval is not None:
        payload["retryInterval"] = retry_interval
    assert await csms.call(BOX, "UpdateFirmware", payload) == {}


async def assert_running_version_untouched(d: Daemon, csms: CentralSystem, pid: int, argv: list[str]) -> None:
    """Same process, same program, no release in force, BootNotification still says our version."""
    assert d.proc is not None and d.proc.pid == pid and d.proc.returncode is None
    assert cmdline(pid) == argv
    assert not (d.state_dir / "current").exists() and not (d.state_dir / "current").is_symlink()
    mark = csms.mark()
    assert await csms.call(BOX, "TriggerMessage", {"requestedMessage": "BootNotification"}) == {
        "status": "Accepted"}
    again = await csms.wait_for("BootNotification", since=mark)
    assert again.payload["firmwareVersion"] == __version__


def assert_ftp_password_not_logged(d: Daemon) -> None:
    """The daemon's own log lines show FTP URLs with the password replaced (the raw frames the
    ocpp library logs at DEBUG level are left out of this check)."""
    for line in (d.state_dir / "logs" / "evsectl.log").read_text(errors="replace").splitlines():
        if " ocpp: " not in line:
            assert FTP_PASSWORD not in line and FTP_QPASSWORD not in line, line


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


# --------------------------------------------------------------------------- UpdateFirmware end to end


async def _install_end_to_end(d: Daemon, csms: CentralSystem, location: str) -> None:
    """retrieveDate an hour ahead: nothing until the clock gets there; then the whole sequence,
    the process re-executes 0.2.0, which boots with its version and reports Installed."""
    assert d.proc is not None
    pid = d.proc.pid
    mark = csms.mark()
    await update_firmware(csms, location, retrieve_in_s=3600)
    await asyncio.sleep(0.6)
    assert statuses(csms, FW, mark) == []  # waiting for retrieveDate
    d.advance(3601)
    payloads = await sequence(csms, FW, mark, "Installed", timeout=60)
    assert payloads == [{"status": s} for s in ("Downloading", "Downloaded", "Installing", "Installed")]
    fw = [r for r in csms.calls(FW) if r.seq > mark]
    boots = [r for r in csms.calls("BootNotification") if r.seq > mark]
    assert [b.payload["firmwareVersion"] for b in boots] == [GOOD_VERSION]
    assert fw[2].seq < boots[0].seq < fw[3].seq  # Installing, the new version boots, Installed
    # the same process, now the release's interpreter; `current` points at it; trial over
    assert d.proc.pid == pid and d.proc.returncode is None
    assert cmdline(pid)[0] == str(d.state_dir / "releases" / GOOD_VERSION / "venv" / "bin" / "python")
    assert os.readlink(d.state_dir / "current") == f"releases/{GOOD_VERSION}"
    end = time.monotonic() + 5
    while (d.state_dir / "firmware" / "trial.json").exists():
        assert time.monotonic() < end, "the trial marker was never cleared"
        await asyncio.sleep(0.05)
    # nothing runs any more: a triggered FirmwareStatusNotification says Idle
    mark = csms.mark()
    assert await csms.call(BOX, "TriggerMessage", {"requestedMessage": FW}) == {"status": "Accepted"}
    assert (await csms.wait_for(FW, since=mark)).payload == {"status": "Idle"}
    csms.assert_clean(BOX)


async def test_r_fw_1_3_update_firmware_over_http_installs_and_boots_the_new_release(
        boot, csms, web, artifacts):
    web.state.files[artifacts.good_name] = artifacts.good
    d = await boot()
    await _install_end_to_end(d, csms, web.url(f"/fw/{artifacts.good_name}"))
    assert web.state.count(f"/fw/{artifacts.good_name}") == 1


async def test_r_fw_1_3_update_firmware_over_https_with_the_installed_root(
        boot, csms, tls_web, pki, artifacts):
    tls_web.state.files["release.whl"] = artifacts.good  # any file name: the content decides
    d = await boot(ca=pki.ca)
    await _install_end_to_end(d, csms, tls_web.url("/fw/release.whl"))
    assert tls_web.state.count("/fw/release.whl") == 1


async def test_r_fw_1_3_update_firmware_over_ftp_with_credentials_in_the_url(boot, csms, ftp, artifacts):
    (ftp.root / "fw" / artifacts.good_name).write_bytes(artifacts.good)
    d = await boot()
    await _install_end_to_end(d, csms, ftp.url(f"/fw/{artifacts.good_name}"))
    assert_ftp_password_not_logged(d)


async def test_r_fw_3_a_release_that_never_reaches_accepted_is_rolled_back(boot, csms, web, artifacts):
    web.state.files[artifacts.broken_name] = artifacts.broken
    d = await boot(extra="\n[firmware]\ntrial_s = 10\n")
    assert d.proc is not None
    pid, argv = d.proc.pid, cmdline(d.proc.pid)
    mark = csms.mark()
    await update_firmware(csms, web.url(f"/fw/{artifacts.broken_name}"))
    await csms.wait_for(FW, since=mark, predicate=lambda r: r.payload["status"] == "Installing")
    new_python = str(d.state_dir / "releases" / BROKEN_VERSION / "venv" / "bin" / "python")
    end = time.monotonic() + 60
    while cmdline(pid)[0] != new_python:  # installing, then exec into 0.2.1
        assert time.monotonic() < end, f"0.2.1 never started:\n{d.log_tail()}"
        await asyncio.sleep(0.05)
    # 0.2.1 cannot send its BootNotification; make its trial time pass (its sim clock
    # starts afresh after the exec: advance until it gives up)
    end = time.monotonic() + 30
    while cmdline(pid)[0] == new_python:
        assert time.monotonic() < end, f"0.2.1 was never rolled back:\n{d.log_tail()}"
        try_rig(d, cmd="clock-advance", seconds=30)
        await asyncio.sleep(0.3)
    payloads = await sequence(csms, FW, mark, "InstallationFailed", timeout=30)
    assert payloads == [{"status": s} for s in ("Downloading", "Downloaded", "Installing", "InstallationFailed")]
    boots = [r for r in csms.calls("BootNotification") if r.seq > mark]
    assert [b.payload["firmwareVersion"] for b in boots] == [__version__]  # 0.2.1 never got one out
    fw = [r for r in csms.calls(FW) if r.seq > mark]
    assert fw[2].seq < boots[0].seq < fw[3].seq
    assert not (d.state_dir / "firmware" / "trial.json").exists()
    await assert_running_version_untouched(d, csms, pid, argv)
    csms.assert_clean(BOX)


async def test_r_fw_3_the_trial_does_not_depend_on_the_csms_clock_being_behind(boot, csms, web, artifacts):
    """The CSMS clock is an hour behind the charger's system clock: a good release still
    gets its trial (it is not rolled back at its first start)."""
    csms.respond("BootNotification", {"status": "Accepted", "currentTime": now_text(-3600)})
    web.state.files[artifacts.good_name] = artifacts.good
    d = await boot()
    assert d.proc is not None
    pid = d.proc.pid
    mark = csms.mark()
    await update_firmware(csms, web.url(f"/fw/{artifacts.good_name}"), retrieve_in_s=-3600)
    last = await csms.wait_for(FW, since=mark, timeout=60, predicate=lambda r: r.payload["status"] in (
        "Installed", "InstallationFailed"))
    await asyncio.sleep(0.3)
    assert statuses(csms, FW, mark) == ["Downloading", "Downloaded", "Installing", "Installed"], last
    boots = [r for r in csms.calls("BootNotification") if r.seq > mark]
    assert [b.payload["firmwareVersion"] for b in boots] == [GOOD_VERSION]
    assert cmdline(pid)[0] == str(d.state_dir / "releases" / GOOD_VERSION / "venv" / "bin" / "python")


async def test_r_fw_3_the_trial_is_bounded_when_the_csms_clock_is_ahead(boot, csms, web, artifacts):
    """The CSMS clock is an hour ahead of the charger's system clock: a release that never
    reaches Accepted is still rolled back after about trial_s, not after an hour more."""
    csms.respond("BootNotification", {"status": "Accepted", "currentTime": now_text(3600)})
    web.state.files[artifacts.broken_name] = artifacts.broken
    d = await boot(extra="\n[firmware]\ntrial_s = 10\n")
    assert d.proc is not None
    pid = d.proc.pid
    mark = csms.mark()
    await update_firmware(csms, web.url(f"/fw/{artifacts.broken_name}"), retrieve_in_s=3600)
    await csms.wait_for(FW, since=mark, predicate=lambda r: r.payload["status"] == "Installing")
    new_python = str(d.state_dir / "releases" / BROKEN_VERSION / "venv" / "bin" / "python")
    end = time.monotonic() + 60
    while cmdline(pid)[0] != new_python:
        assert time.monotonic() < end, f"0.2.1 never started:\n{d.log_tail()}"
        await asyncio.sleep(0.05)
    advanced = 0
    end = time.monotonic() + 15
    while cmdline(pid)[0] == new_python:
        assert time.monotonic() < end, f"0.2.1 not rolled back after {advanced} s:\n{d.log_tail()}"
        if advanced < 60 and try_rig(d, cmd="clock-advance", seconds=5):
            advanced += 5
        await asyncio.sleep(0.3)
    payloads = await sequence(csms, FW, mark, "InstallationFailed", timeout=30)
    assert payloads == [{"status": s} for s in ("Downloading", "Downloaded", "Installing", "InstallationFailed")]


async def test_r_fw_3_an_invalid_artifact_is_installation_failed_and_nothing_changes(boot, csms, web):
    web.state.files["evsectl-9.9.9-py3-none-any.whl"] = os.urandom(50_000)
    d = await boot()
    assert d.proc is not None
    pid, argv = d.proc.pid, cmdline(d.proc.pid)
    mark = csms.mark()
    await update_firmware(csms, web.url("/fw/evsectl-9.9.9-py3-none-any.whl"))
    payloads = await sequence(csms, FW, mark, "InstallationFailed", settle=0.5)
    assert payloads == [{"status": s} for s in ("Downloading", "Downloaded", "Installing", "InstallationFailed")]
    assert [r for r in csms.calls("BootNotification") if r.seq > mark] == []  # no restart
    assert not (d.state_dir / "releases" / "9.9.9").exists()
    await assert_running_version_untouched(d, csms, pid, argv)


async def test_r_fw_1_install_waits_for_the_running_transaction(boot, csms, web):
    """Downloaded during a transaction; Installing only after its StopTransaction."""
    web.state.files["fw.whl"] = os.urandom(20_000)  # not an artifact: no restart to wait for
    d = await boot()
    d.plug(1)
    d.badge("TAG")
    await csms.wait_for("StartTransaction")
    await d.until(lambda s: s["connectors"][0]["transaction_id"] is not None, what="transaction")
    mark = csms.mark()
    await update_firmware(csms, web.url("/fw/fw.whl"))
    await csms.wait_for(FW, since=mark, predicate=lambda r: r.payload["status"] == "Downloaded")
    d.advance(120)
    await asyncio.sleep(0.6)
    assert statuses(csms, FW, mark) == ["Downloading", "Downloaded"]
    assert await csms.call(BOX, "TriggerMessage", {"requestedMessage": FW}) == {"status": "Accepted"}
    await csms.wait_for(FW, since=mark, predicate=lambda r: len(statuses(csms, FW, mark)) == 3)
    stop_mark = csms.mark()
    d.badge("TAG")
    stop = await csms.wait_for("StopTransaction", since=stop_mark)
    payloads = await sequence(csms, FW, mark, "InstallationFailed")
    assert payloads == [{"status": s} for s in
                        ("Downloading", "Downloaded", "Downloaded", "Installing", "InstallationFailed")]
    installing = next(r for r in csms.calls(FW) if r.seq > mark and r.payload["status"] == "Installing")
    assert installing.seq > stop.seq


# --------------------------------------------------------------------------- download failures


@pytest.mark.parametrize("case", ["404", "refused", "timeout", "wrong_certificate", "too_large"])
async def test_r_fw_1_download_failures_end_in_download_failed(
        case, boot, csms, web, untrusted_web, pki, closed_port, tarpit, artifacts):
    """retries=1, retryInterval=30: a transient failure (refused, timeout) is tried again once the
    interval has passed on the daemon's clock; a final one (404, certificate, size) is not."""
    untrusted_web.state.files["fw.whl"] = artifacts.good
    location, server, path, transient = {
        "404": (web.url("/fw/absent.whl"), web, "/fw/absent.whl", False),
        "refused": (f"http://127.0.0.1:{closed_port}/fw/fw.whl", None, None, True),
        "timeout": (f"http://127.0.0.1:{tarpit}/fw/fw.whl", None, None, True),
        "wrong_certificate": (untrusted_web.url("/fw/fw.whl"), untrusted_web, "/fw/fw.whl", False),
        "too_large": (web.url("/huge/fw.whl"), web, "/huge/fw.whl", False),
    }[case]
    d = await boot(ca=pki.ca, quick_timeout=case == "timeout")
    assert d.proc is not None
    pid, argv = d.proc.pid, cmdline(d.proc.pid)
    mark = csms.mark()
    await update_firmware(csms, location, retries=1, retry_interval=30)
    if transient:
        await wait_log(d, "retrying in 30 s")
        await csms.wait_for(FW, since=mark)
        await asyncio.sleep(0.3)
        assert statuses(csms, FW, mark) == ["Downloading"]  # still trying
        d.advance(30)
    payloads = await sequence(csms, FW, mark, "DownloadFailed", timeout=15)
    assert payloads == [{"status": "Downloading"}, {"status": "DownloadFailed"}]
    await wait_log(d, f"failed after {2 if transient else 1} attempt(s)")
    if server is not None:
        # a final failure is not retried; a TLS failure never gets to send the request
        assert server.state.count(path) == (0 if case == "wrong_certificate" else 1)
    assert list((d.state_dir / "firmware").glob("fw.whl*")) == []  # nothing half-written left
    await assert_running_version_untouched(d, csms, pid, argv)


async def test_r_fw_1_retries_and_retry_interval_are_honoured(boot, csms, web):
    d = await boot()
    path = "/busy/fw.whl"
    mark = csms.mark()
    await update_firmware(csms, web.url(path), retries=2, retry_interval=30)
    await csms.wait_for(FW, since=mark, predicate=lambda r: r.payload["status"] == "Downloading")
    await wait_log(d, "retrying in 30 s", 1)
    assert web.state.count(path) == 1
    d.advance(20)  # not yet
    await asyncio.sleep(0.8)
    assert web.state.count(path) == 1
    d.advance(10)
    await wait_log(d, "retrying in 30 s", 2)
    assert web.state.count(path) == 2
    await asyncio.sleep(0.8)
    assert web.state.count(path) == 2 and statuses(csms, FW, mark) == ["Downloading"]
    d.advance(30)
    payloads = await sequence(csms, FW, mark, "DownloadFailed")
    assert payloads == [{"status": "Downloading"}, {"status": "DownloadFailed"}]
    assert web.state.count(path) == 3  # 1 + retries


# --------------------------------------------------------------------------- bad input


async def test_r_fw_1_bad_locations_fail_and_leave_the_running_version(boot, csms, web, tmp_path):
    web.state.files["fw.whl"] = b"x" * 100
    d = await boot()
    assert d.proc is not None
    pid, argv = d.proc.pid, cmdline(d.proc.pid)
    port = web.port
    cases = [
        ("file:///etc/passwd", ["DownloadFailed"]),  # unsupported scheme: never downloads
        ("not a url", ["DownloadFailed"]),  # malformed
        (f"http://[127.0.0.1:{port}/fw/fw.whl", ["Downloading", "DownloadFailed"]),  # malformed host
        (f"http://127.0.0.1:{port}/fw/..%2F..%2Fescaped.whl", ["Downloading", "DownloadFailed"]),
        (f"http://127.0.0.1:{port}/fw/..", ["Downloading", "DownloadFailed"]),
        (f"http://127.0.0.1:{port}/../../escaped.whl", ["Downloading", "DownloadFailed"]),
    ]
    for location, expected in cases:
        mark = csms.mark()
        await update_firmware(csms, location)
        payloads = await sequence(csms, FW, mark, "DownloadFailed")
        assert payloads == [{"status": s} for s in expected], location
    # names that escape the download folder are refused before any request is made
    assert web.state.count("/fw/..%2F..%2Fescaped.whl") == 0 and web.state.count("/fw/..") == 0
    assert [p.name for p in tmp_path.rglob("escaped.whl*")] == []
    assert sorted(p.name for p in (d.state_dir / "firmware").iterdir()) == []
    await assert_running_version_untouched(d, csms, pid, argv)

    # GetDiagnostics / GetLog with an unsupported scheme
    mark = csms.mark()
    assert await csms.call(BOX, "GetDiagnostics", {"location": "file:///etc/passwd"}) == {}
    assert await sequence(csms, DIAG, mark, "UploadFailed") == [{"status": "UploadFailed"}]
    mark = csms.mark()
    answer = await csms.call(BOX, "GetLog", {"logType": "DiagnosticsLog", "requestId": 7,
                                            "log": {"remoteLocation": "file:///etc/passwd"}})
    assert answer == {"status": "Rejected"}
    assert await sequence(csms, LOG, mark, "BadMessage") == [{"status": "BadMessage", "requestId": 7}]
    csms.assert_clean(BOX)


# --------------------------------------------------------------------------- GetDiagnostics

OLD_LINE = "2001-01-01T00:00:00.000Z INFO seed: OLD-LINE-OUTSIDE-THE-WINDOW\n"
FUTURE_LINE = "2099-01-01T00:00:00.000Z INFO seed: FUTURE-LINE-OUTSIDE-THE-WINDOW\n"


def _check_diagnostics_bundle(data: bytes) -> None:
    files = members(data)
    assert {"evsectl.log", "security.log", "evsectl.toml", "state.json", "versions.json"} <= set(files)
    log = files["evsectl.log"].decode()
    assert "BootNotification accepted" in log
    assert "OLD-LINE-OUTSIDE-THE-WINDOW" not in log and "FUTURE-LINE-OUTSIDE-THE-WINDOW" not in log
    toml = files["evsectl.toml"].decode()
    assert "AuthorizationKey" in toml and AUTH_KEY not in toml
    assert AUTH_KEY not in "".join(v.decode(errors="replace") for v in files.values())
    state = json.loads(files["state.json"])
    assert state["link"] == "connected" and state["box_identifier"] == BOX
    assert json.loads(files["versions.json"])["evsectl"] == __version__


def _window() -> dict[str, str]:
    return {"startTime": now_text(-600), "stopTime": now_text(600)}


async def test_r_fw_1_get_diagnostics_to_ftp(boot, csms, ftp):
    d = await boot(keys={"AuthorizationKey": AUTH_KEY}, seed_logs=OLD_LINE + FUTURE_LINE)
    mark = csms.mark()
    answer = await csms.call(BOX, "GetDiagnostics", {"location": ftp.url("/incoming/"), **_window()})
    name = answer["fileName"]
    assert name.startswith(f"{BOX}-diagnostics-") and name.endswith(".tar.gz")
    assert await sequence(csms, DIAG, mark, "Uploaded") == [{"status": "Uploading"}, {"status": "Uploaded"}]
    _check_diagnostics_bundle((ftp.root / "incoming" / name).read_bytes())
    assert_ftp_password_not_logged(d)
    mark = csms.mark()
    assert await csms.call(BOX, "TriggerMessage", {"requestedMessage": DIAG}) == {"status": "Accepted"}
    assert (await csms.wait_for(DIAG, since=mark)).payload == {"status": "Idle"}


async def test_r_fw_1_get_diagnostics_to_http_and_upload_failure(boot, csms, web):
    await boot(keys={"AuthorizationKey": AUTH_KEY}, seed_logs=OLD_LINE + FUTURE_LINE)
    mark = csms.mark()
    answer = await csms.call(BOX, "GetDiagnostics", {"location": web.url("/upload"), **_window()})
    name = answer["fileName"]
    assert await sequence(csms, DIAG, mark, "Uploaded") == [{"status": "Uploading"}, {"status": "Uploaded"}]
    assert list(web.state.uploads) == [name]
    _check_diagnostics_bundle(web.state.uploads[name])

    mark = csms.mark()
    answer = await csms.call(BOX, "GetDiagnostics", {"location": web.url("/upload-broken")})
    assert answer["fileName"].endswith(".tar.gz")
    assert await sequence(csms, DIAG, mark, "UploadFailed") == [{"status": "Uploading"}, {"status": "UploadFailed"}]
    assert web.state.count("/upload-broken", "POST") == 1
    assert list(web.state.uploads) == [name]  # nothing more arrived


# --------------------------------------------------------------------------- GetLog and triggers


async def test_r_fw_1_get_log_diagnostics_and_security_logs(boot, csms, web, tls_web, pki, ftp):
    await boot(ca=pki.ca, keys={"AuthorizationKey": AUTH_KEY})
    # DiagnosticsLog over HTTP
    mark = csms.mark()
    answer = await csms.call(BOX, "GetLog", {
        "logType": "DiagnosticsLog", "requestId": 11,
        "log": {"remoteLocation": web.url("/upload"), "oldestTimestamp": now_text(-600),
                "latestTimestamp": now_text(600)}})
    assert answer["status"] == "Accepted"
    name = answer["filename"]
    assert name.startswith(f"{BOX}-DiagnosticsLog-") and name.endswith(".tar.gz")
    assert await sequence(csms, LOG, mark, "Uploaded") == [
        {"status": "Uploading", "requestId": 11}, {"status": "Uploaded", "requestId": 11}]
    files = members(web.state.uploads[name])
    assert "BootNotification accepted" in files["evsectl.log"].decode()
    assert AUTH_KEY not in files["evsectl.toml"].decode()

    # SecurityLog over HTTPS (the installed root) and over FTP
    for request_id, location in ((12, tls_web.url("/upload")), (13, ftp.url("/incoming/"))):
        mark = csms.mark()
        answer = await csms.call(BOX, "GetLog", {
            "logType": "SecurityLog", "requestId": request_id, "log": {"remoteLocation": location}})
        assert answer["status"] == "Accepted", location
        name = answer["filename"]
        assert name.startswith(f"{BOX}-SecurityLog-")
        assert await sequence(csms, LOG, mark, "Uploaded") == [
            {"status": "Uploading", "requestId": request_id}, {"status": "Uploaded", "requestId": request_id}]
        data = tls_web.state.uploads[name] if location.startswith("https") else (
            ftp.root / "incoming" / name).read_bytes()
        files = members(data)
        assert set(files) == {"security.log", "versions.json"}
        assert f"StartupOfTheDevice firmware {__version__}" in files["security.log"].decode()

    # an upload that fails
    mark = csms.mark()
    answer = await csms.call(BOX, "GetLog", {
        "logType": "SecurityLog", "requestId": 14, "log": {"remoteLocation": web.url("/upload-broken")}})
    assert answer["status"] == "Accepted"
    assert await sequence(csms, LOG, mark, "UploadFailure") == [
        {"status": "Uploading", "requestId": 14}, {"status": "UploadFailure", "requestId": 14}]

    # a location that is not a URL
    mark = csms.mark()
    answer = await csms.call(BOX, "GetLog", {
        "logType": "SecurityLog", "requestId": 15, "log": {"remoteLocation": "::not a url::"}})
    assert answer == {"status": "Rejected"}
    assert await sequence(csms, LOG, mark, "BadMessage") == [{"status": "BadMessage", "requestId": 15}]
    csms.assert_clean(BOX)


async def test_r_trig_firmware_and_diagnostics_status_are_idle_when_nothing_runs(boot, csms):
    await boot()
    for action in (FW, DIAG):
        mark = csms.mark()
        assert await csms.call(BOX, "TriggerMessage", {"requestedMessage": action}) == {"status": "Accepted"}
        assert await sequence(csms, action, mark, "Idle") == [{"status": "Idle"}], action
    csms.assert_clean(BOX)




async def test_r_trig_extended_trigger_log_status_notification_is_idle(boot, csms):
    await boot()
    mark = csms.mark()
    assert await csms.call(BOX, "ExtendedTriggerMessage", {"requestedMessage": LOG}) == {"status": "Accepted"}
    assert await sequence(csms, LOG, mark, "Idle", timeout=3) == [{"status": "Idle"}]


async def test_r_trig_extended_trigger_signed_firmware_status_notification_is_idle(boot, csms):
    await boot()
    mark = csms.mark()
    assert await csms.call(BOX, "ExtendedTriggerMessage", {"requestedMessage": FW}) == {"status": "Accepted"}
    assert await sequence(csms, "SignedFirmwareStatusNotification", mark, "Idle", timeout=3) == [
        {"status": "Idle"}]
