"""The OCPP adapter's edge corrections (R-OPS 3), with a fake connection and a fake core port."""

from __future__ import annotations

import asyncio
import json

import pytest

from controller.ocpp.charge_point import EvseChargePoint
from controller.ocpp.link import CsmsLink


class FakeConnection:
    def __init__(self) -> None:
        self.sent: list[list] = []

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def recv(self) -> str:  # pragma: no cover - the tests route frames themselves
        raise AssertionError("not used")


class FakePort:
    """A core that handles ClearCache only."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.released = 0

    def handles(self, action: str) -> bool:
        return action == "ClearCache"

    def request(self, action: str, payload: dict) -> dict:
        self.requests.append((action, payload))
        return {"status": "Accepted"}

    def release(self) -> None:
        self.released += 1


async def _route(frame: str) -> tuple[FakeConnection, FakePort]:
    conn, port = FakeConnection(), FakePort()
    cp = EvseChargePoint("CP", conn, port)
    await cp.route_message(frame)
    return conn, port


async def test_r_ops_3_known_action_not_handled_is_not_supported():
    conn, port = await _route('[2,"a1","GetDiagnostics",{"location":"ftp://x/y"}]')
    assert conn.sent[0][:3] == [4, "a1", "NotSupported"] and port.requests == []


async def test_r_ops_3_unknown_action_is_not_implemented():
    conn, _ = await _route('[2,"a2","FooBar",{}]')
    assert conn.sent[0][:3] == [4, "a2", "NotImplemented"]


async def test_r_ops_3_handled_action_reaches_the_core_and_commands_are_released_after_the_answer():
    conn, port = await _route('[2,"a3","ClearCache",{}]')
    assert conn.sent == [[3, "a3", {"status": "Accepted"}]]
    assert port.requests == [("ClearCache", {})] and port.released == 1


async def test_r_ops_3_schema_failure_is_formation_violation_not_format_violation():
    conn, port = await _route('[2,"a4","ClearCache",{"extra":1}]')
    assert conn.sent[0][:3] == [4, "a4", "FormationViolation"] and port.requests == []


async def test_regression_call_cut_off_by_a_lost_link_raises_connection_error():
    """A CALL still waiting (for its answer, or for the one CALL in flight before it) when
    the link went raised asyncio's InvalidStateError ("Result is not set.") instead of
    ConnectionError: the log said "failed: offline Result is not set."."""

    class StuckCp:
        async def send_call(self, action: str, payload: dict) -> dict:
            await asyncio.Event().wait()  # never answered
            raise AssertionError("unreachable")

    link = CsmsLink(runtime=None, port=FakePort(), keys=None)
    link.cp = StuckCp()  # type: ignore[assignment]
    waiting = asyncio.ensure_future(link.send_call("MeterValues", {}))
    await asyncio.sleep(0)
    link._gone.set()  # the socket closed
    with pytest.raises(ConnectionError, match="link lost"):
        await waiting
