"""Every screen rendered headless at both resolutions from IPC snapshots (R-HMI, R-DT).

PNGs of every frame go to tests/output/hmi/ for a look.
"""

from __future__ import annotations

from dataclasses import replace

import pygame
import pytest
import zxingcpp

from controller.ipc import messages as m
from hmi import samples, view
from hmi.app import Hmi
from hmi.render import MIN_TARGET, Renderer

SIZES = samples.SIZES


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def world(request, tmp_path_factory):
    size = request.param
    pics = samples.make_pictures(tmp_path_factory.mktemp("pics"), size)
    return size, samples.snapshots(size, pics)


def draw(size, snap, *, page="main", now=1005.0, last_activity=1000.0, renderer=None):
    r = renderer or Renderer(size)
    frame = r.draw(m.decode(m.encode(snap)), view.UiState(page=page, last_activity=last_activity), now)
    return r, frame


def save(r, out_dir, name, size):
    pygame.image.save(r.surface, str(out_dir / f"{name}-{size[0]}x{size[1]}.png"))


def is_blank(surface: pygame.Surface, rect: pygame.Rect, color) -> bool:
    sub = surface.subsurface(rect)
    raw = pygame.image.tobytes(sub, "RGB")
    return raw == bytes(color) * (rect.w * rect.h)


@pytest.mark.parametrize("name", list(samples.snapshots((800, 480), {
    k: m.Picture("/nonexistent.png", 1) for k in ("tariff", "logo", "screensaver1", "screensaver2")})))
def test_every_screen_renders_at_the_model_resolution(world, name, out_dir):
    size, snaps = world
    now = 1500.0 if name.startswith("screensaver") else 1005.0
    r, frame = draw(size, snaps[name], page="tariff" if name == "tariff" else "main", now=now)
    expected = name.split("_no_cost")[0].replace("screensaver_default", "screensaver")
    assert frame.screen == expected
    assert r.surface.get_size() == size
    for target, rect in frame.targets.items():
        assert rect.h >= MIN_TARGET and rect.w >= MIN_TARGET, target
    save(r, out_dir, name, size)


def test_cost_area_blank_before_cost_updated_and_amount_after(world, out_dir):
    size, snaps = world
    r, frame = draw(size, snaps["charging_no_cost"])
    assert frame.texts["cost"] == ""
    from hmi.render import BG

    assert is_blank(r.surface, frame.areas["cost"], BG)  # "the place is totally empty"
    save(r, out_dir, "cost-before", size)
    # the first CostUpdated: the amount appears; later ones count up like a fuel pump
    r, frame = draw(size, snaps["charging"], renderer=r, now=1010.0)
    assert frame.texts["cost"] == "16.78 EUR"
    assert not is_blank(r.surface, frame.areas["cost"], BG)
    c1 = snaps["charging"].connectors[0]
    more = replace(snaps["charging"], connectors=(replace(c1, cost=m.Cost("EUR", 18.78)),
                                                  snaps["charging"].connectors[1]))
    _, frame = draw(size, more, renderer=r, now=1011.0)
    assert frame.texts["cost"] == "16.78 EUR"  # starts from the amount shown
    _, frame = draw(size, more, renderer=r, now=1011.75)
    assert frame.texts["cost"] == "17.78 EUR"  # half way
    assert r.animating(1011.75)
    _, frame = draw(size, more, renderer=r, now=1013.0)
    assert frame.texts["cost"] == "18.78 EUR" and not r.animating(1013.0)
    save(r, out_dir, "cost-after", size)


def test_whole_number_currencies_have_no_decimals():
    assert view.format_cost("VNĐ", 16780) == "16,780 VNĐ"
    assert view.format_cost("EUR", 1234.5) == "1,234.50 EUR"


def test_tariff_button_only_with_a_tariff_and_it_opens_the_page(world, out_dir):
    size, snaps = world
    _, frame = draw(size, replace(snaps["welcome"], tariff=None))
    assert "tariff" not in frame.targets
    clock = [1000.0]
    sent = []
    hmi = Hmi(size, send=sent.append, clock=lambda: clock[0])
    hmi.update(snaps["welcome"])
    assert hmi.render() and "tariff" in hmi.frame.targets
    hmi.touch(hmi.frame.targets["tariff"].center)
    assert hmi.render() and hmi.frame.screen == "tariff"
    assert hmi.frame.areas["tariff_picture"].w > 0
    save(hmi.renderer, out_dir, "tariff-opened", size)
    hmi.touch(hmi.frame.targets["close"].center)
    assert hmi.render() and hmi.frame.screen == "welcome"
    assert m.Awake() in sent


@pytest.mark.parametrize("cid", [1, 2])
def test_qr_code_decodes_back_to_the_configured_url(world, cid):
    size, snaps = world
    snap = replace(snaps["welcome"], selected_connector=cid)
    r, frame = draw(size, snap)
    rect = frame.areas["qr"]
    raw = pygame.image.tobytes(r.surface.subsurface(rect), "RGB")
    codes = zxingcpp.read_barcodes(memoryview(raw).cast("B", (rect.h, rect.w, 3)))
    assert [c.text for c in codes] == [samples.QR1 if cid == 1 else samples.QR2]


