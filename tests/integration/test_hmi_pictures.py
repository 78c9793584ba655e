"""R-DT 2/3 and R-HMI over the wire: picture DataTransfers, the HMI socket, the HMI process.

The real daemon talks to our CSMS on 127.0.0.1 and fetches pictures from real
HTTP(S) and FTP servers (``file_servers``). Each message is answered with the
right ``downloadStatus``, stored under ``<state>/pictures/`` and published on
the HMI socket; each failure replaces nothing. The HMI process itself
(``python -m hmi``, headless) survives the controller restarting, and killing
it does not disturb a charge.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import REPO, Daemon, kill_all

from controller.ipc import messages as m

BOX = "CP-TEST"
TARIFF = ("com.se.tariff", "TariffDownload")
IMAGE = ("Schneider Electric", "ImageDownload")
HMI_TOML = "\n[hmi]\ndownload_deadline_s = 4\nidle_s = 30\n"

pytestmark = pytest.mark.timeout(120)
pytest_plugins = ["file_servers"]


def png(w: int, h: int, seed: int = 0) -> bytes:
    """A valid RGB PNG made with the standard library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes([(x + y + seed) % 256 for x in range(w) for _ in range(3)]) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture
async def daemon(csms: Any, tmp_path: Path):
    made: list[Daemon] = []

    async def start(d: Daemon | None = None) -> Daemon:
        if d is None:
            work = tmp_path / f"d{len(made)}"
            work.mkdir()
            d = Daemon(work, csms.url, extra=HMI_TOML, keys={"QRcode1": "https://pay.example/c1"})
            made.append(d)
        await d.start_booted(csms, BOX)
        return d

    yield start
    await kill_all(made)


async def transfer(csms: Any, which: tuple[str, str], data: Any) -> dict[str, Any]:
    payload = {"vendorId": which[0], "messageId": which[1]}
    if data is not None:
        payload["data"] = data if isinstance(data, str) else json.dumps(data)
    return await csms.call(BOX, "DataTransfer", payload, timeout=10)


def downloaded(answer: dict[str, Any]) -> str:
    return json.loads(answer["data"])["downloadStatus"]


def hmi_socket(d: Daemon) -> Path:
    return d.tmp / "hmi.sock"


def read_snapshot(path: Path) -> m.Snapshot:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(path))
        line = s.makefile("rb").readline()
    msg = m.decode(line)
    assert isinstance(msg, m.Snapshot)
    return msg


# --------------------------------------------------------------------------- success
async def test_tariff_over_http_is_stored_answered_and_published(daemon, csms, web):
    d = await daemon()
    body = png(564, 312)
    web.state.files["tariff.png"] = body
    answer = await transfer(csms, TARIFF, {"fileType": "Tariff", "type": "file",
                                           "location": web.url("/fw/tariff.png"), "size": len(body)})
    assert answer["status"] == "Accepted" and downloaded(answer) == "Downloaded"
    stored = d.state_dir / "pictures" / "tariff.png"
    assert stored.read_bytes() == body
    snap = read_snapshot(hmi_socket(d))
    assert snap.tariff is not None and Path(snap.tariff.path) == stored
    assert snap.screen == (1024, 768)
    assert snap.connectors[0].qr_url == "https://pay.example/c1"


async def test_logo_over_ftp_and_the_guide_s_unquoted_key_form(daemon, csms, ftp):
    d = await daemon()
    (ftp.root / "fw" / "logo.png").write_bytes(png(200, 60))
    data = '{fileType:"logo",type:"file",location:"%s"}' % ftp.url("/fw/logo.png")
    answer = await transfer(csms, IMAGE, data)
    assert downloaded(answer) == "Downloaded"
    assert (d.state_dir / "pictures" / "logo.png").read_bytes() == png(200, 60)
    assert read_snapshot(hmi_socket(d)).logo is not None


