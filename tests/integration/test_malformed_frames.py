"""R-OPS 3: malformed and schema-invalid frames from the CSMS get the right CALLERROR,
and the daemon stays up and on the same connection.

Run against both central systems that can send raw frames: ours (``csms.send_raw``,
the charger's answers from ``csms.frames``) and the node peer (``peer_csms.raw``, the
charger's answers from its ``message``/``in`` events). A hypothesis test feeds random
JSON payloads for a few actions through our CSMS, and one mutates the sample payload of
every action member by member (the samples and the right-code rules of bench/fuzz.py).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from daemon_harness import Daemon
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BOX = "CP-TEST"

#: every CALLERROR code OCPP-J 1.6 defines (§4.2.3), with the spec's spelling
OCPP16_ERROR_CODES = {
    "NotImplemented",
    "NotSupported",
    "InternalError",
    "ProtocolError",
    "SecurityError",
    "FormationViolation",
    "PropertyConstraintViolation",
    "OccurenceConstraintViolation",
    "TypeConstraintViolation",
    "GenericError",
}


# ---------------------------------------------------------------- the two central systems


class RawSide:
    """What a test needs from a CSMS that can send raw frames to the charger."""

    name = ""
    daemon: Daemon

    async def mark(self) -> int:
        raise NotImplementedError

    async def send(self, text: str) -> None:
        raise NotImplementedError

    async def frames_in(self, since: int) -> list[tuple[int, Any]]:
        """(seq, parsed JSON or None) of every frame the charger sent after ``since``."""
        raise NotImplementedError

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def disconnects(self, since: int) -> list[Any]:
        raise NotImplementedError

    async def boots(self, since: int) -> list[Any]:
        raise NotImplementedError

    async def connected(self) -> bool:
        raise NotImplementedError

    async def assert_clean(self, raw_ids: set[str]) -> None:
        raise NotImplementedError


def _answers(frame: Any, uid: str) -> bool:
    return isinstance(frame, list) and len(frame) >= 2 and frame[0] in (3, 4) and frame[1] == uid


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


class OurSide(RawSide):
    name = "ours"

    def __init__(self, csms: Any) -> None:
        self.csms = csms

    async def mark(self) -> int:
        return self.csms.mark()

    async def send(self, text: str) -> None:
        await self.csms.send_raw(BOX, text)

    async def frames_in(self, since: int) -> list[tuple[int, Any]]:
        return [(f.seq, f.json()) for f in self.csms.frames(BOX, "in", since)]

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.csms.call(BOX, action, payload)

    async def disconnects(self, since: int) -> list[Any]:
        return self.csms.events(BOX, "disconnect", since)

    async def boots(self, since: int) -> list[Any]:
        return [r for r in self.csms.calls("BootNotification", BOX) if r.seq > since]

    async def connected(self) -> bool:
        return self.csms.connected(BOX)

    async def assert_clean(self, raw_ids: set[str]) -> None:
        self.csms.assert_clean(BOX)


class PeerSide(RawSide):
    name = "peer"

    def __init__(self, peer: Any) -> None:
        self.peer = peer

    async def mark(self) -> int:
        return await self.peer.mark()

    async def send(self, text: str) -> None:
        await self.peer.raw(BOX, text)

    async def frames_in(self, since: int) -> list[tuple[int, Any]]:
        events = await self.peer.events(type="message", direction="in", identity=BOX, since=since)
        return [(e["seq"], _json(e["message"])) for e in events]

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.peer.call(BOX, action, payload)

    async def disconnects(self, since: int) -> list[Any]:
        return await self.peer.events(type="disconnect", identity=BOX, since=since)

    async def boots(self, since: int) -> list[Any]:
        return await self.peer.events(
            type="callIn", method="BootNotification", identity=BOX, since=since
        )

    async def connected(self) -> bool:
        return any(cp["identity"] == BOX for cp in await self.peer.chargepoints())

    async def assert_clean(self, raw_ids: set[str]) -> None:
        """No strict-validation failure; the only bad messages are the charger's answers to
        the raw frames the peer sent (ocpp-rpc did not send them, so it does not know their id)."""
        problems = []
        for event in await self.peer.events(identity=BOX):
            if event["type"] == "strictValidationFailure":
                problems.append(event)
            elif event["type"] == "badMessage":
                frame = _json(event.get("raw") or "")
                if not (isinstance(frame, list) and len(frame) >= 2 and frame[1] in raw_ids):
                    problems.append(event)
        assert not problems, f"peer CSMS found problems with {BOX}: {problems}"


@pytest.fixture(params=["ours", "peer"])
async def side(
    request: pytest.FixtureRequest, make_daemon: Callable[..., Daemon], csms: Any, peer_csms: Any
) -> AsyncIterator[RawSide]:
    """A booted daemon and the CSMS it is connected to, seen through :class:`RawSide`."""
    if request.param == "ours":
        raw: RawSide = OurSide(csms)
        d = make_daemon(csms.url)
        await d.start()
        boot = await csms.wait_for("BootNotification", identity=BOX, timeout=15)
        for cid in (0, 1, 2):  # the boot's reports are out: nothing of its own in flight
            await csms.wait_for(
                "StatusNotification",
                BOX,
                lambda r, cid=cid: r.payload["connectorId"] == cid,
                since=boot.seq,
            )
    else:
        peer = peer_csms
        raw = PeerSide(peer)
        d = make_daemon(peer.url)
        mark = await peer.mark()
        await d.start()
        await peer.wait_event(
            type="callIn", method="BootNotification", identity=BOX, since=mark, timeout_s=15
        )
        end = asyncio.get_running_loop().time() + 10
        while {
            e["params"]["connectorId"]
            for e in await peer.events(
                type="callIn", method="StatusNotification", identity=BOX, since=mark
            )
        } != {0, 1, 2}:
            assert asyncio.get_running_loop().time() < end, (
                "no StatusNotification for every connector"
            )
            await asyncio.sleep(0.02)
    await d.until(lambda s: s["link"] == "connected", what="boot accepted")
    raw.daemon = d
    yield raw


# ---------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    name: str
    frame: str  # "{id}" is replaced by a unique id
    code: str | None  # expected CALLERROR code; None: no answer at all
    answered: bool = True

    def text(self, uid: str) -> str:
        return self.frame.replace("{id}", uid)


CASES = [
    Case("unknown_action", '[2,"{id}","FooBar",{}]', "NotImplemented"),
    Case(
        "required_field_missing",
        '[2,"{id}","ChangeConfiguration",{"key":"HeartbeatInterval"}]',
        "OccurenceConstraintViolation",
    ),
    Case(
        "wrong_type",
        '[2,"{id}","ChangeConfiguration",{"key":5,"value":"x"}]',
        "TypeConstraintViolation",
    ),
    Case("bad_enum", '[2,"{id}","Reset",{"type":"Medium"}]', "PropertyConstraintViolation"),
    Case(
        "string_too_long",
        '[2,"{id}","ChangeConfiguration",{"key":"' + "K" * 51 + '","value":"1"}]',
        "PropertyConstraintViolation",
    ),
    Case(
        "additional_property",
        '[2,"{id}","ChangeConfiguration",{"key":"HeartbeatInterval","value":"60","extra":1}]',
        "FormationViolation",
    ),
    Case("payload_not_an_object", '[2,"{id}","Reset",[]]', "FormationViolation"),
    Case("call_with_3_elements", '[2,"{id}","Reset"]', "FormationViolation"),
    Case("invalid_json", '[2,"{id}","Reset",{"type":', None, answered=False),
    Case("callresult_for_unknown_id", '[3,"{id}",{"status":"Accepted"}]', None, answered=False),
    Case(
        "callerror_for_unknown_id",
        '[4,"{id}","GenericError","nobody asked",{}]',
        None,
        answered=False,
    ),
    Case("message_type_id_7", '[7,"{id}","Reset",{"type":"Soft"}]', "FormationViolation"),
    Case("message_type_id_a_string", '["2","{id}","ClearCache",{}]', "FormationViolation"),
    # fuzz finding: the 32-bit check walked the payload recursively before the schema check, so
    # a payload nested ~330-970 deep (JSON that parses) raised RecursionError: no answer at all
    Case(
        "nested_500_deep_answered",
        '[2,"{id}","GetConfiguration",' + '{"a":' * 500 + "1" + "}" * 500 + "]",
        "FormationViolation",
    ),
    # fuzz finding: that check also ran first, so any integer beyond 32 bits anywhere made the
    # answer PropertyConstraintViolation, even where the schema's own violation is another one
    Case(
        "int64_in_a_string_field",
        '[2,"{id}","ChangeConfiguration",{"key":"HeartbeatInterval","value":9223372036854775808}]',
        "TypeConstraintViolation",
    ),
    Case(
        "int64_as_the_payload",
        '[2,"{id}","Reset",9223372036854775808]',
        "FormationViolation",
    ),
    Case(
        "int64_in_an_int_field",
        '[2,"{id}","ChangeAvailability",{"connectorId":2147483648,"type":"Operative"}]',
        "PropertyConstraintViolation",
    ),
]



def _params() -> list[Any]:
    out = []
    for case in CASES:
        out.append(pytest.param(case, id=case.name))
    return out


async def _assert_link_kept(side: RawSide, since: int) -> None:
    """Same connection (no disconnect, no new boot) and a normal call still works."""
    answer = await side.call("GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert answer["configurationKey"][0]["key"] == "HeartbeatInterval"
    assert await side.disconnects(since) == []
    assert await side.boots(since) == []
    assert await side.connected()
    d = side.daemon
    assert d.proc is not None and d.proc.returncode is None
    assert d.status()["link"] == "connected"


@pytest.mark.parametrize("case", _params())
async def test_r_ops_3_malformed_frame_gets_the_right_callerror(side: RawSide, case: Case):
    uid = f"{case.name}-{uuid.uuid4().hex[:8]}"
    mark = await side.mark()
    await side.send(case.text(uid))
    # the charger handles frames in order: once this normal call is answered, so is the case
    await _assert_link_kept(side, mark)
    answers = [f for _s, f in await side.frames_in(mark) if _answers(f, uid)]
    if case.answered:
        assert len(answers) == 1, (
            f"{case.name}: expected one {case.code} answer to {uid!r}, got {answers}"
        )
        answer = answers[0]
        assert answer[0] == 4, f"expected a CALLERROR, got {answer}"
        assert answer[1] == uid
        assert answer[2] == case.code, f"{case.name}: expected {case.code}, got {answer}"
        assert len(answer) == 5 and isinstance(answer[3], str) and isinstance(answer[4], dict)
    else:
        assert answers == []
    await side.assert_clean({uid})




async def test_r_ops_3_call_with_a_non_string_unique_id_is_refused_not_executed(side: RawSide):
    mark = await side.mark()
    await side.send('[2,12345,"ChangeConfiguration",{"key":"HeartbeatInterval","value":"77"}]')
    await _assert_link_kept(side, mark)  # barrier: the frame has been handled
    answers = [f for _s, f in await side.frames_in(mark) if _answers(f, 12345)]  # type: ignore[arg-type]
    conf = await side.call("GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert conf["configurationKey"][0]["value"] != "77", "the malformed CALL was executed"
    assert [a[:3] for a in answers] == [[4, 12345, "FormationViolation"]]
    await side.assert_clean({12345})  # type: ignore[arg-type]


async def test_r_ops_3_all_malformed_frames_in_a_row_keep_the_link(side: RawSide):
    """Every case on one connection, back to back: each answered as it should be, then
    the link is still the same."""
    mark = await side.mark()
    uids: dict[str, Case] = {}
    for i, case in enumerate(CASES):
        uid = f"row{i}-{uuid.uuid4().hex[:12]}"  # OCPP-J: at most 36 characters
        uids[uid] = case
        await side.send(case.text(uid))
    await _assert_link_kept(side, mark)  # also the barrier: frames are handled in order
    frames = [f for _s, f in await side.frames_in(mark)]
    problems = []
    for uid, case in uids.items():
        answers = [f for f in frames if _answers(f, uid)]
        if not case.answered:
            if answers:
                problems.append((case.name, answers))
        elif len(answers) != 1 or answers[0][0] != 4 or answers[0][2] != case.code:
            problems.append((case.name, answers))
    assert problems == []
    # nothing else from the charger but the answers and the GetConfiguration result
    others = [f for f in frames if not (isinstance(f, list) and len(f) >= 2 and f[1] in uids)]
    assert all(isinstance(f, list) and f[0] == 3 for f in others), others
    await side.assert_clean(set(uids))


# ---------------------------------------------------------------- random payloads (our CSMS)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=8,
)

# keys whose random values cannot move the link (SupervisionUrl, BoxIdentifier,
# SecurityProfile, WebSocketPingInterval... are left out on purpose)
SAFE_KEYS = [
    "HeartbeatInterval",
    "MeterValueSampleInterval",
    "DefaultIdTag",
    "FreeCharging",
    "RFIDEnabled",
    "QRcode1",
    "disconnectedMeterValueSampleInterval",
    "MeterValuesSampledData",
    "NumberOfConnectors",
    "ClockAlignedDataInterval",
    "StopTxnSampledData",
    "ConnectionTimeOut",
    "AuthenticationOCPPMode",
]
TRIGGERS = [
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
    "SignChargePointCertificate",
    "Nope",
]


def _object(required: dict[str, Any], optional: dict[str, Any]) -> Any:
    return st.fixed_dictionaries(required, optional=optional)


def _either(*strategies: Any) -> Any:
    return st.one_of(*strategies, json_values)


PAYLOADS = {
    "ChangeConfiguration": _object(
        {
            "key": _either(st.sampled_from(SAFE_KEYS), st.text(max_size=60)),
            "value": _either(
                st.text(max_size=30),
                st.integers(-5, 5000).map(str),
                st.sampled_from(["true", "false"]),
            ),
        },
        {"extra": json_values},
    ),
    "RemoteStartTransaction": _object(
        {"idTag": _either(st.text(min_size=1, max_size=25))},
        {"connectorId": _either(st.integers(-2, 4)), "chargingProfile": json_values},
    ),
    "TriggerMessage": _object(
        {"requestedMessage": _either(st.sampled_from(TRIGGERS))},
        {"connectorId": _either(st.integers(-2, 4))},
    ),
    "DataTransfer": _object(
        {
            "vendorId": _either(
                st.sampled_from(["com.se.cost", "com.se.tariff", "Schneider Electric"]),
                st.text(max_size=260),
            )
        },
        {
            "messageId": _either(
                st.sampled_from(["CostUpdated", "TariffDownload"]), st.text(max_size=60)
            ),
            "data": _either(
                st.text(max_size=60),
                st.fixed_dictionaries(
                    {
                        "connectID": _either(st.integers(-1, 3)),
                        "totalCost": _either(st.floats(-10, 1e6)),
                        "currency": _either(st.text(max_size=4)),
                    }
                ).map(json.dumps),
            ),
        },
    ),
}


@st.composite
def calls(draw: Any) -> tuple[str, Any]:
    action = draw(st.sampled_from(sorted(PAYLOADS)))
    payload = draw(st.one_of(PAYLOADS[action], json_values))
    return action, payload


def _valid_result(action: str, payload: Any) -> bool:
    """The ``ocpp`` library's own check of a CALLRESULT. Not ``get_validator(3, action)``
    directly: the library caches one validator per schema whatever ``parse_float`` it was
    built with, and a float-built GetCompositeSchedule response validator would break the
    library's Decimal check of that response for every later test in this process."""
    return _fuzz_module().schema_error(action, payload, response=True) is None


