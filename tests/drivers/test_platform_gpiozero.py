"""GpioPlatform with gpiozero's MockFactory: fault inputs, contactors with feedback, LEDs, reboot."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("gpiozero")

from gpiozero.pins.mock import MockConnectedPin, MockFactory  # noqa: E402

from drivers import registry  # noqa: E402
from drivers.interfaces import DriverError, FaultCleared, FaultRaised  # noqa: E402

OPTIONS = {
    "emergency_stop_pin": 17, "emergency_stop_active_high": False,  # NC loop: low = pressed
    "door_pin": 27, "tilt_pin": 4,
    "contactor_pins": {"1": 22, "2": 23}, "contactor_feedback_pins": {"1": 24, "2": 25},
    "contactor_timeout_s": 0.1, "led_pins": {"status": 5, "1": 6},
}


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


async def wait_for(predicate, timeout_s=2.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.fixture
async def platform(factory, make_ctx):
    factory.pin(17).drive_high()  # emergency stop loop closed: no fault
    plat = registry.load("platform", "gpiozero", make_ctx(options={**OPTIONS, "pin_factory": factory}))
    await plat.start()
    yield plat
    await plat.close()


async def test_r_hw_3_fault_inputs_raise_and_clear_their_dtcs(platform, factory, emitted):
    assert emitted.events == []
    factory.pin(17).drive_low()
    factory.pin(27).drive_high()
    factory.pin(4).drive_high()
    await wait_for(lambda: len(emitted.events) == 3)
    assert set(emitted.events) == {FaultRaised("0x100202"), FaultRaised("0x10020C"), FaultRaised("0x10020E")}
    factory.pin(27).drive_high()  # no change, no event
    factory.pin(17).drive_high()
    factory.pin(27).drive_low()
    await wait_for(lambda: len(emitted.events) == 5)
    assert emitted.events[3:] == [FaultCleared("0x100202"), FaultCleared("0x10020C")]


async def test_r_hw_3_fault_present_at_start_is_reported(factory, make_ctx, emitted):
    factory.pin(27).drive_high()
    plat = registry.load("platform", "gpiozero", make_ctx(options={**OPTIONS, "pin_factory": factory}))
    await plat.start()
    try:
        assert FaultRaised("0x10020C") in emitted.events
        assert FaultRaised("0x100202") in emitted.events  # pin 17 floats low: loop open
    finally:
        await plat.close()


async def test_r_hw_3_contactor_follows(factory, make_ctx, emitted):
    for out, fb in ((22, 24), (23, 25)):
        factory.pin(out, pin_class=MockConnectedPin, input_pin=factory.pin(fb))
    factory.pin(17).drive_high()
    plat = registry.load("platform", "gpiozero", make_ctx(options={**OPTIONS, "pin_factory": factory}))
    await plat.start()
    try:
        await plat.set_contactor(1, True)
        assert plat.contactor_closed(1) is True and factory.pin(22).state
        await plat.set_contactor(1, False)
        assert plat.contactor_closed(1) is False
        assert emitted.events == []
    finally:
        await plat.close()


async def test_r_hw_3_contactor_that_does_not_follow_raises_0x100208(platform, factory, emitted):
    with pytest.raises(DriverError, match="did not close"):
        await platform.set_contactor(2, True)
    assert emitted.events == [FaultRaised("0x100208", 2)]
    factory.pin(25).drive_high()  # it closes late: output and feedback agree again
    await wait_for(lambda: len(emitted.events) == 2)
    assert emitted.events[1] == FaultCleared("0x100208", 2)


async def test_r_hw_3_contactor_moving_on_its_own_raises_0x100208(platform, factory, emitted):
    factory.pin(24).drive_high()  # welded / closed with the output off
    await wait_for(lambda: emitted.events == [FaultRaised("0x100208", 1)])


async def test_r_hw_3_leds(platform, factory):
    platform.set_led("status", "on")
    assert factory.pin(5).state
    platform.set_led(1, "off")
    assert not factory.pin(6).state
    platform.set_led("status", "blink")
    with pytest.raises(DriverError):
        platform.set_led("nope", "on")
    with pytest.raises(DriverError):
        platform.set_led("status", "disco")


async def test_reboot_runs_the_injected_command(factory, make_ctx):
    seen = []
    plat = registry.load(
        "platform", "gpiozero",
        make_ctx(options={"pin_factory": factory, "run": seen.append, "reboot_command": ["true", "x"]}),
    )
    await plat.start()
    await plat.reboot()
    await plat.close()
    assert seen == [["true", "x"]]
    assert (await registry.load("platform", "gpiozero", make_ctx(options={"pin_factory": "mock", "run": seen.append})).reboot()) is None
    assert seen[-1] == ["systemctl", "reboot"]


async def test_close_opens_contactors(factory, make_ctx):
    plat = registry.load("platform", "gpiozero", make_ctx(options={**OPTIONS, "pin_factory": factory, "contactor_feedback_pins": {}}))
    await plat.start()
    await plat.set_contactor(1, True)
    assert factory.pin(22).state
    await plat.close()
    await plat.close()
    assert not factory.pin(22).state


@pytest.mark.parametrize(
    "options",
    [
        {"pin_factory": "no-such-factory"},
        {"door_pin": "GPIO27"},
        {"contactor_pins": {"9": 22}},
        {"contactor_feedback_pins": {"1": 24}},
        {"contactor_timeout_s": 0},
        {"reboot_command": "systemctl reboot"},
    ],
)
async def test_bad_options_are_driver_errors(make_ctx, options):
    with pytest.raises(DriverError):
        plat = registry.load("platform", "gpiozero", make_ctx(options={"pin_factory": "mock", **options}))
        await plat.start()