async def test_screensaver_folder_over_ftp_takes_two_pictures_and_a_file_then_one(daemon, csms, ftp, web):
    d = await daemon()
    folder = ftp.root / "fw" / "saver"
    folder.mkdir()
    (folder / "a.png").write_bytes(png(1024, 768, 1))
    (folder / "b.png").write_bytes(png(1024, 768, 2))
    (folder / "readme.txt").write_text("not a picture")
    answer = await transfer(csms, IMAGE, {"fileType": "screensaver", "type": "folder",
                                          "location": ftp.url("/fw/saver/")})
    assert downloaded(answer) == "Downloaded"
    snap = read_snapshot(hmi_socket(d))
    assert [Path(p.path).name for p in snap.screensaver] == ["screensaver1.png", "screensaver2.png"]
    web.state.files["one.png"] = png(800, 480)
    answer = await transfer(csms, IMAGE, {"fileType": "screensaver", "type": "file",
                                          "location": web.url("/fw/one.png")})
    assert downloaded(answer) == "Downloaded"
    snap = read_snapshot(hmi_socket(d))
    assert [Path(p.path).name for p in snap.screensaver] == ["screensaver1.png"]
    assert not (d.state_dir / "pictures" / "screensaver2.png").exists()


async def test_pictures_survive_a_restart(daemon, csms, web):
    d = await daemon()
    web.state.files["t.png"] = png(987, 546)
    assert downloaded(await transfer(csms, TARIFF, {"fileType": "Tariff", "type": "file",
                                                    "location": web.url("/fw/t.png")})) == "Downloaded"
    before = read_snapshot(hmi_socket(d)).tariff
    assert await d.stop() == 0
    await daemon(d)
    assert read_snapshot(hmi_socket(d)).tariff == before


# --------------------------------------------------------------------------- failures
@pytest.mark.parametrize(("case", "status"), [
    ("404", "DownloadFailed"),
    ("too_large", "TooLarge"),
    ("announced_too_large", "TooLarge"),
    ("not_png", "InvalidImage"),
    ("folder_over_http", "InvalidRequest"),
    ("bad_scheme", "InvalidRequest"),
    ("refused", "DownloadFailed"),
])
async def test_failures_are_answered_and_replace_nothing(daemon, csms, web, closed_port, case, status):
    d = await daemon()
    good = png(564, 312)
    web.state.files["good.png"] = good
    web.state.files["big.png"] = good + b"\0" * (2048 * 1024)
    web.state.files["text.png"] = b"<html>not a picture</html>"
    web.state.files["saver.png"] = png(1024, 768)
    assert downloaded(await transfer(csms, TARIFF, {"fileType": "Tariff", "type": "file",
                                                    "location": web.url("/fw/good.png")})) == "Downloaded"
    assert downloaded(await transfer(csms, IMAGE, {"fileType": "screensaver", "type": "file",
                                                   "location": web.url("/fw/saver.png")})) == "Downloaded"
    before = read_snapshot(hmi_socket(d))
    which, data = TARIFF, {"fileType": "Tariff", "type": "file"}
    if case == "404":
        data["location"] = web.url("/fw/missing.png")
    elif case == "too_large":
        data["location"] = web.url("/fw/big.png")
    elif case == "announced_too_large":
        data.update(location=web.url("/fw/good.png"), size=2048 * 1024 + 1)
    elif case == "not_png":
        data["location"] = web.url("/fw/text.png")
    elif case == "folder_over_http":
        which, data = IMAGE, {"fileType": "screensaver", "type": "folder", "location": web.url("/fw/")}
    elif case == "bad_scheme":
        data["location"] = "file:///etc/passwd"
    elif case == "refused":
        data["location"] = f"http://127.0.0.1:{closed_port}/tariff.png"
    answer = await transfer(csms, which, data)
    assert answer["status"] == "Rejected" and downloaded(answer) == status
    assert (d.state_dir / "pictures" / "tariff.png").read_bytes() == good
    after = read_snapshot(hmi_socket(d))
    assert (after.tariff, after.screensaver) == (before.tariff, before.screensaver)


async def test_unknown_vendor_and_message_ids(daemon, csms):
    await daemon()
    assert await transfer(csms, ("com.example", "TariffDownload"), {}) == {"status": "UnknownVendorId"}
    assert await transfer(csms, ("com.se.tariff", "ImageDownload"), {}) == {"status": "UnknownMessageId"}
    assert await transfer(csms, ("Schneider Electric", "Nope"), {}) == {"status": "UnknownMessageId"}


