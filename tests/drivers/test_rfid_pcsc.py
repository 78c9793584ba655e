"""PcscRfidReader against pcscd + vpcd with our virtual card, pcscd in its own network
namespace. Skipped (with the reason) when not root or pcscd/vpcd/pyscard are missing."""

from __future__ import annotations

import asyncio
import time

import pytest

from fake_pcsc import Pcscd, VirtualCard, why_unavailable

from drivers import registry
from drivers.interfaces import DriverError, FaultCleared, FaultRaised, TagPresented

UID = "04A1B2C3D4E5F6"


async def wait_for(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def pcscd():
    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    daemon = Pcscd()
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture
def card(pcscd):
    c = VirtualCard(pcscd)
    yield c
    c.remove()


def tags(emitted):
    return [e.id_tag for e in emitted.events if isinstance(e, TagPresented)]


def faults(emitted):
    return [e for e in emitted.events if isinstance(e, FaultRaised | FaultCleared)]


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("hex", UID), ("hex-reversed", "F6E5D4C3B2A104"), ("decimal", str(int(UID, 16)))],
)
async def test_r_hw_2_uid_as_id_tag_in_each_format(card, make_ctx, emitted, fmt, expected):
    reader = registry.load("rfid", "pcsc", make_ctx(options={"uid_format": fmt, "wait_s": 0.2}))
    await reader.start()
    try:
        await wait_for(lambda: reader.reader_ok)
        card.insert(UID)
        await wait_for(lambda: tags(emitted))
        assert tags(emitted) == [expected]
        assert bytes([0xFF, 0xCA, 0, 0, 0]) in card.apdus
    finally:
        await reader.close()
    assert not faults(emitted)


async def test_r_hw_2_one_presentation_is_one_event(card, make_ctx, emitted):
    reader = registry.load("rfid", "pcsc", make_ctx(options={"wait_s": 0.2}))
    await reader.start()
    try:
        await wait_for(lambda: reader.reader_ok)
        card.insert(UID)
        await wait_for(lambda: tags(emitted))
        await asyncio.sleep(1.5)  # held on the reader: no repeat
        assert tags(emitted) == [UID]
        card.remove()
        await asyncio.sleep(0.8)
        card.insert("11223344")
        await wait_for(lambda: len(tags(emitted)) == 2)
        card.remove()
        await asyncio.sleep(0.8)
        card.insert(UID)
        await wait_for(lambda: len(tags(emitted)) == 3)
        assert tags(emitted) == [UID, "11223344", UID]
    finally:
        await reader.close()


async def test_r_hw_2_reader_failure_dtc_and_recovery(pcscd, make_ctx, emitted):
    reader = registry.load(
        "rfid", "pcsc", make_ctx(options={"wait_s": 0.2, "retry_interval_s": 0.2})
    )
    await reader.start()
    try:
        await wait_for(lambda: reader.reader_ok)
        pcscd.stop()  # the reader (and its service) disappears
        await wait_for(lambda: faults(emitted) == [FaultRaised("0x100005")])
        assert not reader.reader_ok
        await asyncio.sleep(0.6)
        assert faults(emitted) == [FaultRaised("0x100005")]  # raised once
        pcscd.start()
        await wait_for(lambda: len(faults(emitted)) == 2, timeout_s=10)
        assert faults(emitted)[1] == FaultCleared("0x100005")
        card = VirtualCard(pcscd)
        card.insert(UID)
        try:
            await wait_for(lambda: tags(emitted) == [UID])
        finally:
            card.remove()
    finally:
        await reader.close()


async def test_r_hw_2_no_service_at_start_is_reader_failure(make_ctx, emitted):
    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    reader = registry.load("rfid", "pcsc", make_ctx(options={"wait_s": 0.2, "retry_interval_s": 0.2}))
    await reader.start()
    try:
        await wait_for(lambda: faults(emitted) == [FaultRaised("0x100005")])
    finally:
        await reader.close()


async def test_r_hw_2_close_returns_promptly(pcscd, make_ctx):
    reader = registry.load("rfid", "pcsc", make_ctx(options={"wait_s": 5.0}))
    await reader.start()
    await wait_for(lambda: reader.reader_ok)
    t0 = time.monotonic()
    await reader.close()
    await reader.close()
    assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("options", [{"uid_format": "octal"}, {"wait_s": 0}, {"failure_after_s": -1}])
def test_bad_options_are_driver_errors(make_ctx, options):
    pytest.importorskip("smartcard")
    with pytest.raises(DriverError):
        registry.load("rfid", "pcsc", make_ctx(options=options))
