"""Backends are found by entry point and only the chosen one is imported (R-HW 5)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

from drivers import registry
from drivers.interfaces import (
    DRIVER_KINDS,
    DriverError,
    DriverNotFoundError,
    Meter,
    Platform,
    PowerStage,
    RfidReader,
)

MOCKS = {
    "meter": ("drivers.meter.mock:MockMeter", Meter),
    "rfid": ("drivers.rfid.mock:MockRfidReader", RfidReader),
    "power": ("drivers.power.mock:MockPowerStage", PowerStage),
    "platform": ("drivers.platform.mock:MockPlatform", Platform),
}


def with_extra_entry_points(monkeypatch, kind: str, *extra: tuple[str, str]) -> None:
    """Make the registry see ``extra`` (name, "module:attr") beside what is installed."""
    real = registry.entry_points

    def fake(*, group: str):
        eps = list(real(group=group))
        if group == registry.GROUP_PREFIX + kind:
            eps += [EntryPoint(name=n, value=v, group=group) for n, v in extra]
        return eps

    monkeypatch.setattr(registry, "entry_points", fake)


@pytest.mark.parametrize("kind", DRIVER_KINDS)
def test_r_hw_5_every_kind_has_a_mock_found_by_entry_point(kind, ctx):
    assert "mock" in registry.available(kind)
    assert registry.group(kind) == f"evsectl.drivers.{kind}"
    target, contract = MOCKS[kind]
    backend = registry.load(kind, "mock", ctx)
    assert f"{type(backend).__module__}:{type(backend).__name__}" == target
    assert isinstance(backend, contract)


def test_r_hw_5_names_are_case_insensitive(ctx):
    assert type(registry.load("rfid", " Mock ", ctx)).__name__ == "MockRfidReader"


def test_r_hw_5_unknown_name_lists_available(ctx):
    with pytest.raises(DriverNotFoundError) as info:
        registry.load("meter", "modbus-typo", ctx)
    assert info.value.available == registry.available("meter")
    assert (info.value.kind, info.value.name) == ("meter", "modbus-typo")
    assert "mock" in str(info.value) and "modbus-typo" in str(info.value)


@pytest.mark.parametrize("call", ["available", "load", "group"])
def test_r_hw_5_unknown_kind_lists_kinds(call, ctx):
    with pytest.raises(DriverNotFoundError) as info:
        if call == "load":
            registry.load("gpio-typo", "mock", ctx)
        else:
            getattr(registry, call)("gpio-typo")
    assert all(kind in str(info.value) for kind in DRIVER_KINDS)


def test_r_hw_5_loading_a_backend_imports_only_that_backend(tmp_path):
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from drivers import registry
        from drivers.interfaces import ConnectorSpec, DriverContext
        before = sorted(m for m in sys.modules if m.startswith("drivers."))
        names = {{kind: registry.available(kind) for kind in registry.DRIVER_KINDS}}
        ctx = DriverContext(
            state_dir=Path({str(tmp_path)!r}),
            connectors=(ConnectorSpec(1, "CCS2", 60000.0),),
            station_max_power_w=60000.0,
            emit=lambda event: None,
            monotonic=lambda: 0.0,
        )
        registry.load("meter", "mock", ctx)
        after = sorted(m for m in sys.modules if m.startswith("drivers."))
        print(json.dumps({{"before": before, "after": after, "names": names}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    seen = json.loads(out.stdout)
    backends = {
        "drivers.meter.mock",
        "drivers.power.mock",
        "drivers.rfid.mock",
        "drivers.platform.mock",
    }
    assert not backends & set(seen["before"])  # listing imports nothing
    assert all("mock" in names for names in seen["names"].values())
    assert "drivers.meter.mock" in seen["after"]
    assert not (backends - {"drivers.meter.mock"}) & set(seen["after"])


def test_r_hw_5_missing_backend_module_is_driver_error_not_import_error(monkeypatch, ctx):
    with_extra_entry_points(monkeypatch, "meter", ("absent", "evsectl_no_such_module:AbsentMeter"))
    assert {"mock", "absent"} <= set(registry.available("meter"))
    with pytest.raises(DriverError) as info:
        registry.load("meter", "absent", ctx)
    assert not isinstance(info.value, ImportError)
    assert isinstance(info.value.__cause__, ImportError)
    message = str(info.value)
    assert "meter" in message and "absent" in message and "evsectl_no_such_module" in message
    registry.load("meter", "mock", ctx)  # the others still load


def test_r_hw_5_backend_whose_library_is_missing_is_driver_error(monkeypatch, tmp_path, ctx):
    (tmp_path / "evsectl_test_pcsc_backend.py").write_text(
        "import evsectl_missing_smartcard_lib\nclass PcscRfidReader: pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with_extra_entry_points(
        monkeypatch, "rfid", ("pcscx", "evsectl_test_pcsc_backend:PcscRfidReader")
    )
    with pytest.raises(DriverError, match=r"rfid driver 'pcscx'.*evsectl_missing_smartcard_lib"):
        registry.load("rfid", "pcscx", ctx)


def test_r_hw_5_missing_class_is_driver_error(monkeypatch, ctx):
    with_extra_entry_points(monkeypatch, "meter", ("ghost", "drivers.meter.mock:NoSuchMeter"))
    with pytest.raises(DriverError, match="ghost") as info:
        registry.load("meter", "ghost", ctx)
    assert isinstance(info.value.__cause__, AttributeError)


def test_r_hw_5_backend_constructor_errors_become_driver_errors(monkeypatch, ctx):
    with_extra_entry_points(
        monkeypatch,
        "platform",
        ("broken", "builtins:ZeroDivisionError"),
        ("notplatform", "builtins:dict"),
    )
    # ZeroDivisionError(ctx) builds fine but is no Platform; dict(ctx) raises TypeError
    with pytest.raises(DriverError, match="Platform contract"):
        registry.load("platform", "broken", ctx)
    with pytest.raises(DriverError, match="notplatform") as info:
        registry.load("platform", "notplatform", ctx)
    assert isinstance(info.value.__cause__, TypeError)


def test_r_hw_5_backend_driver_errors_pass_through(ctx):
    bad = dataclasses.replace(ctx, options={"plugged": [42]})
    with pytest.raises(DriverError, match="42"):
        registry.load("power", "mock", bad)


def test_r_hw_5_same_name_registered_twice(monkeypatch, ctx):
    with_extra_entry_points(
        monkeypatch,
        "meter",
        ("mock", "drivers.meter.mock:MockMeter"),  # same target twice: one backend
        ("dup", "drivers.meter.mock:MockMeter"),
        ("dup", "evsectl_other_dist:Meter"),
    )
    assert {"dup", "mock"} <= set(registry.available("meter"))
    registry.load("meter", "mock", ctx)
    with pytest.raises(DriverError, match="more than once"):
        registry.load("meter", "dup", ctx)