async def test_cost_updated_is_published_to_the_hmi(daemon, csms):
    d = await daemon()
    assert read_snapshot(hmi_socket(d)).connectors[0].cost is None
    data = {"currency": "EUR", "method": "CostUpdated", "connectID": 1, "totalCost": 3.5, "transactionId": 1}
    assert (await transfer(csms, ("com.se.cost", "CostUpdated"), data))["status"] == "Accepted"
    assert read_snapshot(hmi_socket(d)).connectors[0].cost == m.Cost("EUR", 3.5)


# --------------------------------------------------------------------------- the HMI process
async def _hmi(path: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", "PYGAME_HIDE_SUPPORT_PROMPT": "1"}
    out = open(log, "ab")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hmi", "--socket", str(path),
                                                stdout=out, stderr=out, env=env, cwd=str(REPO))
    out.close()
    return proc


async def _until_log(log: Path, text: str, count: int = 1, timeout_s: float = 15.0) -> None:
    end = asyncio.get_running_loop().time() + timeout_s
    while log.read_text(errors="replace").count(text) < count:
        assert asyncio.get_running_loop().time() < end, f"{text!r} x{count} not in\n{log.read_text()}"
        await asyncio.sleep(0.05)


async def test_hmi_survives_the_controller_restarting_and_its_crash_does_not_stop_a_charge(daemon, csms, tmp_path):
    d = await daemon()
    log = tmp_path / "hmi.log"
    hmi = await _hmi(hmi_socket(d), log)
    try:
        await _until_log(log, "connected to the controller")
        # a touch on the screen reaches the core (Touched intent) through the socket too
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(hmi_socket(d)))
            s.sendall(m.encode(m.Touched(2)))
            await d.until(lambda st: st["selected_connector"] == 2, what="touch")
        await d.kill9()  # the controller goes away: the HMI keeps running ("out of service")
        await _until_log(log, "controller connection lost")
        await asyncio.sleep(1.5)
        assert hmi.returncode is None
        await daemon(d)
        await _until_log(log, "connected to the controller", count=2)
        # start a charge, then crash the HMI: the charge goes on
        d.plug(1)
        d.badge("TAG-1")
        await d.until(lambda st: st["connectors"][0]["status"] == "Charging", what="charging")
        hmi.send_signal(signal.SIGKILL)
        await hmi.wait()
        e0 = d.connector(1)["meter_wh"]
        d.advance(30)
        await d.until(lambda st: st["connectors"][0]["meter_wh"] > e0, what="energy still flowing")
        assert d.connector(1)["status"] == "Charging"
        assert read_snapshot(hmi_socket(d)).connectors[0].status == "Charging"  # a new screen connects
    finally:
        if hmi.returncode is None:
            hmi.kill()
            await hmi.wait()


@pytest.fixture
def hanging_http():
    """A port whose server accepts, reads the request, says when it has one, and never answers."""
    import threading

    srv = socket.create_server(("127.0.0.1", 0))
    asked, stop, held = threading.Event(), threading.Event(), []

    def serve() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            held.append(conn)
            conn.settimeout(2)
            try:
                conn.recv(4096)
            except OSError:
                pass
            asked.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1], asked
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    srv.close()


async def test_regression_picture_download_does_not_block_the_event_loop(daemon, csms, hanging_http):
    """A download that hangs (a server that never answers, up to the 4 s deadline) runs off
    the daemon's event loop: the rig control socket, served by that loop, keeps answering
    while the DataTransfer waits for its downloadStatus (was: the loop blocked up to 8 s)."""
    port, asked = hanging_http
    d = await daemon()
    pending = asyncio.ensure_future(transfer(csms, TARIFF, {
        "fileType": "Tariff", "type": "file", "location": f"http://127.0.0.1:{port}/t.png"}))
    assert await asyncio.to_thread(asked.wait, 5), "the daemon never asked for the picture"
    answered_meanwhile = 0
    for _ in range(5):
        status = await asyncio.wait_for(asyncio.to_thread(d.status), timeout=1.5)
        assert status["link"] == "connected"
        answered_meanwhile += not pending.done()
    assert answered_meanwhile == 5, "the control socket waited for the download"
    answer = await pending
    assert answer["status"] == "Rejected" and downloaded(answer) == "DownloadFailed"