async def test_r_ops_3_random_payloads_each_get_exactly_one_answer(csms, daemon):
    """Hypothesis (run in a worker thread, driving our CSMS in the test's loop): every frame
    gets exactly one answer with its id, a schema-valid CALLRESULT or a 1.6 CALLERROR, and the
    daemon stays alive and connected throughout."""
    loop = asyncio.get_running_loop()
    start = csms.mark()
    sent: list[tuple[str, str, Any]] = []

    async def round_trip(action: str, payload: Any) -> None:
        uid = f"h{len(sent)}-{uuid.uuid4().hex[:6]}"
        sent.append((uid, action, payload))
        mark = await csms.send_raw(BOX, json.dumps([2, uid, action, payload]))
        frame = (
            await csms.wait_frame(BOX, lambda f: _answers(f.json(), uid), since=mark, timeout=5)
        ).json()
        if frame[0] == 3:
            assert _valid_result(action, frame[2]), (
                f"invalid {action} result {frame[2]!r} for {payload!r}"
            )
        else:
            assert frame[2] in OCPP16_ERROR_CODES, frame
            assert len(frame) == 5, frame
        assert daemon.proc.returncode is None, daemon.log_tail()
        assert csms.connected(BOX)

    @settings(
        max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(calls())
    def check(call: tuple[str, Any]) -> None:
        asyncio.run_coroutine_threadsafe(round_trip(*call), loop).result(timeout=30)

    await asyncio.to_thread(check)
    assert len(sent) >= 40, f"hypothesis ran only {len(sent)} examples"

    # a last round trip as a barrier, then: one answer per id, none twice, same connection
    assert (await csms.call(BOX, "GetConfiguration", {"key": ["HeartbeatInterval"]}))[
        "configurationKey"
    ]
    answered: dict[str, int] = {}
    for frame in csms.frames(BOX, "in", start):
        parsed = frame.json()
        if isinstance(parsed, list) and len(parsed) >= 2 and parsed[0] in (3, 4):
            answered[parsed[1]] = answered.get(parsed[1], 0) + 1
    twice = {uid: n for uid, n in answered.items() if n > 1}
    assert twice == {}
    assert all(uid in answered for uid, _a, _p in sent)
    assert csms.events(BOX, "disconnect", start) == []
    assert daemon.proc.returncode is None
    assert daemon.status()["link"] == "connected"
    csms.assert_clean(BOX)


# ---------------------------------------------------------------- our CSMS, from the other side



async def test_our_csms_keeps_a_charger_that_sends_an_unhashable_unique_id(csms):
    from websockets.asyncio.client import connect

    async with connect(csms.url_for("CP-RAW"), subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        await ws.send('[3,["x"],{"status":"Accepted"}]')
        await ws.send('[2,"hb-1","Heartbeat",{}]')
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert answer[:2] == [3, "hb-1"]
        assert csms.connected("CP-RAW")


# ---------------------------------------------------------------- every action, hypothesis-driven


def _fuzz_module() -> Any:
    """bench/fuzz.py (its sample payloads and its "right CALLERROR" rules), loaded by path:
    bench/ is not on sys.path (its drivers.py would shadow the drivers package)."""
    import importlib.util
    import sys

    if "fuzz" not in sys.modules:
        from daemon_harness import REPO

        spec = importlib.util.spec_from_file_location("fuzz", REPO / "bench" / "fuzz.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["fuzz"] = module
        spec.loader.exec_module(module)
    return sys.modules["fuzz"]


FUZZ = _fuzz_module()


def _mutations(value: Any) -> Any:
    """A hypothesis strategy of variants of ``value``: each member kept, dropped, replaced by
    any JSON value or mutated in turn, extra members added; shrinks towards ``value`` itself."""
    if isinstance(value, dict):
        members = {
            key: st.one_of(st.just(("keep", v)), st.just(("drop", None)),
                           json_values.map(lambda x: ("set", x)), _mutations(v).map(lambda x: ("set", x)))
            for key, v in value.items()
        }

        def build(choices: dict[str, tuple[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
            out = {k: (value[k] if how == "keep" else x) for k, (how, x) in choices.items() if how != "drop"}
            return {**out, **extra}

        return st.builds(build, st.fixed_dictionaries(members),
                         st.dictionaries(st.text(max_size=12), json_values, max_size=2))
    if isinstance(value, list):
        return st.one_of(st.just(value), st.lists(_mutations(value[0]) if value else json_values, max_size=4))
    return st.one_of(st.just(value), json_values)


def mutated_payloads(action: str) -> Any:
    """Hypothesis variants of bench/fuzz.py's sample payload of ``action``, made harmless."""
    gen = FUZZ.Gen(random.Random(0), tx_id=-1)

    def harmless(payload: Any) -> Any:
        payload = gen.neutralise(action, payload)  # no real URL, no retries, no end of session
        if action in FUZZ.SCHEMA_INVALID_ONLY and FUZZ.schema_error(action, payload) is None:
            payload = {}  # Reset / UpdateFirmware only in a form the charger must refuse
        return payload

    return _mutations(FUZZ.BASE[action]).map(harmless)


async def test_r_ops_3_every_action_mutated_by_hypothesis_gets_the_right_answer(csms, daemon):
    """Hypothesis mutates the sample payload of every CSMS -> charge point action of OCPP 1.6
    and the security extension (26), member by member, and sends each over the WebSocket: a
    schema-valid payload gets a schema-valid CALLRESULT (or, with an integer beyond 32 bits,
    PropertyConstraintViolation); an invalid one a CALLERROR whose code names one of its own
    schema violations; never InternalError, never a dropped link."""
    loop = asyncio.get_running_loop()
    start = csms.mark()
    seen: set[str] = set()
    sent = 0

    async def round_trip(action: str, payload: Any) -> None:
        nonlocal sent
        uid = uuid.uuid4().hex[:12]
        seen.add(action)
        sent += 1
        mark = await csms.send_raw(BOX, json.dumps([2, uid, action, payload]))
        frame = (await csms.wait_frame(BOX, lambda f: _answers(f.json(), uid), since=mark, timeout=10)).json()
        expected = FUZZ.right_codes(action, payload)
        if frame[0] == 3:
            assert expected is None, f"{action} {payload!r} is schema-invalid, yet answered {frame[2]!r}"
            assert _valid_result(action, frame[2]), f"invalid {action} result {frame[2]!r}"
        else:
            code = frame[2]
            if expected is None:
                assert code == "PropertyConstraintViolation" and FUZZ.int_beyond_32_bits(payload), (
                    f"{action} {payload!r} is schema-valid, yet answered {frame}")
            else:
                assert code in expected, f"{action} {payload!r}: {code}, expected one of {sorted(expected)}"
        assert daemon.proc.returncode is None, daemon.log_tail()

    def checker(action: str) -> Callable[[], None]:
        @settings(max_examples=15, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(mutated_payloads(action))
        def check(payload: Any) -> None:
            asyncio.run_coroutine_threadsafe(round_trip(action, payload), loop).result(timeout=30)

        return check

    def check_every_action() -> None:
        for action in sorted(FUZZ.BASE):
            checker(action)()

    await asyncio.to_thread(check_every_action)
    assert seen == set(FUZZ.BASE) and len(seen) == 26 and sent >= 26 * 10, sent
    assert csms.connected(BOX) and csms.events(BOX, "disconnect", start) == []
    # the checks above left the ocpp library's validator cache as the library builds it (a
    # float-built GetCompositeSchedule response validator broke every later test's call)
    composite = await csms.call(BOX, "GetCompositeSchedule", {"connectorId": 1, "duration": 60})
    assert composite["status"] in ("Accepted", "Rejected")