def test_no_qr_code_when_qr_is_not_an_enabled_option(world):
    size, snaps = world
    _, frame = draw(size, replace(snaps["welcome"], auth_options=("rfid",)))
    assert "qr" not in frame.areas and frame.texts["auth"] == "RFID card"


def test_screensaver_after_the_idle_time_with_an_injected_clock(world, out_dir):
    size, snaps = world
    clock = [1000.0]
    hmi = Hmi(size, clock=lambda: clock[0])
    hmi.update(snaps["screensaver"])
    hmi.ui.last_activity = 1000.0
    hmi.render()
    assert hmi.frame.screen == "welcome"
    clock[0] = 1000.0 + snaps["screensaver"].idle_s - 1
    assert not hmi.render()  # nothing changed: nothing drawn (idle CPU ~0)
    assert hmi.next_wake() == pytest.approx(1.0)
    clock[0] += 1
    assert hmi.render() and hmi.frame.screen == "screensaver"
    first = hmi.frame.texts["picture"]
    clock[0] += 10  # two pictures alternate
    assert hmi.render() and hmi.frame.texts["picture"] != first
    save(hmi.renderer, out_dir, "screensaver-second", size)
    hmi.touch((10, 10))  # a touch wakes it, and is not taken as a button press
    assert hmi.render() and hmi.frame.screen == "welcome"


def test_a_plugged_car_keeps_the_screen_awake(world):
    size, snaps = world
    clock = [1000.0]
    hmi = Hmi(size, clock=lambda: clock[0])
    b = snaps["welcome"]
    hmi.update(b)
    clock[0] += 10_000
    hmi.render()
    assert hmi.frame.screen == "screensaver"
    plugged = replace(b, connectors=(replace(b.connectors[0], status="Preparing", plugged=True), b.connectors[1]))
    hmi.update(plugged)
    hmi.render()
    assert hmi.frame.screen == "welcome"


def test_default_screensaver_picture_when_none_was_downloaded(world):
    size, snaps = world
    _, frame = draw(size, snaps["screensaver_default"], now=5000.0)
    assert frame.screen == "screensaver" and frame.texts["picture"] == "default"


def test_touching_a_connector_sends_the_intent(world):
    size, snaps = world
    sent = []
    hmi = Hmi(size, send=sent.append, clock=lambda: 1000.0)
    hmi.update(snaps["choice"])
    hmi.render()
    assert hmi.frame.screen == "choice"
    hmi.touch(hmi.frame.targets["connector2"].center)
    assert m.Touched(2) in sent


def test_fault_page_shows_the_dtc_and_text(world):
    size, snaps = world
    _, frame = draw(size, snaps["fault"])
    assert frame.screen == "fault" and frame.texts["error"] == "0x100206 Insulation fault"


def test_out_of_service_without_a_controller(world):
    size, _ = world
    _, frame = draw(size, m.out_of_service())
    assert frame.screen == "out_of_service"


def test_a_broken_picture_falls_back_to_the_default(world, tmp_path):
    size, snaps = world
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnonsense")
    _, frame = draw(size, replace(snaps["screensaver"], screensaver=(m.Picture(str(bad), 3),)), now=5000.0)
    assert frame.texts["picture"] == "default"


@pytest.mark.parametrize("picture_size", [(400, 120), (100, 30), (200, 200)])
def test_pictures_are_scaled_to_fit_keeping_their_ratio(tmp_path, picture_size):
    surf = pygame.Surface(picture_size)
    surf.fill((200, 0, 0))
    path = tmp_path / "logo.png"
    pygame.image.save(surf, str(path))
    r = Renderer((800, 480))
    drawn = r.picture(m.Picture(str(path), 1), pygame.Rect(0, 0, 200, 60))
    assert drawn.w <= 200 and drawn.h <= 60
    assert (drawn.w == 200 or drawn.h == 60)
    assert abs(drawn.w / drawn.h - picture_size[0] / picture_size[1]) < 0.05


def test_the_screenshot_generator_writes_every_screen_at_both_sizes(tmp_path):
    written = samples.render_all(tmp_path)
    names = {p.name for p in written}
    for name in samples.snapshots((800, 480), {k: m.Picture("/x.png", 1) for k in
                                               ("tariff", "logo", "screensaver1", "screensaver2")}):
        assert {f"{name}-800x480.png", f"{name}-1024x768.png"} <= names
    assert all(pygame.image.load(str(p)).get_size() in SIZES for p in written)


def test_r_opsys_2_a_refused_boot_partition_config_shows_its_key(world, out_dir):
    size, snaps = world
    r, frame = draw(size, snaps["config_error"])
    assert frame.screen == "config_error"
    assert "ocpp.keys.NoSuchKey" in frame.texts["config_error"] and ":7:" in frame.texts["config_error"]
    save(r, out_dir, "config_error", size)
