"""Test hooks and behaviour of the mock power stage, RFID reader and platform."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from drivers.interfaces import (
    CablePlugged,
    CableUnplugged,
    DriverError,
    FaultCleared,
    FaultRaised,
    PowerFailing,
    TagPresented,
)
from drivers.mock_plant import STATE_FILE, default_ev_mac
from drivers.platform.mock import MockPlatform, normalise_dtc, restart_command
from drivers.power.mock import MockPowerStage
from drivers.rfid.mock import MockRfidReader


def saved_register(state_dir, connector_id: int) -> float:
    return json.loads((state_dir / STATE_FILE).read_text())["energy_wh"][str(connector_id)]


# ----------------------------------------------------------------- power stage
async def test_r_hw_4_plugged_option_emits_at_start(make_ctx, emitted):
    stage = MockPowerStage(make_ctx(options={"plugged": [2]}))
    assert emitted.events == []
    await stage.start()
    assert emitted.events == [CablePlugged(2)]
    assert (await stage.status(2)).plugged and not (await stage.status(1)).plugged
    await stage.close()


async def test_r_hw_4_plug_hooks_emit_on_change_once_started(ctx, emitted, clock):
    stage = MockPowerStage(ctx)
    stage.plug(1)  # before start: silent, reported by start()
    await stage.start()
    assert emitted.events == [CablePlugged(1)]
    stage.plug(1)
    stage.plug(2)
    await stage.enable(2)
    clock.advance(5.0)
    assert (await stage.status(2)).output_power_w > 0
    stage.unplug(2)
    stage.unplug(2)
    assert emitted.events == [CablePlugged(1), CablePlugged(2), CableUnplugged(2)]
    status = await stage.status(2)
    assert (status.plugged, status.output_power_w) == (False, 0.0)
    await stage.close()
    stage.unplug(1)  # closed: the world still moves, nobody is told
    assert emitted.events[-1] == CableUnplugged(2)


async def test_r_hw_4_set_ev_reaches_status(ctx):
    stage = MockPowerStage(ctx)
    await stage.start()
    stage.plug(1)
    assert (await stage.status(1)).ev_mac == default_ev_mac(1)
    stage.set_ev(1, soc=55, mac="02:11:22:33:44:55", contract_id="FRXYZ123456789")
    status = await stage.status(1)
    assert (status.soc_pct, status.ev_mac, status.contract_id) == (
        55,
        "02:11:22:33:44:55",
        "FRXYZ123456789",
    )
    await stage.close()


async def test_r_hw_4_power_stage_runs_only_between_start_and_close(ctx):
    stage = MockPowerStage(ctx)
    with pytest.raises(DriverError, match="not started"):
        await stage.enable(1)
    await stage.start()
    await stage.close()
    with pytest.raises(DriverError, match="closed"):
        await stage.set_limit(1, 1000.0)
    with pytest.raises(DriverError):
        await stage.start()


@pytest.mark.parametrize("plugged", ["1", [3], [True], 1])
def test_r_hw_4_bad_plugged_option_is_driver_error(make_ctx, plugged):
    with pytest.raises(DriverError, match="plugged"):
        MockPowerStage(make_ctx(options={"plugged": plugged}))


async def test_r_hw_4_hooks_reject_unknown_connector(ctx):
    stage = MockPowerStage(ctx)
    await stage.start()
    for hook in (stage.plug, stage.unplug, stage.set_ev):
        with pytest.raises(DriverError):
            hook(7)
    await stage.close()


async def test_r_hw_5_power_stage_close_saves_register(ctx, clock):
    stage = MockPowerStage(ctx)
    await stage.start()
    stage.plug(1)
    await stage.enable(1)
    clock.advance(0.5)  # under the 1 s save interval: only close() saves this
    await stage.close()
    assert saved_register(ctx.state_dir, 1) == pytest.approx(10_000.0 * 0.5 / 2 / 3600.0)


# ----------------------------------------------------------------- rfid
async def test_r_hw_2_present_emits_upper_case_uid(ctx, emitted):
    reader = MockRfidReader(ctx)
    await reader.start()
    reader.present("04a2b3c4d5e6f7")
    reader.present(" deadbeef\n")
    assert emitted.events == [TagPresented("04A2B3C4D5E6F7"), TagPresented("DEADBEEF")]
    assert reader.presented == ["04A2B3C4D5E6F7", "DEADBEEF"]
    with pytest.raises(DriverError):
        reader.present("  ")
    await reader.close()
    with pytest.raises(DriverError):
        reader.present("04A2")


async def test_r_hw_2_tap_before_start_is_driver_error(ctx):
    with pytest.raises(DriverError):
        MockRfidReader(ctx).present("04A2")


# ----------------------------------------------------------------- platform
@pytest.fixture
async def platform(make_ctx):
    execs: list[tuple[str, list[str]]] = []
    driver = MockPlatform(make_ctx(options={"exec": lambda path, argv: execs.append((path, argv))}))
    driver.execs = execs
    await driver.start()
    yield driver
    await driver.close()


def test_r_status_2_dtc_is_normalised():
    assert normalise_dtc("0x10020a") == "0x10020A"
    assert normalise_dtc(" 0X100206 ") == "0x100206"
    for bad in ("100206", "0x10020", "0x1002067", "0x10020G", "", None, 0x100206):
        with pytest.raises(DriverError):
            normalise_dtc(bad)


async def test_r_status_2_raise_and_clear_fault_emit_on_change(platform, emitted):
    assert platform.raise_fault("0x10020a") is True
    assert platform.raise_fault("0x10020A") is False  # already active
    assert platform.raise_fault("0x100206", connector_id=2) is True
    assert platform.active_faults == {("0x10020A", 0), ("0x100206", 2)}
    assert platform.clear_fault("0x100206", connector_id=1) is False  # not active there
    assert platform.clear_fault("0X100206", connector_id=2) is True
    assert emitted.events == [
        FaultRaised("0x10020A", 0),
        FaultRaised("0x100206", 2),
        FaultCleared("0x100206", 2),
    ]


@pytest.mark.parametrize(("dtc", "cid"), [("0x1234", 0), ("0x100206", 3), ("0x100206", True)])
async def test_r_status_2_bad_fault_is_driver_error(platform, emitted, dtc, cid):
    with pytest.raises(DriverError):
        platform.raise_fault(dtc, connector_id=cid)
    assert emitted.events == []


async def test_r_model_3_power_fail_emits_power_failing(platform, emitted):
    platform.power_fail()
    assert emitted.events == [PowerFailing()]


async def test_r_ops_4_reboot_re_executes_with_the_original_command_line(platform):
    await platform.reboot()
    assert platform.execs == [(sys.executable, [sys.executable, *sys.orig_argv[1:]])]


async def test_r_ops_4_reboot_saves_the_mock_meter_register(ctx, platform, clock):
    stage = MockPowerStage(ctx)  # same state_dir as the platform
    await stage.start()
    stage.plug(1)
    await stage.enable(1)
    clock.advance(0.5)
    await stage.status(1)  # 0.5 s since the save at enable: not saved yet
    assert saved_register(ctx.state_dir, 1) == 0.0
    await platform.reboot()
    assert saved_register(ctx.state_dir, 1) == pytest.approx(10_000.0 * 0.5 / 2 / 3600.0)
    await stage.close()


def test_r_ops_4_restart_command_keeps_interpreter_options(monkeypatch):
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-X", "dev", "-m", "controller", "--sim"])
    monkeypatch.setattr(sys, "argv", ["/src/controller/__main__.py", "--sim"])
    assert restart_command() == (
        sys.executable,
        [sys.executable, "-X", "dev", "-m", "controller", "--sim"],
    )


@pytest.mark.parametrize(
    ("orig", "argv"), [([], ["x"]), (["python3"], [""]), (["python3", "-"], ["-"])]
)
def test_r_ops_4_restart_command_refuses_what_it_cannot_repeat(monkeypatch, orig, argv):
    monkeypatch.setattr(sys, "orig_argv", orig)
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(DriverError):
        restart_command()


async def test_r_ops_4_reboot_after_close_is_driver_error(ctx):
    driver = MockPlatform(ctx)
    await driver.start()
    await driver.close()
    with pytest.raises(DriverError):
        await driver.reboot()


def test_r_ops_4_bad_exec_option_is_driver_error(make_ctx):
    with pytest.raises(DriverError, match="exec"):
        MockPlatform(make_ctx(options={"exec": "os.execv"}))


def test_r_ops_4_reboot_really_re_executes_the_process(tmp_path):
    """A real exec in a child: same interpreter options and arguments, stdout flushed first."""
    script = tmp_path / "rebooting.py"
    script.write_text(
        textwrap.dedent(
            f"""
        import asyncio, os, sys
        from pathlib import Path
        from drivers.interfaces import DriverContext
        from drivers.platform.mock import MockPlatform

        if os.environ.get("EVSECTL_TEST_REBOOTED") == "1":
            print("after reboot", sys.argv[1:], sys.flags.utf8_mode, os.getpid())
            sys.exit(0)
        os.environ["EVSECTL_TEST_REBOOTED"] = "1"
        print("before reboot", os.getpid())  # buffered: stdout is a pipe

        async def main():
            ctx = DriverContext(Path({str(tmp_path)!r}), (), 0.0, print, lambda: 0.0)
            platform = MockPlatform(ctx)
            await platform.start()
            await platform.reboot()

        asyncio.run(main())
        print("not reached")
        """
        )
    )
    out = subprocess.run(
        [sys.executable, "-X", "utf8", str(script), "hello"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert len(out) == 2, out
    before, after = out
    pid = before.split()[-1]
    assert before == f"before reboot {pid}"
    assert after == f"after reboot ['hello'] 1 {pid}"  # same process, same options
