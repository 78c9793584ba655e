"""Composition root: settings -> state store -> drivers -> core -> runtime -> link.

Also owns the daemon's life cycle: start-up errors that refuse to start
(bad settings, unknown driver, unusable state database), SIGTERM/SIGINT
(stop running transactions with reason Reboot, deliver what can be delivered,
leave cleanly), resets (re-exec in place, or a platform reboot) and the
power-fail exit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers import interfaces as hw
from drivers import registry

from . import __version__
from .config import Settings, seed_values
from .core import events as ev
from .core.charger import Charger, Identity
from .core.keys import KeyStore
from .diagnostics import RedactingFormatter, attach_file_logs
from .firmware import installer
from .ipc.server import HmiServer
from .journal import JournalHandler, under_journal
from .ocpp.link import CsmsLink, error_code_of
from .rig.server import ControlServer
from .runtime import sdnotify
from .runtime.clock import SimClock, SystemClock
from .runtime.loop import DRAIN_S, HOLD_UP_S, Runtime, reexec
from .runtime.maintenance import MaintenanceRunner
from .runtime.pictures import PictureStore, attach_pictures
from .store.sqlite import Store

log = logging.getLogger(__name__)

#: how long SIGTERM waits for running transactions to be stopped and stored
STOP_GRACE_S = 10.0
DB_NAME = "evsectl.sqlite"
#: where the state held in memory goes at exit when the state disk never came back:
#: the runtime directory (/run/evsectl: another file system; gone at a reboot)
SPILL_NAME = "evsectl.sqlite.held"
#: the vendor DTC reported while the state database cannot be written
#: ("Abnormal SD card of terminal warning", InternalError, an alarm: charging goes on)
STORAGE_DTC = "0x100009"
#: how often (real seconds) a store holding its state in memory looks at the disk
#: when no write comes by to do it
STORAGE_PROBE_S = 1.0
#: exit code of a start-up refusal that may pass by itself (disk full, read-only or
#: failing file system): systemd restarts; every other refusal exits 3 (an operator acts)
EXIT_TEMPFAIL = 75


def read_config_error(state_dir: Path) -> str | None:
    """The refusal the first-boot step recorded for a settings file on the boot partition."""
    try:
        record = json.loads((state_dir / "config-error.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    where = f"{record.get('file', 'evsectl.toml')}:{record.get('line') or '?'}"
    log.error("configuration error in %s: %s %s", where, record.get("key"), record.get("message"))
    return f"{where}: {record.get('key') or ''}: {record.get('message') or ''}".strip()


class StartupError(Exception):
    """The daemon refuses to start; the message says why and what to do.

    ``exit_code``: 3 when an operator must act, :data:`EXIT_TEMPFAIL` when the
    cause may pass by itself (systemd restarts the service then).
    """

    def __init__(self, message: str, *, exit_code: int = 3) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Daemon:
    """One run of the charger daemon, from open to close."""

    def __init__(self, settings: Settings, *, clock: Any = None) -> None:
        self.settings = settings
        self.clock = clock or (SimClock() if settings.sim_clock else SystemClock())
        self.store: Store | None = None
        self.runtime: Runtime | None = None
        self.control: ControlServer | None = None
        self.link: CsmsLink | None = None
        self.maintenance: MaintenanceRunner | None = None
        self.hmi: HmiServer | None = None
        self.pictures: PictureStore | None = None

    async def open(self) -> None:
        s = self.settings
        from .store.sqlite import StoreError

        try:
            self.store = Store.open(s.state_dir / DB_NAME, spill=s.control_socket.parent / SPILL_NAME)
        except StoreError as e:
            raise StartupError(str(e), exit_code=EXIT_TEMPFAIL if e.transient else 3) from None
        attach_file_logs(s.state_dir)
        keys = KeyStore(s.model.key_values(), seeds=seed_values(s), persisted=self.store.keys())
        for warning in keys.warnings:
            log.warning("configuration: %s", warning)
        certificates = LazyCertificateStore(
            s.state_dir / "certs", max_entries=int(keys.get_int("CertificateStoreMaxLength")),
            max_chain=int(keys.get_int("CertificateSignedMaxChain")), clock=self.clock.wall,
        )
        core = Charger(
            model=s.model, keys=keys, store=self.store, clock=self.clock,
            identity=Identity(s.serial_number, __version__), vendor_ids=s.vendor_ids, rand=random.random,
            security=certificates, max_queued_messages=s.max_queued_messages,
        )
        core.config_error = read_config_error(s.state_dir)
        self.runtime = Runtime(core, {}, self.clock, error_code_of=error_code_of)
        self.runtime.bind_loop()
        self.store.on_storage_fault(self._storage_fault)
        connectors = tuple(
            hw.ConnectorSpec(c.id, c.type, c.max_power_kw * 1000.0) for c in s.model.connectors
        )
        drivers: dict[str, Any] = {}
        for kind, name in s.drivers.items():
            ctx = hw.DriverContext(
                state_dir=s.state_dir, connectors=connectors, station_max_power_w=s.model.max_power_kw * 1000.0,
                emit=self.runtime.emit_from_driver, monotonic=self.clock.monotonic,
                options=s.driver_options.get(kind, {}),
            )
            try:
                drivers[kind] = registry.load(kind, name, ctx)  # type: ignore[call-overload]
            except hw.DriverError as e:
                raise StartupError(f"{s.path}: drivers.{kind}: {e}") from None
        self.runtime.drivers = drivers
        for kind, driver in drivers.items():
            try:
                await driver.start()
            except hw.DriverError as e:
                raise StartupError(f"the {kind} driver did not start: {e}") from None
        self.control = ControlServer(s.control_socket, self.runtime)
        try:
            await self.control.start()
        except OSError as e:
            raise StartupError(f"cannot open the control socket {s.control_socket}: {e}") from None
        self.pictures = PictureStore(
            s.state_dir, deadline_s=s.picture_deadline_s, ca_file=lambda: _central_roots(certificates, s.state_dir),
        )
        attach_pictures(core, self.pictures)
        self.hmi = HmiServer(s.hmi_socket, self.runtime, screen=s.model.screen, idle_s=s.hmi_idle_s)
        try:
            await self.hmi.start()
        except OSError as e:
            raise StartupError(f"cannot open the HMI socket {s.hmi_socket}: {e}") from None
        self.maintenance = MaintenanceRunner(
            self.runtime, state_dir=s.state_dir, settings_path=s.path.resolve(), trial_s=s.firmware_trial_s
        )
        self.runtime.maintenance = self.maintenance
        self.link = CsmsLink(
            self.runtime, self.runtime, keys,
            response_timeout_s=s.response_timeout_s, reconnect_max_s=s.reconnect_max_s,
            security=core.security, report=self.runtime.dispatch,
        )

    async def run(self, on_ready: Callable[[], None] | None = None) -> str:
        """Run until a reset, a power fail or a signal; return how we leave."""
        assert self.runtime is not None and self.link is not None
        rt = self.runtime
        core_loop = rt.spawn(rt.run(), "core loop")
        rt.spawn(rt.outbox.run(), "outbox")
        rt.spawn(self.link.run(), "csms link")
        rt.spawn(self._probe_storage(), "storage probe")
        interval = sdnotify.watchdog_interval_s()
        if interval is not None:
            rt.spawn(sdnotify.watchdog(lambda: not core_loop.done(), interval), "watchdog")
        sdnotify.notify(f"READY=1\nSTATUS=charger {self.settings.serial_number} running\nMAINPID={os.getpid()}")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        if on_ready is not None:
            on_ready()
        kind = await rt.leaving
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        return kind

    def _storage_fault(self, reason: str | None) -> None:
        """The store moved to memory (``reason``) or back to disk (None): tell the CSMS.

        Runs inside a store write, so the events go to the core after it returns.
        """
        rt = self.runtime
        assert rt is not None and self.store is not None
        loop = asyncio.get_running_loop()
        if reason is None:
            log.warning("state database: storage fault cleared, state on disk again")
            loop.call_soon(rt.dispatch, ev.FaultCleared(STORAGE_DTC, 0))
            return
        log.error("state database %s: %s; charging continues, state held in memory until the "
                  "disk takes it again (MemoryExhaustion and DTC %s reported)", self.store.path, reason, STORAGE_DTC)
        loop.call_soon(rt.dispatch, ev.FaultRaised(STORAGE_DTC, 0))
        loop.call_soon(rt.dispatch, ev.SecurityEventOccurred(
            "MemoryExhaustion", f"state database: {reason}; state held in memory"))

    async def _probe_storage(self) -> None:
        """Write the state held in memory back when the disk allows, even with no write coming."""
        store = self.store
        assert store is not None
        while True:
            await asyncio.sleep(STORAGE_PROBE_S)
            if store.storage_fault is not None:
                store.try_recover()

    def _on_signal(self) -> None:
        rt = self.runtime
        assert rt is not None
        log.info("asked to stop: ending running transactions (reason Reboot)")
        rt._execute(rt.core.leave("exit", "Reboot"))
        asyncio.get_running_loop().call_later(STOP_GRACE_S, self._force_exit)

    def _force_exit(self) -> None:
        if self.runtime is not None and not self.runtime.leaving.done():
            log.error("transactions did not stop within %.0f s; leaving anyway", STOP_GRACE_S)
            self.runtime.leaving.set_result("forced")

    async def close(self, kind: str) -> None:
        sdnotify.notify(f"STOPPING=1\nSTATUS=leaving ({kind})")
        rt = self.runtime
        if rt is not None:
            drain = {"power_lost": HOLD_UP_S if self.settings.model.power_loss == "before_shutdown" else 0}
            timeout = drain.get(kind, DRAIN_S)
            if timeout and rt.core.store.count():
                delivered = await rt.drain(timeout)
                log.info("transaction queue %s", "delivered" if delivered else "kept on disk for the next start")
            if self.link is not None and self.link.ws is not None:
                await self.link.ws.close()
            await rt.close()
            for kind_name, driver in rt.drivers.items():
                if kind == "hard" and kind_name == "platform":
                    continue  # it performs the reboot after everything else is closed
                try:
                    await driver.close()
                except hw.DriverError as e:
                    log.warning("closing the %s driver: %s", kind_name, e)
        if self.hmi is not None:
            await self.hmi.close()
        if self.pictures is not None:
            self.pictures.close()
        if self.control is not None:
            await self.control.close()
        if self.store is not None:
            if kind not in ("power_lost", "forced", "startup_failed"):
                self.store.mark_stopped()
            self.store.close()


async def run_daemon(settings: Settings, on_ready: Callable[[], None] | None = None) -> int:
    daemon = Daemon(settings)
    try:
        await daemon.open()
    except StartupError as e:
        await daemon.close("startup_failed")
        rollback = rollback_after_failed_start(settings.state_dir, e)
        if rollback is not None:
            _exec(rollback)
        raise
    assert daemon.maintenance is not None
    rollback = daemon.maintenance.check_trial()
    if rollback is not None:
        await daemon.close("rollback")
        _exec(rollback)
    kind = await daemon.run(on_ready)
    log.info("leaving: %s", kind)
    platform = daemon.runtime.drivers.get("platform") if daemon.runtime else None
    await daemon.close(kind)
    if kind == "firmware":
        installer.exec_release(daemon.maintenance.next_release, daemon.maintenance.run_args())
    elif kind == "rollback" and daemon.maintenance.rollback_command:
        _exec(daemon.maintenance.rollback_command)
    elif kind == "soft":
        reexec()
    elif kind == "hard" and platform is not None:
        try:
            await platform.reboot()
        except hw.DriverError as e:
            log.error("hard reset: the platform could not reboot: %s", e)
            return 1
    return 0


def rollback_after_failed_start(state_dir: Any, error: StartupError) -> list[str] | None:
    """A release on trial that cannot even open (a driver it cannot load, a database it
    refuses) is rolled back at once: the command to exec, else None.

    The trial counts starts only once the daemon is open, and systemd does not restart
    after exit 3 (RestartPreventExitStatus), so without this such a release would stay
    down. A cause that may pass by itself (exit 75: full or read-only disk) is not the
    release's fault: systemd retries it as it is.
    """
    if error.exit_code == EXIT_TEMPFAIL:
        return None
    try:
        trial = installer.trial(state_dir)
        if trial is None or trial.state != "pending":
            return None
        log.error("firmware %s on trial cannot start (%s): rolling back", trial.new_version, error)
        return installer.roll_back(state_dir)
    except (installer.FirmwareError, OSError) as e:
        log.error("firmware on trial cannot start, and rolling back failed: %s", e)
        return None


class LazyCertificateStore:
    """`controller.security.certs.CertificateStore`, built on first use.

    ``cryptography`` alone adds about 10 MB to the daemon's RSS, and a charger in
    security profile 0 or 1 with no certificate operation never needs it: the idle
    target (45 MB, bench/idle.py) is met by loading it when a certificate is first
    touched (an InstallCertificate, profile 2/3 TLS, a SignCertificate...).
    """

    def __init__(self, directory: Any, **options: Any) -> None:
        self._directory, self._options = directory, options
        self._store: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._store is None:
            from .security.certs import CertificateStore

            self._store = CertificateStore(self._directory, **self._options)
        return getattr(self._store, name)


def _central_roots(certificates: Any, state_dir: Any) -> Any:
    """The installed CentralSystemRootCertificate(s), trusted for HTTPS besides the system store."""
    bundle = certificates.root_bundle_path("CentralSystemRootCertificate")
    if bundle is not None:
        return bundle
    path = state_dir / "certs" / "central_system_root.pem"
    return path if path.exists() else None


def _exec(command: list[str]) -> None:
    log.warning("starting %s", " ".join(command))
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.execv(command[0], command)


def setup_logging(level: str) -> None:
    """stderr, or the journal's native protocol with structured fields under systemd."""
    handler: logging.Handler
    if under_journal():
        handler = JournalHandler()
        handler.setFormatter(RedactingFormatter("%(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level, logging.INFO), handlers=[handler])
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("ocpp").setLevel(logging.WARNING if level != "DEBUG" else logging.DEBUG)


__all__ = ["Daemon", "StartupError", "os", "run_daemon", "setup_logging"]
