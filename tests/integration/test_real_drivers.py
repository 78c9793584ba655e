"""The daemon with the real Modbus meter backend (pymodbus server on 127.0.0.1) and the
real PC/SC backend (pcscd + vpcd + our virtual card) against our CSMS (R-HW 1/2)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "drivers"))

pytest.importorskip("pymodbus")

from fake_modbus import FakeModbusMeter, FreezableProxy  # noqa: E402

BOX = "CP-TEST"
METER_FAILURE_DTC = "0x10020F"


def real_driver_settings(daemon, port: int, rfid: str) -> None:
    """Rewrite the daemon's settings: meter = modbus (and rfid = pcsc when asked)."""
    text = daemon.config.read_text()
    text = text.replace('meter = "mock"', 'meter = "modbus"', 1)
    if rfid == "pcsc":
        text = text.replace('rfid = "mock"', 'rfid = "pcsc"', 1)
    text += (
        "\n[drivers.options.meter]\n"
        f'host = "127.0.0.1"\nport = {port}\ntimeout_s = 0.3\nretries = 0\n'
        "device_ids = { 1 = 1, 2 = 2 }\n"
    )
    if rfid == "pcsc":
        text += "\n[drivers.options.rfid]\nwait_s = 0.2\nretry_interval_s = 0.2\n"
    daemon.config.write_text(text)


@pytest.fixture
async def modbus_meter():
    sim = FakeModbusMeter(unit_ids=(1, 2))
    port = await sim.serve_tcp()
    proxy = FreezableProxy(port)
    await proxy.start()
    await sim.set(1, energy_wh=100_000, power_w=0.0, voltage_v=0.0, current_a=0.0)
    await sim.set(2, energy_wh=200_000, power_w=0.0, voltage_v=0.0, current_a=0.0)
    yield sim, proxy
    await proxy.stop()
    await sim.stop()


async def start_daemon(make_daemon, csms, proxy, rfid: str):
    d = make_daemon(csms.url)
    real_driver_settings(d, proxy.port, rfid)
    await d.start()
    await csms.wait_for("BootNotification", identity=BOX, timeout=15)
    await d.until(lambda s: s["link"] == "connected", what="boot accepted")
    return d


async def test_r_hw_badge_session_with_real_meter_and_reader(make_daemon, csms, modbus_meter):
    from fake_pcsc import Pcscd, VirtualCard, why_unavailable

    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    sim, proxy = modbus_meter
    pcscd = Pcscd()
    pcscd.start()
    card = VirtualCard(pcscd)
    try:
        d = await start_daemon(make_daemon, csms, proxy, rfid="pcsc")
        d.plug(1)
        await d.until(lambda s: s["connectors"][0]["status"] == "Preparing", what="Preparing")
        mark = csms.mark()
        card.insert("04A1B2C3D4E5F6")
        auth = await csms.wait_for("Authorize", since=mark, timeout=10)
        assert auth.payload == {"idTag": "04A1B2C3D4E5F6"}
        start = await csms.wait_for("StartTransaction", since=mark)
        assert start.payload["meterStart"] == 100_000
        card.remove()
        await sim.set(1, energy_wh=123_456, power_w=50_000.0, voltage_v=400.0, current_a=125.0)
        d.advance(5)
        await d.until(lambda s: s["connectors"][0]["meter_wh"] == 123_456, what="meter read")
        mark = csms.mark()
        card.insert("04A1B2C3D4E5F6")  # the same badge stops the charge
        stop = await csms.wait_for("StopTransaction", since=mark, timeout=10)
        assert stop.payload["meterStop"] == 123_456
    finally:
        card.remove()
        pcscd.stop()


async def test_r_hw_meter_stops_answering_mid_transaction(make_daemon, csms, modbus_meter):
    sim, proxy = modbus_meter
    d = await start_daemon(make_daemon, csms, proxy, rfid="mock")
    d.plug(1)
    await d.until(lambda s: s["connectors"][0]["status"] == "Preparing", what="Preparing")
    mark = csms.mark()
    d.badge("AABBCCDD")
    await csms.wait_for("StartTransaction", since=mark)
    await d.until(lambda s: s["connectors"][0]["transaction_id"] is not None, what="transaction")
    d.advance(2)
    await d.until(lambda s: s["connectors"][0]["meter_wh"] == 100_000, what="meter read")
    mark = csms.mark()
    proxy.frozen = True  # the meter stops answering
    d.advance(5)
    fault = await csms.wait_for(
        "StatusNotification", since=mark, timeout=15,
        predicate=lambda r: r.payload["connectorId"] == 1
        and METER_FAILURE_DTC[2:].upper() in str(r.payload).upper(),
    )
    assert fault.payload["errorCode"] != "NoError"
    stop = await csms.wait_for("StopTransaction", since=mark, timeout=15)
    assert stop.payload["meterStop"] >= 100_000
    mark = csms.mark()
    proxy.frozen = False  # it comes back: the charger keeps probing a failed meter
    d.advance(11)
    await csms.wait_for(
        "StatusNotification", since=mark, timeout=10,
        predicate=lambda r: r.payload["connectorId"] == 1 and r.payload["errorCode"] == "NoError",
    )
