"""Our own non-transaction CALLs (R-STATUS, OCPP-J one in flight): sent one at a time in
order; behind a CSMS that answers slowly, a connector's StatusNotification or a Heartbeat
still waiting for its turn is replaced by a newer one, so they never pile up in memory
(found by the 1 000 000-frame fuzz run: ~13 000 waiting, daemon RSS ~235 MB)."""

from __future__ import annotations

import asyncio
from typing import Any

from controller.core import commands as cmd
from controller.core import events as ev
from controller.runtime.loop import Runtime


class _Core:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def handle(self, event: Any) -> list[Any]:
        self.events.append(event)
        return []


class _Clock:
    def on_jump(self, callback: Any) -> None:
        pass


class _SlowCsms:
    """Answers each CALL only when the test says so; records what reached it, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.go = asyncio.Event()

    async def send_call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.sent.append((action, payload))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.go.wait()
        finally:
            self.in_flight -= 1
        return {"currentTime": "2026-11-26T00:00:00Z"} if action == "Heartbeat" else {}


def _status(cid: int, status: str) -> cmd.SendCall:
    return cmd.SendCall("StatusNotification", {"connectorId": cid, "errorCode": "NoError", "status": status})


async def _settle(rt: Runtime) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
    while rt._tasks:
        await asyncio.wait(set(rt._tasks))


async def test_regression_own_calls_behind_a_slow_csms_do_not_pile_up() -> None:
    core = _Core()
    rt = Runtime(core, {}, _Clock(), error_code_of=lambda _e: None)  # type: ignore[arg-type]
    csms = _SlowCsms()
    rt.link = csms  # type: ignore[assignment]
    rt._execute([_status(1, "Preparing"), cmd.SendCall("Authorize", {"idTag": "A"}, ref=("authorize", 1, "A"))])
    await asyncio.sleep(0)
    for i in range(1000):  # the CSMS has not answered the first one yet
        rt._execute([_status(1, "Charging" if i % 2 else "SuspendedEV"), _status(2, "Available"),
                     cmd.SendCall("Heartbeat", {}, ref="heartbeat")])
    rt._execute([_status(1, "Finishing"), cmd.SendCall("DataTransfer", {"vendorId": "x"})])
    for _ in range(5):
        await asyncio.sleep(0)  # the replaced ones finish cancelling
    assert len(rt._tasks) <= 8, f"{len(rt._tasks)} calls waiting: not replaced"
    csms.go.set()
    await _settle(rt)
    assert [(a, p.get("connectorId"), p.get("status")) for a, p in csms.sent] == [
        ("StatusNotification", 1, "Preparing"),  # already on the wire
        ("Authorize", None, None),  # never replaced, never reordered
        ("StatusNotification", 2, "Available"),
        ("Heartbeat", None, None),
        ("StatusNotification", 1, "Finishing"),  # the newest status of connector 1
        ("DataTransfer", None, None),
    ]
    assert csms.most_in_flight == 1
    answered = [e.ref for e in core.events if isinstance(e, ev.CallAnswered)]
    assert ("authorize", 1, "A") in answered and "heartbeat" in answered


async def test_calls_without_a_backlog_all_go_out_in_order() -> None:
    core = _Core()
    rt = Runtime(core, {}, _Clock(), error_code_of=lambda _e: None)  # type: ignore[arg-type]
    csms = _SlowCsms()
    csms.go.set()
    rt.link = csms  # type: ignore[assignment]
    for status in ("Preparing", "Charging", "Finishing", "Available"):
        rt._execute([_status(1, status)])
        await _settle(rt)
    assert [p["status"] for _a, p in csms.sent] == ["Preparing", "Charging", "Finishing", "Available"]
