"""R-BOOT: connection, BootNotification Accepted/Pending/Rejected, heartbeat, clock."""

from __future__ import annotations

from datetime import timedelta

from controller.core.timefmt import parse_rfc3339

BOX = "CP-TEST"


async def test_r_boot_1_2_connects_with_subprotocol_and_boots(daemon, csms):
    boot = csms.calls("BootNotification")[0]
    assert boot.payload == {
        "chargePointVendor": "Schneider Electric",
        "chargePointModel": "EVlink Pro DC 180",
        "chargePointSerialNumber": "SN-TEST-1",
        "chargeBoxSerialNumber": "SN-TEST-1",
        "firmwareVersion": "0.1.0",
    }
    for cid in (0, 1, 2):
        status = await csms.wait_for("StatusNotification", predicate=lambda r, c=cid: r.payload["connectorId"] == c)
        assert status.payload["status"] == "Available" and status.seq > boot.seq


async def _boot_with(csms, make_daemon, status):
    csms.respond("BootNotification", {"status": status, "interval": 30}, once=True)
    d = make_daemon(csms.url)
    await d.start()
    first = await csms.wait_for("BootNotification")
    await d.until(lambda s: s["link"] == status.lower(), what=status)
    return d, first


async def test_r_boot_2_pending_sends_nothing_but_boot_then_accepted(csms, make_daemon):
    d, first = await _boot_with(csms, make_daemon, "Pending")
    # while Pending the CSMS may ask; the charger answers
    answer = await csms.call(BOX, "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert answer["configurationKey"][0]["key"] == "HeartbeatInterval"
    d.plug(1)  # would cause a StatusNotification if it were allowed
    d.advance(29)
    d.badge("X")
    await csms.call(BOX, "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "30"})
    assert [r.action for r in csms.calls() if r.seq > first.seq] == []
    d.advance(2)  # the interval (30 s) has passed: BootNotification again, accepted now
    second = await csms.wait_for("BootNotification", since=first.seq)
    await d.until(lambda s: s["link"] == "connected", what="accepted")
    # the badge was handled as offline (AllowOfflineTxForUnknownId): its transaction
    # was queued while Pending and is delivered only now
    start = await csms.wait_for("StartTransaction", since=second.seq)
    assert start.payload["idTag"] == "X" and start.payload["connectorId"] == 1


async def test_r_boot_2_rejected_retries_after_interval(csms, make_daemon):
    d, first = await _boot_with(csms, make_daemon, "Rejected")
    d.advance(29)
    d.plug(1)
    await csms.call(BOX, "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert [r.action for r in csms.calls() if r.seq > first.seq] == []
    d.advance(2)
    await csms.wait_for("BootNotification", since=first.seq)
    await d.until(lambda s: s["link"] == "connected", what="accepted")


async def test_r_boot_3_heartbeat_at_the_boot_interval(daemon, csms):
    # our CSMS answers interval 300: no heartbeat before, one after
    mark = csms.mark()
    daemon.advance(299)
    await csms.call(BOX, "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert [r for r in csms.calls("Heartbeat") if r.seq > mark] == []
    daemon.advance(2)
    await csms.wait_for("Heartbeat", since=mark)
    conf = await csms.call(BOX, "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert conf["configurationKey"][0]["value"] == "300"


async def test_r_boot_5_clock_follows_csms_time(csms, make_daemon):
    future = "2031-03-04T05:06:07.000Z"
    csms.respond("BootNotification", {"status": "Accepted", "interval": 300, "currentTime": future}, once=True)
    d = make_daemon(csms.url)
    await d.start()
    boot = await csms.wait_for("BootNotification")
    status = await csms.wait_for("StatusNotification", since=boot.seq)
    sent = parse_rfc3339(status.payload["timestamp"])
    assert abs(sent - parse_rfc3339(future)) < timedelta(seconds=5)


async def test_r_boot_4_reconnects_after_the_csms_drops_the_link(daemon, csms):
    mark = csms.mark()
    await csms.disconnect(BOX)
    await csms.wait_for("BootNotification", since=mark, timeout=15)
    await daemon.until(lambda s: s["link"] == "connected", what="reconnected")
