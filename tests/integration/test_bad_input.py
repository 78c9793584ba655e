"""Bad input from the installer, the CSMS, the disk and the command line.

R-CONF 5 (the TOML settings file), R-HW 5 (drivers by name), R-BOOT 4 (a CSMS that is
not there yet, or goes away mid-call), R-TX 4 (delivery in order, retries after a
CALLERROR), the state store refusing a corrupt database, and the ``evsectl`` CLI.
The CLI is run as ``sys.executable -m controller ...``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import REPO, settings_text

from controller.csms import CentralSystem

BOX = "CP-TEST"
CONNECTOR_FIELDS = {"id", "status", "transaction_id", "energy_wh", "power_w", "soc"}


async def evsectl(*args: str, timeout_s: float = 20.0) -> tuple[int, str, str]:
    """Run ``evsectl`` (``python -m controller``); return (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "EVSECTL_CONFIG"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller",
        *args,
        cwd=str(REPO),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(
            f"evsectl {' '.join(args)} still running after {timeout_s} s:\n{err.decode()}"
        ) from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write_settings(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "evsectl.toml"
    path.write_text(text)
    return path


def valid_text(tmp_path: Path, url: str = "ws://127.0.0.1:9/ocpp", **settings: Any) -> str:
    return settings_text(url, tmp_path / "state", tmp_path / "control.sock", **settings)


def line_of(text: str, needle: str) -> int:
    """1-based number of the line that contains ``needle`` (exactly one must)."""
    lines = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- R-CONF 5: the settings file


async def test_r_conf_5_bad_toml_syntax_exits_2_naming_file_and_line(tmp_path):
    text = valid_text(tmp_path).replace('box_identifier = "CP-TEST"', 'box_identifier = "CP-TEST')
    path = write_settings(tmp_path, text)
    line = line_of(text, 'box_identifier = "CP-TEST')
    code, _out, err = await evsectl("run", "--config", str(path))
    assert code == 2, err
    assert str(path) in err
    assert f"{path}:{line}" in err or f"line {line}" in err, err
    assert not (tmp_path / "control.sock").exists()


KEYS_LINE = "MinimumStatusDuration = 0"
#: name -> (line replaced, its replacement, key named in the error, text of the bad line)
WRONG_VALUES = {
    "serial_number_not_a_string": (
        'serial_number = "SN-TEST-1"',
        "serial_number = 5",
        "station.serial_number",
        "serial_number = 5",
    ),
    "serial_number_empty": (
        'serial_number = "SN-TEST-1"',
        'serial_number = ""',
        "station.serial_number",
        'serial_number = ""',
    ),
    "unknown_ocpp_key": (
        KEYS_LINE,
        f"{KEYS_LINE}\nNoSuchKey = 1",
        "ocpp.keys.NoSuchKey",
        "NoSuchKey = 1",
    ),
    "negative_sample_interval": (
        KEYS_LINE,
        f"{KEYS_LINE}\nMeterValueSampleInterval = -1",
        "ocpp.keys.MeterValueSampleInterval",
        "MeterValueSampleInterval = -1",
    ),
    "sample_interval_not_an_integer": (
        KEYS_LINE,
        f"{KEYS_LINE}\nMeterValueSampleInterval = 1.5",
        "ocpp.keys.MeterValueSampleInterval",
        "MeterValueSampleInterval = 1.5",
    ),
    "lower_case_key_bad_value": (
        KEYS_LINE,
        f'{KEYS_LINE}\nheartbeatinterval = "soon"',
        "ocpp.keys.heartbeatinterval",
        "heartbeatinterval = ",
    ),
    "default_id_tag_too_long": (
        KEYS_LINE,
        f'{KEYS_LINE}\nDefaultIdTag = "{"T" * 21}"',
        "ocpp.keys.DefaultIdTag",
        "DefaultIdTag = ",
    ),
    "read_only_key_seeded": (
        KEYS_LINE,
        f"{KEYS_LINE}\nNumberOfConnectors = 3",
        "ocpp.keys.NumberOfConnectors",
        "NumberOfConnectors = 3",
    ),
    "unknown_model": (
        'model = "EVlink Pro DC 180"',
        'model = "EVlink Pro DC 999"',
        "station.model",
        'model = "EVlink Pro DC 999"',
    ),
    "url_not_websocket": (
        'supervision_url = "ws://127.0.0.1:9/ocpp"',
        'supervision_url = "http://127.0.0.1:9/ocpp"',
        "ocpp.supervision_url",
        "supervision_url = ",
    ),
    "unknown_station_key": (
        'serial_number = "SN-TEST-1"',
        'serial_number = "SN-TEST-1"\ncolour = "red"',
        "station.colour",
        'colour = "red"',
    ),
    "driver_name_not_a_string": ('meter = "mock"', "meter = 5", "drivers.meter", "meter = 5"),
}


@pytest.mark.parametrize("name", sorted(WRONG_VALUES))
async def test_r_conf_5_wrong_value_exits_2_naming_key_and_line(tmp_path, name):
    old, new, key, needle = WRONG_VALUES[name]
    text = valid_text(tmp_path)
    assert text.count(old) == 1
    text = text.replace(old, new)
    path = write_settings(tmp_path, text)
    line = line_of(text, needle)
    code, _out, err = await evsectl("run", "--config", str(path))
    assert code == 2, err
    assert f"{path}:{line}: {key}:" in err, err
    assert not (tmp_path / "control.sock").exists()




async def test_r_conf_5_bad_key_in_inline_table_names_its_line(tmp_path):
    text = valid_text(tmp_path)
    start = text.index("[ocpp.keys]")
    end = text.index("[drivers]")
    text = text[:start] + text[end:]  # drop the [ocpp.keys] table ...
    text = text.replace(
        "reconnect_max_s = 1", "reconnect_max_s = 1\nkeys = { NoSuchKey = 1 }"
    )  # ... inline it
    path = write_settings(tmp_path, text)
    line = line_of(text, "keys = { NoSuchKey = 1 }")
    code, _out, err = await evsectl("run", "--config", str(path))
    assert code == 2, err
    assert "ocpp.keys.NoSuchKey" in err
    assert f"{path}:{line}: ocpp.keys.NoSuchKey:" in err, err


async def test_r_conf_5_bad_secret_key_is_named_but_its_value_never_printed(tmp_path):
    secret = "not-hex-but-very-secret-value"
    text = valid_text(tmp_path).replace(
        "MinimumStatusDuration = 0", f'MinimumStatusDuration = 0\nAuthorizationKey = "{secret}"'
    )
    path = write_settings(tmp_path, text)
    code, out, err = await evsectl("run", "--config", str(path))
    assert code == 2, err
    assert f"{path}:{line_of(text, 'AuthorizationKey')}: ocpp.keys.AuthorizationKey:" in err, err
    assert secret not in err and secret not in out


# ---------------------------------------------------------------- R-HW 5: drivers


async def test_r_hw_5_unknown_driver_exits_3_listing_available_drivers(tmp_path):
    text = valid_text(tmp_path).replace('meter = "mock"', 'meter = "nosuchmeter"')
    path = write_settings(tmp_path, text)
    code, _out, err = await evsectl("run", "--config", str(path))
    assert code == 3, err
    assert "drivers.meter" in err and "nosuchmeter" in err
    assert "available:" in err and "mock" in err.split("available:", 1)[1], err
    assert not (tmp_path / "control.sock").exists()


# ---------------------------------------------------------------- the state store


async def test_corrupt_state_database_exits_3_and_is_left_alone(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    db = state / "evsectl.sqlite"
    garbage = b"this is not an SQLite database, it is a test\n" * 200
    db.write_bytes(garbage)
    before = db.stat()
    path = write_settings(tmp_path, valid_text(tmp_path))
    code, _out, err = await evsectl("run", "--config", str(path))
    assert code == 3, err
    assert str(db) in err and "corrupt" in err, err
    assert db.read_bytes() == garbage
    assert db.stat().st_size == before.st_size and db.stat().st_mtime_ns == before.st_mtime_ns
    assert not (tmp_path / "control.sock").exists()


# ---------------------------------------------------------------- the CLI


async def test_cli_without_daemon_says_not_running(tmp_path):
    path = write_settings(tmp_path, valid_text(tmp_path))
    for args in (["status"], ["status", "--json"], ["sim", "plug", "1"], ["sim", "badge", "AABB"]):
        code, out, err = await evsectl("--config", str(path), *args)
        assert code != 0, args
        assert "not running" in err, (args, err)
        assert out == ""


async def test_cli_after_kill9_stale_socket_says_not_running(csms, make_daemon):
    d = make_daemon(csms.url)
    await d.start()
    await d.kill9()
    assert d.socket.exists()  # left behind by the killed daemon
    code, _out, err = await evsectl("status", "--config", str(d.config))
    assert code != 0 and "not running" in err, err


async def test_cli_status_json_with_daemon(daemon, csms):
    code, out, err = await evsectl("status", "--json", "--config", str(daemon.config))
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1
    status = json.loads(out)
    assert isinstance(status, dict)
    assert status["link"] == "connected"
    assert [c["id"] for c in status["connectors"]] == [1, 2]
    for c in status["connectors"]:
        assert CONNECTOR_FIELDS <= c.keys(), c
        assert c["status"] == "Available" and c["transaction_id"] is None
    # during a transaction, driven through the CLI itself
    code, _, err = await evsectl("--config", str(daemon.config), "sim", "plug", "1")
    assert code == 0, err
    await daemon.until(lambda s: s["connectors"][0]["status"] == "Preparing", what="Preparing")
    code, _, err = await evsectl("--config", str(daemon.config), "sim", "badge", "AABBCCDD")
    assert code == 0, err
    await daemon.until(lambda s: s["connectors"][0]["transaction_id"] is not None, what="tx id")
    daemon.advance(3)
    await daemon.until(lambda s: s["connectors"][0]["power_w"] > 0, what="power")
    code, out, err = await evsectl("status", "--json", "--config", str(daemon.config))
    assert code == 0, err
    c1 = json.loads(out)["connectors"][0]
    assert c1["status"] == "Charging" and isinstance(c1["transaction_id"], int)
    assert isinstance(c1["energy_wh"], int) and c1["power_w"] > 0
    assert c1["soc"] is None or 0 <= c1["soc"] <= 100


async def test_cli_sim_refuses_a_bad_connector(daemon):
    code, _out, err = await evsectl("--config", str(daemon.config), "sim", "plug", "9")
    assert code == 1 and "no connector 9" in err, err


# ---------------------------------------------------------------- R-BOOT 4: the CSMS link


async def test_r_boot_4_unreachable_csms_daemon_stays_up_and_boots_when_it_appears(make_daemon):
    port = free_port()  # nothing listens here
    d = make_daemon(f"ws://127.0.0.1:{port}/ocpp")
    await d.start()
    end = asyncio.get_running_loop().time() + 10
    while "reconnecting in" not in d.log_path.read_text(errors="replace"):  # a connect failed
        assert asyncio.get_running_loop().time() < end, d.log_tail()
        await asyncio.sleep(0.05)
    # R-BOOT 4: a randomised, capped back-off, never a tight loop (reconnect_max_s = 1 here)
    delays = [
        float(x)
        for x in re.findall(r"reconnecting in ([0-9.]+) s", d.log_path.read_text(errors="replace"))
    ]
    assert delays and all(0.1 <= x <= 1.0 for x in delays), delays
    code, out, err = await evsectl("status", "--json", "--config", str(d.config))
    assert code == 0, err
    assert json.loads(out)["link"] != "connected"
    assert d.proc is not None and d.proc.returncode is None
    async with CentralSystem("127.0.0.1", port) as csms:
        await csms.wait_for("BootNotification", identity=BOX, timeout=15)
        await d.until(lambda s: s["link"] == "connected", what="boot once the CSMS is there")
        code, out, err = await evsectl("status", "--json", "--config", str(d.config))
        assert json.loads(out)["link"] == "connected"
        await d.stop()


async def test_r_tx_4_csms_closes_mid_call_start_transaction_delivered_once_in_order(daemon, csms):
    csms.respond("StartTransaction", no_reply=True, once=True)
    mark = csms.mark()
    daemon.plug(1)
    daemon.badge("AABBCCDD")
    lost = await csms.wait_for("StartTransaction", since=mark)
    daemon.advance(3)
    daemon.advance(61)  # a MeterValues is queued behind the unanswered StartTransaction
    await daemon.until(lambda s: s["queued_messages"] >= 2, what="MeterValues queued")
    # in order: nothing of the transaction goes out before its StartTransaction is answered
    assert [r for r in csms.calls("MeterValues") if r.seq > mark] == []
    await csms.disconnect(BOX)
    boot = await csms.wait_for("BootNotification", since=lost.seq, timeout=15)
    start = await csms.wait_for("StartTransaction", since=boot.seq)
    assert start.payload == lost.payload  # the same message, not a new one
    mv = await csms.wait_for("MeterValues", since=boot.seq)
    assert mv.seq > start.seq
    tx_id = await daemon.until(lambda s: s["connectors"][0]["transaction_id"], what="tx id")
    assert mv.payload["transactionId"] == tx_id
    after = csms.mark()
    daemon.badge("AABBCCDD")
    stop = await csms.wait_for("StopTransaction", since=after)
    assert stop.payload["transactionId"] == tx_id
    # a round trip as a barrier, then: exactly one StartTransaction after the reconnect
    await csms.call(BOX, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    await csms.wait_for("Heartbeat", since=stop.seq)
    assert [r.seq for r in csms.calls("StartTransaction") if r.seq > boot.seq] == [start.seq]
    await daemon.until(lambda s: s["queued_messages"] == 0, what="queue empty")
    csms.assert_clean(BOX)


async def _no_call_after(csms: CentralSystem, action: str, since: int) -> None:
    """Round trip (TriggerMessage Heartbeat) then assert ``action`` was not sent after ``since``."""
    mark = csms.mark()
    await csms.call(BOX, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    await csms.wait_for("Heartbeat", since=mark)
    assert [r for r in csms.calls(action) if r.seq > since] == []


async def test_r_tx_4_callerror_on_start_transaction_retried_then_dropped(csms, make_daemon):
    d = make_daemon(
        csms.url, keys={"TransactionMessageAttempts": 3, "TransactionMessageRetryInterval": 30}
    )
    await d.start()
    await d.until(lambda s: s["link"] == "connected", what="boot")
    csms.respond("StartTransaction", error="InternalError")
    mark = csms.mark()
    d.plug(1)
    d.badge("AABBCCDD")
    first = await csms.wait_for("StartTransaction", since=mark)
    # (each round trip below also makes sure the charger has taken the CALLERROR in
    # before the clock moves: the retry is timed from the moment of the error)
    await _no_call_after(csms, "StartTransaction", first.seq)
    d.advance(25)  # RetryInterval x 1 = 30 s: not yet
    await _no_call_after(csms, "StartTransaction", first.seq)
    d.advance(6)
    second = await csms.wait_for("StartTransaction", since=first.seq)
    await _no_call_after(csms, "StartTransaction", second.seq)
    d.advance(54)  # RetryInterval x 2 = 60 s: not yet
    await _no_call_after(csms, "StartTransaction", second.seq)
    d.advance(7)
    third = await csms.wait_for("StartTransaction", since=second.seq)
    await _no_call_after(csms, "StartTransaction", third.seq)
    assert first.payload == second.payload == third.payload
    # TransactionMessageAttempts = 3 reached: dropped, never sent again
    d.advance(200)
    d.advance(200)
    await _no_call_after(csms, "StartTransaction", third.seq)
    await d.until(lambda s: s["queued_messages"] == 0, what="dropped from the queue")
    # the MeterValues queued behind it belong to a transaction the CSMS never numbered: dropped too
    assert [r for r in csms.calls("MeterValues") if r.seq > mark] == []
    assert d.proc is not None and d.proc.returncode is None
    assert d.status()["link"] == "connected"


# ------------------------------------------------------------ R-DT 1: a cost that is not a number



@pytest.mark.parametrize("total", ["1e999", "NaN"])
async def test_r_dt_1_non_finite_total_cost_rejected_and_status_json_stays_json(
    daemon, csms, total
):
    data = f'{{"connectID": 1, "totalCost": {total}, "currency": "EUR", "transactionId": 1}}'
    answer = await csms.call(
        BOX, "DataTransfer", {"vendorId": "com.se.cost", "messageId": "CostUpdated", "data": data}
    )
    code, out, err = await evsectl("status", "--json", "--config", str(daemon.config))
    assert code == 0, err

    def not_json(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    json.loads(out, parse_constant=not_json)
    assert answer == {"status": "Rejected"}
