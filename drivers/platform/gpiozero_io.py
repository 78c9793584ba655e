"""The box's GPIO through gpiozero: fault inputs, contactors with feedback, status LEDs, reboot.

This module owns the gpiozero platform backend (R-HW 3). Every device gets the
pin factory chosen here, never gpiozero's class-level global default:

* option ``pin_factory = "mock"`` -> a fresh :class:`gpiozero.pins.mock.MockFactory`
  (tests, rigs, laptops); a factory object -> used as it is (tests that drive its
  pins); a name (``"lgpio"``, ``"rpigpio"``, ``"pigpio"``, ``"native"``) -> that
  factory from gpiozero's ``gpiozero_pin_factories`` entry points; absent or
  ``"default"`` -> gpiozero's default choice, resolved once, explicitly.

Inputs (BCM pin numbers; ``<name>_active_high`` says which level is the fault,
default true; a fault input reports FaultRaised when it becomes active and
FaultCleared when it goes back, connector 0):

* ``emergency_stop_pin`` -> ``0x100202``; ``door_pin`` -> ``0x10020C``;
  ``tilt_pin`` -> ``0x10020E``.

Contactors: ``contactor_pins = {"1" = 22}`` (output, high = closed) and
``contactor_feedback_pins = {"1" = 24}`` (input, high = closed). ``await
set_contactor(cid, closed)`` drives the output and waits up to
``contactor_timeout_s`` (0.2) for the feedback; a contactor that does not follow --
or whose feedback changes on its own -- raises ``0x100208`` (output relay control
error) on that connector, cleared when output and feedback agree again.

LEDs: ``led_pins = {"status" = 5, "1" = 6}``; ``set_led(name, "on"|"off"|"blink")``.

``reboot()`` runs ``reboot_command`` (default ``["systemctl", "reboot"]``) through
option ``run`` (a callable taking the argv; default :func:`subprocess.run`).

gpiozero calls its callbacks on its own threads: they only call ``ctx.emit``,
which is thread-safe (the controller hops onto its event loop there).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from drivers.interfaces import DriverContext, DriverError, FaultCleared, FaultRaised

try:
    from gpiozero import DigitalInputDevice, DigitalOutputDevice, LED
    from gpiozero.exc import GPIOZeroError
except ImportError as exc:
    raise ImportError(f"the gpiozero platform backend needs gpiozero: pip install 'evsectl[gpio]' ({exc})") from exc

__all__ = ["CONTACTOR_DTC", "INPUT_DTCS", "GpioPlatform", "resolve_pin_factory"]

log = logging.getLogger(__name__)

INPUT_DTCS = {"emergency_stop": "0x100202", "door": "0x10020C", "tilt": "0x10020E"}
CONTACTOR_DTC = "0x100208"
_POLL_S = 0.005


def resolve_pin_factory(spec: Any) -> Any:
    """The pin factory an option names (see the module docstring)."""
    if spec is not None and not isinstance(spec, str):
        return spec  # a factory object
    name = (spec or "default").strip().lower()
    try:
        if name == "mock":
            from gpiozero.pins.mock import MockFactory

            return MockFactory()
        if name == "default":
            from gpiozero.devices import Device

            return Device._default_pin_factory()  # noqa: SLF001 - resolved once, passed explicitly
        from importlib.metadata import entry_points

        for ep in entry_points(group="gpiozero_pin_factories"):
            if ep.name.lower() == name:
                return ep.load()()
    except (GPIOZeroError, ImportError, OSError, RuntimeError) as exc:
        raise DriverError(f"gpiozero platform: pin factory {name!r} unusable: {exc}") from exc
    raise DriverError(f"gpiozero platform: unknown pin factory {name!r}")


class GpioPlatform:
    """A :class:`~drivers.interfaces.Platform` on the box's GPIO (see the module docstring)."""

    def __init__(self, ctx: DriverContext) -> None:
        self._ctx = ctx
        o = ctx.options
        self._factory_spec = o.get("pin_factory")
        self._input_specs: dict[str, tuple[int, bool]] = {}
        for name in INPUT_DTCS:
            pin = o.get(f"{name}_pin")
            if pin is not None:
                self._input_specs[name] = (_pin(pin, f"{name}_pin"), bool(o.get(f"{name}_active_high", True)))
        known = {spec.connector_id for spec in ctx.connectors}
        self._contactor_specs = _pin_table(o.get("contactor_pins", {}), "contactor_pins", known)
        self._feedback_specs = _pin_table(o.get("contactor_feedback_pins", {}), "contactor_feedback_pins", known)
        if set(self._feedback_specs) - set(self._contactor_specs):
            raise DriverError("gpiozero platform: a feedback pin without a contactor pin")
        self._led_specs = {str(k): _pin(v, f"led_pins.{k}") for k, v in dict(o.get("led_pins", {})).items()}
        timeout = o.get("contactor_timeout_s", 0.2)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise DriverError(f"gpiozero platform: contactor_timeout_s must be > 0, got {timeout!r}")
        self._contactor_timeout_s = float(timeout)
        command = o.get("reboot_command", ["systemctl", "reboot"])
        if isinstance(command, str) or not isinstance(command, Sequence) or not command:
            raise DriverError(f"gpiozero platform: reboot_command must be a list, got {command!r}")
        self._reboot_command = [str(c) for c in command]
        run = o.get("run", _run_checked)
        if not callable(run):
            raise DriverError("gpiozero platform: option run must be callable")
        self._run: Callable[[list[str]], object] = run
        self.factory: Any = None
        self._inputs: dict[str, Any] = {}
        self._contactors: dict[int, Any] = {}
        self._feedback: dict[int, Any] = {}
        self._leds: dict[str, Any] = {}
        self._faults: set[tuple[str, int]] = set()
        self._commanded: dict[int, bool] = {}
        self._started = False
        self._closed = False

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._closed:
            raise DriverError("gpiozero platform: closed; build a new one")
        if self._started:
            return
        self.factory = resolve_pin_factory(self._factory_spec)
        f = self.factory
        try:
            for name, (pin, active_high) in self._input_specs.items():
                dev = DigitalInputDevice(pin, pull_up=None, active_state=active_high, pin_factory=f)
                dtc = INPUT_DTCS[name]
                dev.when_activated = lambda _d=None, dtc=dtc: self._set_fault(dtc, 0, True)
                dev.when_deactivated = lambda _d=None, dtc=dtc: self._set_fault(dtc, 0, False)
                self._inputs[name] = dev
            for cid, pin in self._contactor_specs.items():
                self._contactors[cid] = DigitalOutputDevice(pin, initial_value=False, pin_factory=f)
                self._commanded[cid] = False
            for cid, pin in self._feedback_specs.items():
                dev = DigitalInputDevice(pin, pull_up=None, active_state=True, pin_factory=f)
                dev.when_activated = lambda _d=None, cid=cid: self._feedback_changed(cid)
                dev.when_deactivated = lambda _d=None, cid=cid: self._feedback_changed(cid)
                self._feedback[cid] = dev
            for name, pin in self._led_specs.items():
                self._leds[name] = LED(pin, pin_factory=f)
        except (GPIOZeroError, OSError, RuntimeError) as exc:
            self._close_devices()
            raise DriverError(f"gpiozero platform: cannot set up the pins: {exc}") from exc
        self._started = True
        for name, dev in self._inputs.items():  # a fault already present at start
            if dev.is_active:
                self._set_fault(INPUT_DTCS[name], 0, True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for dev in self._contactors.values():  # open every contactor on the way out
            try:
                dev.off()
            except (GPIOZeroError, OSError):
                pass
        self._close_devices()

    async def reboot(self) -> None:
        if self._closed:
            raise DriverError("gpiozero platform: closed")
        log.warning("reboot: %s", " ".join(self._reboot_command))
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._run, self._reboot_command)
        except (OSError, subprocess.SubprocessError) as exc:
            raise DriverError(f"gpiozero platform: reboot failed: {exc}") from exc

    # ----------------------------------------------------------------- contactors, LEDs
    async def set_contactor(self, connector_id: int, closed: bool) -> None:
        """Drive the contactor; DriverError (and 0x100208) if its feedback does not follow."""
        self._check_running()
        out = self._contactors.get(connector_id)
        if out is None:
            raise DriverError(f"gpiozero platform: no contactor for connector {connector_id!r}")
        self._commanded[connector_id] = bool(closed)
        out.value = bool(closed)
        fb = self._feedback.get(connector_id)
        if fb is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._contactor_timeout_s
        while fb.is_active != bool(closed):
            if loop.time() >= deadline:
                self._set_fault(CONTACTOR_DTC, connector_id, True)
                raise DriverError(
                    f"gpiozero platform: contactor {connector_id} did not "
                    f"{'close' if closed else 'open'} within {self._contactor_timeout_s} s"
                )
            await asyncio.sleep(_POLL_S)
        self._set_fault(CONTACTOR_DTC, connector_id, False)

    def contactor_closed(self, connector_id: int) -> bool | None:
        """The feedback of the contactor (None without a feedback pin)."""
        fb = self._feedback.get(connector_id)
        return None if fb is None else bool(fb.is_active)

    def set_led(self, name: str | int, state: str) -> None:
        self._check_running()
        led = self._leds.get(str(name))
        if led is None:
            raise DriverError(f"gpiozero platform: no LED {name!r}")
        if state == "on":
            led.on()
        elif state == "off":
            led.off()
        elif state == "blink":
            led.blink(on_time=0.5, off_time=0.5)
        else:
            raise DriverError(f"gpiozero platform: LED state must be on, off or blink, got {state!r}")

    @property
    def active_faults(self) -> frozenset[tuple[str, int]]:
        return frozenset(self._faults)

    # ----------------------------------------------------------------- internals
    def _feedback_changed(self, connector_id: int) -> None:
        """gpiozero thread: feedback moved; outside a command window it must match."""
        fb = self._feedback[connector_id]
        agrees = bool(fb.is_active) == self._commanded.get(connector_id, False)
        if agrees:
            self._set_fault(CONTACTOR_DTC, connector_id, False)
        # a disagreement is judged by set_contactor's deadline while a command runs;
        # a contactor that moves on its own (welded, dropped out) is caught here:
        elif not self._closed:
            self._schedule_mismatch_check(connector_id)

    def _schedule_mismatch_check(self, connector_id: int) -> None:
        def check() -> None:
            fb = self._feedback.get(connector_id)
            if fb is not None and not self._closed:
                if bool(fb.is_active) != self._commanded.get(connector_id, False):
                    self._set_fault(CONTACTOR_DTC, connector_id, True)

        timer = threading.Timer(self._contactor_timeout_s, check)
        timer.daemon = True
        timer.start()

    def _set_fault(self, dtc: str, connector_id: int, active: bool) -> None:
        key = (dtc, connector_id)
        if active and key not in self._faults:
            self._faults.add(key)
            log.warning("fault %s on connector %s", dtc, connector_id)
            self._ctx.emit(FaultRaised(dtc, connector_id))
        elif not active and key in self._faults:
            self._faults.discard(key)
            log.info("fault %s cleared on connector %s", dtc, connector_id)
            self._ctx.emit(FaultCleared(dtc, connector_id))

    def _check_running(self) -> None:
        if not self._started or self._closed:
            raise DriverError(f"gpiozero platform: {'closed' if self._closed else 'not started'}")

    def _close_devices(self) -> None:
        for group in (self._inputs, self._feedback, self._contactors, self._leds):
            for dev in group.values():
                try:
                    dev.close()
                except (GPIOZeroError, OSError):
                    pass
            group.clear()
        if self.factory is not None:
            try:
                self.factory.close()
            except (GPIOZeroError, OSError):
                pass


def _run_checked(argv: list[str]) -> object:
    return subprocess.run(argv, check=True, timeout=30)


def _pin(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 64:
        raise DriverError(f"gpiozero platform: {what} must be a GPIO number, got {value!r}")
    return value


def _pin_table(table: Any, what: str, known: set[int]) -> dict[int, int]:
    if not isinstance(table, Mapping):
        raise DriverError(f"gpiozero platform: {what} must be a table connector -> pin")
    out: dict[int, int] = {}
    for key, value in table.items():
        try:
            cid = int(key)
        except (TypeError, ValueError):
            raise DriverError(f"gpiozero platform: {what}: bad connector {key!r}") from None
        if cid not in known:
            raise DriverError(f"gpiozero platform: {what}: no connector {cid}")
        out[cid] = _pin(value, f"{what}.{key}")
    return out
