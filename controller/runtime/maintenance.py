"""Executes the core's maintenance commands: firmware download and install, bundle uploads.

The blocking work (transfers, venv creation, tar.gz) runs in threads; results go
back to the core as events. Installing a firmware ends this process: the runtime
leaves with kind "firmware" and the daemon re-executes the new release, which is
on trial until it reaches BootNotification Accepted (``controller.firmware``).
At start, :meth:`MaintenanceRunner.check_trial` decides whether this run is a
new release on trial, the old one back after a failed trial, or a release that
must be rolled back before it does anything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .. import __version__
from ..core import commands as cmd
from ..core import events as ev
from ..diagnostics import build_bundle
from ..firmware import installer

log = logging.getLogger(__name__)

MAX_FIRMWARE_BYTES = 300 * 1024 * 1024
DOWNLOAD_TIMEOUT_S = 60.0


def _system_now() -> datetime:
    """The time base of the trial marker: the system clock, not the daemon's wall clock.

    The wall clock is corrected from the CSMS's currentTime, which the new release
    only learns from its BootNotification answer: measuring the deadline on the
    corrected clock in the old process and on the uncorrected one in the new
    process (before its boot) would stretch the trial, or end it at once, by the
    difference between the two clocks.
    """
    return datetime.now(UTC)


class MaintenanceRunner:
    def __init__(self, runtime: Any, *, state_dir: Path, settings_path: Path, trial_s: float) -> None:
        self.rt = runtime
        self.state_dir = state_dir
        self.settings_path = settings_path
        self.trial_s = trial_s
        self.work_dir = state_dir / "firmware"
        self.next_release: Any = None  # the release to exec when leaving with kind "firmware"
        self.rollback_command: list[str] | None = None
        self._jump = threading.Event()
        runtime.clock.on_jump(self._jump.set)

    # ------------------------------------------------------------ helpers
    def _sleep(self, seconds: float) -> None:
        """A retry wait on the daemon's clock (the rig can make it pass at once)."""
        clock = self.rt.clock
        end = clock.monotonic() + seconds
        while (left := end - clock.monotonic()) > 0:
            self._jump.clear()
            self._jump.wait(min(left, 0.5))

    def _ca_file(self) -> Path | None:
        """The installed CentralSystemRootCertificate(s), trusted for HTTPS besides the system store."""
        security = getattr(self.rt.core, "security", None)
        bundle = security.root_bundle_path("CentralSystemRootCertificate") if security is not None else None
        if bundle is not None:
            return Path(bundle)
        path = self.state_dir / "certs" / "central_system_root.pem"  # placed by an installer by hand
        return path if path.exists() else None

    def run_args(self) -> list[str]:
        return ["run", "--config", str(self.settings_path)]

    # ------------------------------------------------------------ trial
    def check_trial(self) -> list[str] | None:
        """Before anything runs: a command to exec instead (roll back), or None."""
        trial = installer.note_start(self.state_dir)
        if trial is None:
            return None
        if trial.state == "pending" and installer.needs_rollback(trial, _system_now()):
            log.error("firmware %s did not confirm itself: rolling back", trial.new_version)
            return installer.roll_back(self.state_dir)
        self.rt.dispatch(ev.FirmwareTrial(trial.state))
        if trial.state == "pending":
            left = min(self.trial_s, (trial.deadline - _system_now()).total_seconds())
            self.rt.spawn(self._trial_deadline(max(0.0, left)), "firmware trial")
        return None

    async def _trial_deadline(self, seconds: float) -> None:
        clock = self.rt.clock
        end = clock.monotonic() + seconds
        while clock.monotonic() < end:
            await asyncio.sleep(min(0.5, max(0.01, end - clock.monotonic())))
            trial = installer.trial(self.state_dir)
            if trial is None or trial.state != "pending":
                return
        log.error("firmware on trial did not reach BootNotification Accepted in time: rolling back")
        self.rollback_command = installer.roll_back(self.state_dir)
        if not self.rt.leaving.done():
            self.rt.leaving.set_result("rollback")

    # ------------------------------------------------------------ commands
    def execute(self, c: cmd.Command) -> None:
        if isinstance(c, cmd.DownloadFirmware):
            self.rt.spawn(self._download(c), "firmware download")
        elif isinstance(c, cmd.InstallFirmware):
            self.rt.spawn(self._install(c), "firmware install")
        elif isinstance(c, cmd.CommitFirmware):
            trial = installer.trial(self.state_dir)
            if trial is not None and trial.state == "pending" and trial.new_version == __version__:
                installer.commit_trial(self.state_dir)
            installer.clear_trial(self.state_dir)
        elif isinstance(c, cmd.UploadBundle):
            self.rt.spawn(self._upload(c), f"{c.kind} upload")

    async def _download(self, c: cmd.DownloadFirmware) -> None:
        from ..security.signature import (  # lazy: idle RSS (bench/idle.py)
            SignatureError,
            verify_file_signature,
        )
        from ..transfer import TransferError, download, safe_name

        try:
            name = safe_name(unquote(Path(urlsplit(c.location).path).name) or "firmware")
            dest = self.work_dir / name
            self.work_dir.mkdir(parents=True, exist_ok=True)
            result = await asyncio.to_thread(
                download, c.location, dest, max_bytes=MAX_FIRMWARE_BYTES, timeout_s=DOWNLOAD_TIMEOUT_S,
                retries=c.retries, retry_interval_s=c.retry_interval_s, ca_file=self._ca_file(), sleep=self._sleep,
            )
        except (TransferError, ValueError, OSError) as e:
            self.rt.dispatch(ev.FirmwareDownloaded(False, error=str(e)))
            return
        except Exception as e:  # the core waits for the answer to every DownloadFirmware
            log.exception("firmware download failed unexpectedly")
            self.rt.dispatch(ev.FirmwareDownloaded(False, error=f"internal error: {e}"))
            return
        signature_ok, problem = None, None
        if c.signature is not None and c.signing_certificate is not None:
            try:  # R-FW 2: nothing is installed before the signature over the file is checked
                await asyncio.to_thread(verify_file_signature, result.path, c.signature, c.signing_certificate)
                signature_ok = True
            except Exception as e:  # SignatureError, OSError or anything else: not verified
                if not isinstance(e, SignatureError | OSError):
                    log.exception("firmware signature check failed unexpectedly")
                signature_ok, problem = False, str(e)
                result.path.unlink(missing_ok=True)
        self.rt.dispatch(ev.FirmwareDownloaded(True, path=str(result.path), error=problem, signature_ok=signature_ok))

    async def _install(self, c: cmd.InstallFirmware) -> None:
        try:
            artifact = await asyncio.to_thread(installer.inspect_artifact, Path(c.path))
            artifact.cleanup()
            release = await asyncio.to_thread(installer.install_release, Path(c.path), self.state_dir)
            current = installer.current_release(self.state_dir)
            previous = (
                installer.release_command(current, self.run_args()) if current is not None
                else installer.running_command()
            )
            installer.begin_trial(
                self.state_dir, previous, release.version, _system_now() + timedelta(seconds=self.trial_s)
            )
            installer.switch_to(self.state_dir, release)
        except (installer.FirmwareError, OSError) as e:
            self.rt.dispatch(ev.FirmwareInstallFailed(str(e)))
            return
        log.warning("firmware %s installed; restarting into it", release.version)
        self.next_release = release
        if not self.rt.leaving.done():
            self.rt.leaving.set_result("firmware")

    async def _upload(self, c: cmd.UploadBundle) -> None:
        from ..transfer import TransferError, safe_name, upload  # lazy: idle RSS (bench/idle.py)

        try:
            bundle = self.work_dir / "outgoing" / safe_name(c.file_name)
            summary = self.rt.core.snapshot()
            await asyncio.to_thread(
                build_bundle, bundle, kind=c.kind, state_dir=self.state_dir, settings_path=self.settings_path,
                summary=summary, start=c.start, stop=c.stop,
            )
            await asyncio.to_thread(
                upload, c.location, bundle, timeout_s=DOWNLOAD_TIMEOUT_S, retries=c.retries,
                retry_interval_s=c.retry_interval_s, ca_file=self._ca_file(), sleep=self._sleep,
            )
        except (TransferError, ValueError, OSError) as e:
            self.rt.dispatch(ev.UploadFinished(c.kind, c.request_id, False, str(e)))
            return
        finally:
            try:
                os.unlink(self.work_dir / "outgoing" / safe_name(c.file_name))
            except (OSError, TransferError):
                pass
        self.rt.dispatch(ev.UploadFinished(c.kind, c.request_id, True))
