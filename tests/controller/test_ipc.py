"""The HMI contract: JSON lines, versioned; the server converts the core's state."""

from __future__ import annotations

import json

import pytest

from controller.ipc import messages as m
from controller.ipc.server import to_snapshot


def test_every_message_round_trips():
    snap = m.Snapshot(
        link="connected", model="EVlink Pro DC 180", screen=(1024, 768),
        connectors=(m.ConnectorView(1, "CCS2", "Charging", True, 1200.0, 50000.0, 40, 60,
                                    m.Cost("EUR", 1.5), None, "https://x/1"),
                    m.ConnectorView(2, "CHAdeMO", "Faulted", error=m.Fault("GroundFailure", "0x100206", "x"))),
        auth_options=("rfid", "qr"), tariff=m.Picture("/s/tariff.png", 3),
        screensaver=(m.Picture("/s/screensaver1.png", 4), m.Picture("/s/screensaver2.png", 4)),
    )
    for msg in (snap, m.Touched(2), m.Awake(), m.out_of_service()):
        line = m.encode(msg)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert m.decode(line) == msg


@pytest.mark.parametrize("line", [
    b"not json", b"[]", b'{"type": "Touched", "v": 999, "connector_id": 1}',
    b'{"type": "Nope", "v": 1}', b'{"type": "Touched", "v": 1}',
])
def test_anything_else_is_a_protocol_error(line):
    with pytest.raises(m.ProtocolError):
        m.decode(line)


def test_missing_optional_fields_take_their_defaults_and_unknown_ones_are_ignored():
    assert m.decode(b'{"type": "Snapshot", "v": 1, "later": 1}') == m.Snapshot()


def test_the_core_snapshot_becomes_the_hmi_snapshot():
    state = {
        "link": "connected", "model": "M", "selected_connector": 2, "auth_options": ["rfid", "qr"],
        "station_operative": True,
        "connectors": [{"id": 1, "type": "CCS2", "status": "Charging", "plugged": True, "energy_wh": 10,
                        "power_w": 2000, "soc": 50, "duration_s": 3,
                        "cost": {"currency": "EUR", "total_cost": 1.25, "transaction_id": 7, "method": "x"},
                        "error": None, "qr_url": "https://q/1"}],
        "pictures": {"tariff": {"path": "/p/tariff.png", "version": 2}, "logo": None,
                     "screensaver": [{"path": "/p/screensaver1.png", "version": 5}]},
    }
    snap = to_snapshot(state, screen=(800, 480), idle_s=60)
    assert snap.connectors[0].cost == m.Cost("EUR", 1.25)
    assert snap.connectors[0].qr_url == "https://q/1"
    assert snap.tariff == m.Picture("/p/tariff.png", 2) and snap.logo is None
    assert snap.screensaver == (m.Picture("/p/screensaver1.png", 5),)
    assert snap.selected_connector == 2 and snap.idle_s == 60
    json.loads(m.encode(snap))
