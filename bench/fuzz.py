#!/usr/bin/env python3
"""OCPP-J fuzzer (issue 10, R-OPS 3): mutated and random frames for every CSMS → charge point
action, pipelined over our CSMS's raw send, against the real daemon with a running charge.

    python bench/fuzz.py                         # 1 000 000 frames, seed 1
    python bench/fuzz.py --frames 20000 --seed 3 --window 64
    python bench/fuzz.py --frames 780000 --start 770000 -v   # frames 770 000.. of the same stream

Checks: every CALL with a readable id ([2, "<id>", "<action>", {...}]) gets exactly one
answer; a CALLRESULT validates against the ``ocpp`` library's response schema; a CALLERROR
carries an OCPP-J 1.6 code (NotImplemented for an unknown action; a schema-invalid payload
never gets a CALLRESULT; the unmutated valid payload never gets a CALLERROR); nothing
answers twice; the daemon never exits or drops the WebSocket; the charge started before
the run keeps going (MeterValues arrive, connector 1 still Charging at the end, no
StopTransaction, nothing our CSMS had to refuse). Each of these checks is shown to fail on a
deliberately wrong answer or a sabotaged run in tests/reliability/test_fuzz_smoke.py.

This process is the CSMS too: a frame that takes long to generate stalls its answers to the
daemon, whose keepalive then rightly drops the link. Generation is bounded (see mutate), a
watchdog thread prints every stack when the loop stalls over STALL_DUMP_S, and a stall over
STALL_FAIL_S fails the run as a harness fault, not as the daemon's.

Neutralised (kept out of the random stream, see the README): Reset, UpdateFirmware and
SignedUpdateFirmware are sent only in schema-invalid form; ChangeAvailability never with
type Inoperative; RemoteStopTransaction never with the running transaction's id;
ChangeConfiguration never of SecurityProfile, SupervisionUrl, BoxIdentifier,
AuthorizationKey, MeterValueSampleInterval, MeterValuesSampledData (they would legitimately
stop the MeterValues the run checks for) or WebSocketPingInterval (at 1 s the verdict would
depend on how fast this process, which is also the CSMS, answers pings), any case; every URL in any payload
(GetDiagnostics, GetLog, DataTransfer tariff/picture downloads...) points at a refused
port on 127.0.0.1, with retries 0. Charging profiles are cleared before the final check.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import decimal
import faulthandler
import json
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# REPO first: bench/ (sys.path[0] when run as a script) has a drivers.py that must not
# shadow the drivers package
for p in (REPO / "tests" / "integration", REPO):
    if str(p) in sys.path:
        sys.path.remove(str(p))
    sys.path.insert(0, str(p))

from daemon_harness import Daemon
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult, _validate_payload, get_validator
from websockets.exceptions import ConnectionClosed

from controller.csms import CentralSystem

BOX = "CP-TEST"
OCPP16_CODES = frozenset({
    "NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
    "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
    "TypeConstraintViolation", "GenericError",
})
NOW = "2026-11-26T00:00:00.000Z"
CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUfuzz\n-----END CERTIFICATE-----\n"
HASH = {"hashAlgorithm": "SHA256", "issuerNameHash": "a" * 64, "issuerKeyHash": "b" * 64,
        "serialNumber": "01"}
DEAD_URL = "http://127.0.0.1:9/fuzz"
TX_TAG = "FUZZTX"

BASE: dict[str, dict[str, Any]] = {
    "CancelReservation": {"reservationId": 5},
    "CertificateSigned": {"certificateChain": CERT},
    "ChangeAvailability": {"connectorId": 2, "type": "Operative"},
    "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "300"},
    "ClearCache": {},
    "ClearChargingProfile": {"id": 3, "connectorId": 1, "chargingProfilePurpose": "TxDefaultProfile",
                             "stackLevel": 0},
    "DataTransfer": {"vendorId": "com.se.cost", "messageId": "CostUpdated",
                     "data": json.dumps({"currency": "EUR", "totalCost": 1.5, "transactionId": 999})},
    "DeleteCertificate": {"certificateHashData": HASH},
    "ExtendedTriggerMessage": {"requestedMessage": "Heartbeat", "connectorId": 1},
    "GetCompositeSchedule": {"connectorId": 1, "duration": 3600, "chargingRateUnit": "W"},
    "GetConfiguration": {"key": ["HeartbeatInterval", "NoSuchKey"]},
    "GetDiagnostics": {"location": DEAD_URL, "retries": 0, "retryInterval": 1,
                       "startTime": NOW, "stopTime": NOW},
    "GetInstalledCertificateIds": {"certificateType": "CentralSystemRootCertificate"},
    "GetLocalListVersion": {},
    "GetLog": {"logType": "DiagnosticsLog", "requestId": 1, "retries": 0, "retryInterval": 1,
               "log": {"remoteLocation": DEAD_URL, "oldestTimestamp": NOW, "latestTimestamp": NOW}},
    "InstallCertificate": {"certificateType": "ManufacturerRootCertificate", "certificate": CERT},
    "RemoteStartTransaction": {"connectorId": 2, "idTag": "FUZZRS",
                               "chargingProfile": {"chargingProfileId": 9, "stackLevel": 1,
                                                   "chargingProfilePurpose": "TxProfile",
                                                   "chargingProfileKind": "Relative",
                                                   "chargingSchedule": {"chargingRateUnit": "W",
                                                       "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 20000.0}]}}},
    "RemoteStopTransaction": {"transactionId": 424242},
    "ReserveNow": {"connectorId": 2, "expiryDate": "2030-01-01T00:00:00Z", "idTag": "FUZZRES",
                   "reservationId": 5, "parentIdTag": "PARENT"},
    "Reset": {"type": "Soft"},
    "SendLocalList": {"listVersion": 3, "updateType": "Differential",
                      "localAuthorizationList": [{"idTag": "FUZZLL", "idTagInfo": {
                          "status": "Accepted", "expiryDate": "2030-01-01T00:00:00Z", "parentIdTag": "P"}}]},
    "SetChargingProfile": {"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": 3, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Recurring", "recurrencyKind": "Daily",
        "validFrom": "2020-01-01T00:00:00Z", "validTo": "2040-01-01T00:00:00Z",
        "chargingSchedule": {"duration": 86400, "startSchedule": "2020-01-01T00:00:00Z",
                             "chargingRateUnit": "A", "minChargingRate": 1.0,
                             "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 50.0, "numberPhases": 3},
                                                        {"startPeriod": 3600, "limit": 100.0}]}}},
    "SignedUpdateFirmware": {"requestId": 1, "retries": 0, "firmware": {
        "location": DEAD_URL, "retrieveDateTime": NOW, "signingCertificate": CERT, "signature": "c2ln"}},
    "TriggerMessage": {"requestedMessage": "StatusNotification", "connectorId": 1},
    "UnlockConnector": {"connectorId": 1},
    "UpdateFirmware": {"location": DEAD_URL, "retrieveDate": NOW, "retries": 0},
}
SCHEMA_INVALID_ONLY = frozenset({"Reset", "UpdateFirmware", "SignedUpdateFirmware"})
BLOCKED_KEYS = frozenset(k.lower() for k in (
    "SecurityProfile", "SupervisionUrl", "BoxIdentifier", "AuthorizationKey", "MeterValueSampleInterval",
    "MeterValuesSampledData", "WebSocketPingInterval"))
ENUM_WORDS = ["Accepted", "Rejected", "Soft", "Hard", "Inoperative", "Operative", "TxProfile",
              "ChargePointMaxProfile", "TxDefaultProfile", "Absolute", "Relative", "Recurring", "W", "A",
              "Full", "Differential", "BootNotification", "MeterValues", "Heartbeat", "DiagnosticsLog",
              "SecurityLog", "SignChargePointCertificate", "FirmwareStatusNotification", "Blocked"]
KEYS = ["HeartbeatInterval", "ConnectionTimeOut", "MeterValuesSampledData", "LocalAuthListEnabled",
        "AuthorizationCacheEnabled", "FreeCharging", "DefaultIdTag", "QRcode1", "WebSocketPingInterval",
        "ClockAlignedDataInterval", "disconnectedMeterValueSampleInterval", "MinimumStatusDuration",
        "ISO15118PnCEnabled", "AllowOfflineTxForUnknownId", "GetConfigurationMaxKeys", "NoSuchKey"]
URL_RE = re.compile(r"(?i)\b(?:ftps?|https?|wss?|file)://[^\s\"']*")


def schema_error(action: str, payload: Any, response: bool = False) -> str | None:
    """Why the ``ocpp`` library's OCPP 1.6 validation refuses the payload (None: valid).

    The library's own check (``ocpp.messages._validate_payload``), so its Decimal handling
    of ``multipleOf: 0.1`` in charging schedules applies as it does in the daemon."""
    message = (CallResult("x", copy.deepcopy(payload), action) if response
               else Call("x", action, copy.deepcopy(payload)))
    try:
        _validate_payload(message, "1.6")
    except OCPPError as e:
        return str(e)[:200]
    except (RecursionError, TypeError, ValueError, ArithmeticError) as e:
        return repr(e)[:200]
    return None


# OCPP-J 1.6 §4.2.3: which CALLERROR names a schema violation, by JSON-schema keyword (ours,
# from the spec's wording, not the daemon's table). additionalProperties: the PDU structure
# (Formation) or a field that is not allowed (Property) both read right.
SPEC_CODES: dict[str, frozenset[str]] = {
    "type": frozenset({"TypeConstraintViolation"}),
    "required": frozenset({"OccurenceConstraintViolation"}),
    "minItems": frozenset({"OccurenceConstraintViolation"}),
    "maxItems": frozenset({"OccurenceConstraintViolation"}),
    "additionalProperties": frozenset({"FormationViolation", "PropertyConstraintViolation"}),
}
VALUE_CODE = frozenset({"PropertyConstraintViolation"})  # enum, maxLength, format, minimum...
DECIMAL_ACTIONS = ("SetChargingProfile", "RemoteStartTransaction", "GetCompositeSchedule")
INT32 = (-2**31, 2**31 - 1)


def right_codes(action: str, payload: Any) -> frozenset[str] | None:
    """The CALLERROR codes that name one of the payload's schema violations (None: it has
    none). The payload itself not an object: FormationViolation. A number the schema check
    cannot handle (1e30 against multipleOf 0.1 as Decimal): PropertyConstraintViolation."""
    codes: set[str] = set()
    try:
        parse_float: Any = float
        if action in DECIMAL_ACTIONS:  # as the library and the daemon check them
            parse_float = decimal.Decimal
            payload = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
        for e in get_validator(2, action, "1.6", parse_float=parse_float).iter_errors(payload):
            if e.validator == "type" and not e.path:
                codes.add("FormationViolation")
            else:
                codes |= SPEC_CODES.get(str(e.validator), VALUE_CODE)
    except (ArithmeticError, ValueError, RecursionError, TypeError):
        codes |= VALUE_CODE
    return frozenset(codes) if codes else None


def int_beyond_32_bits(v: Any) -> bool:
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, bool):
            continue
        if isinstance(x, int) and not INT32[0] <= x <= INT32[1]:
            return True
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return False


@dataclass
class Stats:
    sent: int = 0
    expecting: int = 0
    answered: int = 0
    results: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    meter_values_during: int = 0  # while frames were being sent
    meter_values_after: int = 0  # after the last frame (a backlog flushed, and the final check)
    meter_values_gap: float = 0.0  # longest wall time without one while frames were being sent
    last_meter_values: float = 0.0
    daemon_rss_kb: tuple[int, int] = (0, 0)  # VmRSS before the first frame, after the last
    daemon_calls: tuple[int, int] = (0, 0)  # CALLs of the daemon while frames were sent, after
    statuses: Counter[str] = field(default_factory=Counter)  # StatusNotification of connector 1
    held_back: Counter[str] = field(default_factory=Counter)
    final_status: str = "?"
    final_sampling: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: int = 0  # --start: frames generated (same random stream) but not sent
    skip_seconds: float = 0.0
    slowest_generation: tuple[float, int] = (0.0, -1)  # seconds, frame number
    longest_stall: float = 0.0  # longest time this process's event loop did not run

    def fail(self, text: str) -> None:
        self.failures.append(text)

    def summary(self) -> str:
        sending = self.seconds - self.skip_seconds
        rate = self.sent / sending if sending > 0 else 0.0
        errs = ", ".join(f"{k} {v}" for k, v in self.errors.most_common())
        kinds = ", ".join(f"{k} {v}" for k, v in self.kinds.most_common())
        return (f"frames sent: {self.sent}\nframes with a readable CALL id (answer required): {self.expecting}\n"
                f"answered: {self.answered} (CALLRESULT {self.results}, CALLERROR {sum(self.errors.values())})\n"
                f"CALLERROR codes: {errs or '-'}\nframe kinds: {kinds}\n"
                f"MeterValues of the running transaction received while frames were sent: "
                f"{self.meter_values_during} (longest gap {self.meter_values_gap:.1f} s), after the last "
                f"frame: {self.meter_values_after}; connector 1 StatusNotification: {dict(self.statuses) or '-'}; "
                f"connector 1 at the end: {self.final_status}; sampling keys: {self.final_sampling}\n"
                f"frames replaced (over 200 kB; with --skip-known-bugs, known bugs): {dict(self.held_back) or 0}\n"
                + (f"frames skipped (--start, generated, not sent): {self.skipped} "
                   f"({self.skip_seconds:.1f} s, not in the rate)\n" if self.skipped else "")
                + f"harness: slowest frame generation {self.slowest_generation[0]:.3f} s (frame "
                f"{self.slowest_generation[1]}), longest event-loop stall {self.longest_stall:.2f} s\n"
                f"daemon VmRSS: {self.daemon_rss_kb[0] / 1024:.1f} MB before the first frame, "
                f"{self.daemon_rss_kb[1] / 1024:.1f} MB after the last; its own CALLs received while "
                f"frames were sent: {self.daemon_calls[0]}, after the last: {self.daemon_calls[1]}\n"
                f"failures: {len(self.failures)}\nrate: {rate:.0f} frames/s ({self.seconds:.1f} s)")


# ---------------------------------------------------------------- generation

class Gen:
    def __init__(self, rng: random.Random, tx_id: int) -> None:
        self.rng = rng
        self.tx_id = tx_id

    def scalar(self) -> Any:
        r = self.rng
        return r.choice([
            None, True, False, 0, -1, 1, 2**31, 2**63, -2**63, 10**30, 1.5, -0.0, 1e308, "", "x",
            "0", "-1", "1.5", "true", "null", r.choice(ENUM_WORDS), r.choice(ENUM_WORDS).lower(),
            "2026-13-45T25:61:61Z", "not a date", NOW, "é✓\u0000\ud7ff", "A" * r.choice((20, 21, 36, 37, 51, 256, 1001)),
            "\\u0000", "<script>", "' OR 1=1 --", r.randint(-10**6, 10**6), r.random() * 1e6,
        ])

    def value(self, depth: int = 0) -> Any:
        r = self.rng
        k = r.random()
        if depth > 3 or k < 0.6:
            return self.scalar()
        if k < 0.8:
            return [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        return {r.choice(["a", "idTag", "status", "key", "value", "connectorId", ""]): self.value(depth + 1)
                for _ in range(r.randint(0, 4))}

    def nested(self) -> Any:
        depth = self.rng.choice((10, 50, 120))
        v: Any = 1
        for _ in range(depth):
            v = [v] if self.rng.random() < 0.5 else {"a": v}
        return v

    def paths(self, obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        out = [prefix]
        if isinstance(obj, dict):
            for key, val in obj.items():
                out += self.paths(val, prefix + (key,))
        elif isinstance(obj, list):
            for i, val in enumerate(obj):
                out += self.paths(val, prefix + (i,))
        return out

    def mutate(self, payload: Any) -> Any:
        r = self.rng
        payload = copy.deepcopy(payload)
        for _ in range(r.choice((1, 1, 1, 2, 3))):
            paths = self.paths(payload)
            path = r.choice(paths)
            parent = payload
            for step in path[:-1]:
                parent = parent[step]
            op = r.random()
            if not path:  # the payload itself
                payload = self.value() if op < 0.5 else ({} if op < 0.7 else self.nested())
                continue
            key = path[-1]
            cur = parent[key]
            if op < 0.15 and isinstance(parent, dict):
                del parent[key]
            elif op < 0.25 and isinstance(parent, dict):
                parent[r.choice(["extra", "IdTag", key.upper() if isinstance(key, str) else "k", ""])] = self.value()
            elif op < 0.55:
                parent[key] = self.scalar()
            elif op < 0.65:
                parent[key] = self.value()
            elif op < 0.72 and isinstance(cur, str):
                parent[key] = cur * r.choice((2, 10, 60)) if cur and len(cur) < 2000 else "x" * 500
            elif op < 0.78 and isinstance(cur, list):
                # bounded, and the copies are independent: ``cur * n`` would repeat references
                # to the same inner objects, so a later mutation of one inner list (another
                # repetition) grows every copy at once. Seed 1 frame 773 104 compounded that
                # to a 37 MB Reset payload whose deep copies and schema check took this
                # process (also the CSMS) 35-56 s, and the daemon rightly dropped the link.
                size = len(json.dumps(cur, default=str))
                factor = r.choice((0, 2, 60, 500))
                factor = factor if size * factor <= REPEAT_BUDGET else 2 if size <= REPEAT_BUDGET // 2 else 0
                parent[key] = [copy.deepcopy(x) for _ in range(factor) for x in cur]
            elif op < 0.84 and isinstance(cur, int | float) and not isinstance(cur, bool):
                parent[key] = r.choice((-cur, cur + 1, cur * 1000, str(cur), float(cur) + 0.5, -1, 0))
            elif op < 0.9:
                parent[key] = r.choice(ENUM_WORDS)
            elif op < 0.95:
                parent[key] = [cur]
            else:
                parent[key] = self.nested()
        return payload

    def neutralise(self, action: str, payload: Any) -> Any:
        def walk(v: Any, depth: int = 0) -> Any:
            if depth > 200:
                return v
            if isinstance(v, str):
                return URL_RE.sub(DEAD_URL, v)
            if isinstance(v, list):
                return [walk(x, depth + 1) for x in v]
            if isinstance(v, dict):
                out = {k: walk(x, depth + 1) for k, x in v.items()}
                for k in ("retries",):
                    if isinstance(out.get(k), int) and not isinstance(out.get(k), bool) and out[k] > 0:
                        out[k] = 0
                return out
            return v
        payload = walk(payload)
        if not isinstance(payload, dict):
            return payload
        if action == "ChangeAvailability" and isinstance(payload.get("type"), str) \
                and payload["type"].lower() == "inoperative":
            payload["type"] = "Operative"
        if action == "RemoteStopTransaction" and payload.get("transactionId") == self.tx_id:
            payload["transactionId"] = self.tx_id + 100000
        if action == "ChangeConfiguration" and isinstance(payload.get("key"), str) \
                and payload["key"].strip().lower() in BLOCKED_KEYS:
            payload["key"] = "HeartbeatInterval"
        return payload

    def frame(self, uid: str) -> tuple[str, str, str, Any]:
        """(kind, action, text, payload) — payload is None when the frame is not a proper CALL."""
        r = self.rng
        k = r.random()
        action = r.choice(sorted(BASE))
        if k < 0.08:
            kind, payload = "valid", copy.deepcopy(BASE[action])
            if action == "ChangeConfiguration":
                payload = {"key": r.choice(KEYS), "value": str(r.choice((0, 1, 5, 60, 300, "true", "false", "")))}
        elif k < 0.70:
            kind, payload = "mutated", self.mutate(BASE[action])
        elif k < 0.78:
            kind, payload = "random payload", self.value() if r.random() < 0.5 else {
                r.choice(["a", "idTag", "key", "connectorId", "type"]): self.value() for _ in range(r.randint(0, 5))}
        elif k < 0.83:
            kind, payload = "unknown action", copy.deepcopy(BASE[action])
            action = r.choice([action.lower(), action + "X", "Foo", "", "SetVariables", "GetBaseReport",
                               "BootNotification", "StartTransaction", " " + action, action.upper()])
        else:
            return self.broken(uid)
        if kind != "unknown action":
            payload = self.neutralise(action, payload)
            if action in SCHEMA_INVALID_ONLY and schema_error(action, payload) is None:
                payload = {"type": r.choice(["soft", "Warm", 1, None])} if action == "Reset" else {}
        return kind, action, json.dumps([2, uid, action, payload]), payload

    @staticmethod
    def bomb(uid: str, action: str, depth: int) -> str:
        return f'[2,"{uid}","{action}",' + '{"a":' * depth + "1" + "}" * depth + "]"

    def broken(self, uid: str) -> tuple[str, str, str, Any]:
        r = self.rng
        action = r.choice(sorted(BASE))
        good = json.dumps([2, uid, action, self.neutralise(action, copy.deepcopy(BASE[action]))])
        if action in SCHEMA_INVALID_ONLY:
            good = json.dumps([2, uid, action, {}])
        choice = r.randrange(14)
        depth = r.choice(DEEP + (1000, 20000)) if choice == 10 else 0
        if depth in DEEP:  # JSON that parses: a CALL with a readable id, it must be answered
            return "deep", action, self.bomb(uid, action, depth), None
        text = [
            lambda: good[: r.randint(0, len(good) - 1)],                      # truncated
            lambda: good + r.choice(["]", "x", " ", "\n", ",1"]),              # trailing junk
            lambda: json.dumps([r.choice([0, 1, 5, -1, "2", 2.0, None]), uid, action, {}]),  # type id
            lambda: json.dumps([2, uid, action]),                              # too short
            lambda: json.dumps([2, uid, action, {}, "extra"]),                 # too long
            lambda: json.dumps([2, r.choice([1, None, 1.5, [], {}, True]), action, {}]),  # id type
            lambda: json.dumps([2, uid, r.choice([1, None, [], {}]), {}]),   # action type
            lambda: json.dumps(self.value()),                                  # random JSON
            lambda: "".join(chr(r.randint(1, 0x2FF)) for _ in range(r.randint(0, 80))),  # garbage
            lambda: "",
            lambda: self.bomb(uid, action, depth),                            # nesting bomb
            lambda: json.dumps([3, "unknown-" + uid, {}]),                     # result nobody asked for
            lambda: json.dumps([4, "unknown-" + uid, "GenericError", "", {}]),
            lambda: json.dumps([2, (uid + "x" * 5000)[: r.choice((36, 37, 100, 5000))], action, {}]),  # long id
        ][choice]()
        return "broken", action, text, None


# ---------------------------------------------------------------- known bugs

def _numbers(v: Any, depth: int = 0) -> Any:
    if depth > 200:
        return
    if isinstance(v, bool):
        return
    if isinstance(v, int | float):
        yield v
    elif isinstance(v, list):
        for x in v:
            yield from _numbers(x, depth + 1)
    elif isinstance(v, dict):
        for x in v.values():
            yield from _numbers(x, depth + 1)


DEEP = (100, 300, 600, 850)  # nesting depths of JSON the daemon's parser takes (not 1000)
REPEAT_BUDGET = 100_000  # JSON characters one list repetition may produce
MAX_FRAME = 200_000  # the daemon's WebSocket takes frames up to 1 MiB and closes with 1009 above
BUNDLE_EVERY = 2000  # frames between two accepted GetDiagnostics / GetLog with --skip-known-bugs
_last_bundle = [-BUNDLE_EVERY]


def known_bug(action: str, payload: Any, text: str, n: int = 0) -> str | None:
    """Which known daemon bug (see the README's "Proof under faults") this frame would hit.

    The nesting bomb, huge numbers in charging schedules, absurd GetCompositeSchedule
    durations and integers beyond 64 bits were known bugs too; they are fixed (regression
    tests in tests/reliability/test_fuzz_smoke.py) and stay in the stream."""
    if action in ("GetDiagnostics", "GetLog") and schema_error(action, payload) is None:
        # each accepted request builds a bundle of up to 12 MB of logs in a worker thread. Once
        # unbounded (a flood starved the event loop and dropped the link); one at a time since
        # a1e9829, and an unpaced 1 000 000-frame run passes, but the daemon's RSS then grows
        # to ~300 MB (bench/README.md): let one through every BUNDLE_EVERY
        if n - _last_bundle[0] < BUNDLE_EVERY:
            return "GetDiagnostics/GetLog paced (bundle memory)"
        _last_bundle[0] = n
    return None


# ---------------------------------------------------------------- the run

STALL_DUMP_S = 5.0  # the watchdog prints this process's stacks when its loop stalls this long
ANSWER_WAIT_S = 15.0  # the longest wait for an answer (for a free slot in the window, at the end)
STALL_FAIL_S = 10.0  # a stall this long is a harness fault: the daemon's verdict is not reliable


class Fuzzer:
    def __init__(self, frames: int, seed: int, window: int, verbose: bool, skip_known_bugs: bool = False,
                 start: int = 0) -> None:
        self.skip_known_bugs = skip_known_bugs
        self.start = start
        self.tick = time.monotonic()
        self.seed = seed
        self.frames = frames
        self.rng = random.Random(seed)
        self.window = window
        self.verbose = verbose
        self.stats = Stats()
        self.pending: dict[str, tuple[str, str, Any, str]] = {}  # uid -> (kind, action, payload, text)
        self.answered: set[str] = set()
        self.optional: Counter[str] = Counter()  # ids of frames that may or may not be answered
        self.connects = 0
        self.tx_id: int | None = None
        self.disconnects = 0
        self.slot = asyncio.Event()
        # kept here, unbounded: the CSMS's recorder keeps only its last max_records records,
        # so its calls() / assert_clean() at the end of a long run would miss an early one
        self.stop_transactions: list[str] = []
        self.refused: list[str] = []  # bad_frame / call_error_sent events of our CSMS
        self.streaming = False  # frames are being sent

    def on_in(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            return
        if isinstance(msg, list) and len(msg) == 4 and msg[0] == 2 and msg[2] == "MeterValues" \
                and isinstance(msg[3], dict) and msg[3].get("transactionId") == self.tx_id:
            if self.streaming:
                self.stats.meter_values_during += 1
                now = time.monotonic()
                self.stats.meter_values_gap = max(self.stats.meter_values_gap, now - self.stats.last_meter_values)
                self.stats.last_meter_values = now
            else:
                self.stats.meter_values_after += 1
        if isinstance(msg, list) and len(msg) == 4 and msg[0] == 2 and msg[2] == "StatusNotification" \
                and isinstance(msg[3], dict) and msg[3].get("connectorId") == 1:
            self.stats.statuses[str(msg[3].get("status"))] += 1
        if isinstance(msg, list) and len(msg) == 4 and msg[0] == 2 and self.tx_id is not None:
            during, after = self.stats.daemon_calls
            self.stats.daemon_calls = (during + 1, after) if self.streaming else (during, after + 1)
        if isinstance(msg, list) and len(msg) == 4 and msg[0] == 2 and msg[2] == "StopTransaction":
            self.stop_transactions.append(text[:300])
        if not (isinstance(msg, list) and msg and msg[0] in (3, 4) and len(msg) > 1):
            return
        uid = msg[1]
        if not isinstance(uid, str):
            return
        if self.optional[uid] > 0:  # a broken frame (random JSON may repeat an id)
            self.optional[uid] -= 1
            self.count(msg, None, None)
            return
        if uid in self.answered:
            self.stats.fail(f"second answer to {uid[:40]}: {text[:200]}")
            return
        entry = self.pending.pop(uid, None)
        if entry is None:
            if uid.startswith("z"):  # ours (the CSMS's own calls use uuids)
                self.stats.fail(f"answer to an id never sent: {text[:200]}")
            return
        self.answered.add(uid)
        self.stats.answered += 1
        self.check(msg, *entry)
        if len(self.pending) < self.window:
            self.slot.set()

    def count(self, msg: list[Any], action: str | None, payload: Any) -> None:
        if msg[0] == 3:
            self.stats.results += 1
        else:
            self.stats.errors[str(msg[2]) if len(msg) > 2 else "?"] += 1
            if len(msg) != 5 or msg[2] not in OCPP16_CODES or not isinstance(msg[3], str) \
                    or not isinstance(msg[4], dict):
                self.stats.fail(f"CALLERROR not OCPP-J 1.6: {json.dumps(msg)[:200]}")

    def check(self, msg: list[Any], kind: str, action: str, payload: Any, text: str) -> None:
        self.count(msg, action, payload)
        where = f"{kind} {action} {text[:160]}"
        known = action in BASE
        if msg[0] == 3:
            if len(msg) != 3:
                self.stats.fail(f"CALLRESULT of wrong length for {where}: {json.dumps(msg)[:200]}")
            elif not known:
                self.stats.fail(f"CALLRESULT for unknown action: {where}")
            elif schema_error(action, payload) is not None:
                self.stats.fail(f"schema-invalid request accepted with CALLRESULT: {where} -> {json.dumps(msg[2])[:150]}")
            elif (err := schema_error(action, msg[2], response=True)) is not None:
                self.stats.fail(f"CALLRESULT breaks the {action}Response schema ({err[:100]}): {where}")
        else:
            code = msg[2] if len(msg) > 2 else None
            if not known and code != "NotImplemented" and action not in (
                    "BootNotification", "StartTransaction"):
                self.stats.fail(f"unknown action {action!r} answered {code}, not NotImplemented")
            if code == "InternalError":
                self.stats.fail(f"InternalError (the handler raised) for {where}")
            elif known and kind in ("mutated", "random payload") and code in OCPP16_CODES:
                right = right_codes(action, payload)
                if right is None:  # schema-valid: only the 32-bit rule may refuse it here
                    if not (code == "PropertyConstraintViolation" and int_beyond_32_bits(payload)):
                        self.stats.fail(f"schema-valid {action} answered {code}: {text[:200]}")
                elif code not in right:
                    self.stats.fail(f"{action} answered {code}, its violations call for "
                                    f"{'/'.join(sorted(right))}: {text[:200]}")
            if kind == "valid" and action not in SCHEMA_INVALID_ONLY:
                self.stats.fail(f"valid {action} answered with CALLERROR {code}: {text[:200]} -> {json.dumps(msg)[:200]}")

    def next_frame(self, gen: Gen, n: int) -> tuple[str, str, str, Any]:
        """Frame number ``n``: over MAX_FRAME, or (--skip-known-bugs) hitting a known bug, it is
        replaced by a fresh one. Timed: generation runs in the loop that is also the CSMS."""
        t = time.monotonic()
        uid = f"z{n:x}"
        kind, action, text, payload = gen.frame(uid)
        while len(text) > MAX_FRAME:  # over the WebSocket limit: 1009 is right
            self.stats.held_back["over 200 kB"] += 1
            kind, action, text, payload = gen.frame(uid)
        if self.skip_known_bugs:
            bug = known_bug(action, payload, text, n)
            while bug is not None:
                self.stats.held_back[bug] += 1
                kind, action, text, payload = gen.frame(uid)
                while len(text) > MAX_FRAME:
                    kind, action, text, payload = gen.frame(uid)
                bug = known_bug(action, payload, text, n)
        took = time.monotonic() - t
        if took > self.stats.slowest_generation[0]:
            self.stats.slowest_generation = (took, n)
        return kind, action, text, payload

    async def ticker(self) -> None:
        """Measures how long this process's event loop goes without running (it is the CSMS too)."""
        while True:
            self.tick = time.monotonic()
            await asyncio.sleep(0.2)
            self.stats.longest_stall = max(self.stats.longest_stall, time.monotonic() - self.tick - 0.2)

    def watchdog(self, done: threading.Event) -> None:
        """Thread: dumps every stack to stderr once per stall of the loop over STALL_DUMP_S."""
        dumped = 0.0
        while not done.wait(1.0):
            if time.monotonic() - self.tick > STALL_DUMP_S and dumped != self.tick:
                dumped = self.tick
                print(f"fuzz watchdog: event loop stalled {time.monotonic() - self.tick:.1f} s "
                      f"(sent {self.stats.sent}); stacks:", file=sys.stderr, flush=True)
                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)

    async def send(self, csms: Any, kind: str, text: str) -> None:
        if kind in ("broken", "deep") and text.count("{") > 500:
            # Our CSMS's recorder parses every frame it sends (Frame.message) and json.loads
            # raises RecursionError on a deep nesting bomb, which ocpp.messages.unpack does not
            # catch: send this one past the recorder.
            await csms._session(BOX).ws.send(text)
        else:
            await csms.send_raw(BOX, text)

    async def run(self) -> Stats:
        t0 = time.monotonic()
        fuzzer = self

        class Csms(CentralSystem):
            def _on_frame(self, session: Any, direction: str, text: str) -> Any:  # type: ignore[override]
                frame = super()._on_frame(session, direction, text)
                if direction == "in":
                    fuzzer.on_in(text)
                return frame

            def _event(self, identity: str, kind: Any, detail: str = "") -> None:  # type: ignore[override]
                super()._event(identity, kind, detail)
                if identity == BOX and kind == "connect":
                    fuzzer.connects += 1
                elif identity == BOX and kind == "disconnect":
                    fuzzer.disconnects += 1
                elif identity == BOX and kind in ("bad_frame", "call_error_sent"):
                    fuzzer.refused.append(f"{kind}: {detail[:200]}")

        with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
            async with Csms("127.0.0.1", 0, max_records=20_000) as csms:
                d = Daemon(Path(tmp), csms.url, keys={"MeterValueSampleInterval": 30})
                ticker = asyncio.create_task(self.ticker())
                done = threading.Event()
                threading.Thread(target=self.watchdog, args=(done,), daemon=True).start()
                d.config.write_text(d.config.read_text().replace('level = "DEBUG"', 'level = "WARNING"'))
                try:
                    await d.start()
                    await d.until(lambda s: s["link"] == "connected", timeout_s=20, what="boot")
                    d.plug(1)
                    d.badge(TX_TAG)
                    start = await csms.wait_for("StartTransaction", timeout=10)
                    tx = await d.until(lambda s: s["connectors"][0]["transaction_id"], what="tx id")
                    await d.until(lambda s: s["connectors"][0]["status"] == "Charging", what="charging")
                    proc_pid = d.proc.pid if d.proc else None
                    self.tx_id = tx
                    connects = self.connects

                    def on_mv_tx(p: dict[str, Any]) -> bool:
                        return p.get("transactionId") == tx

                    gen = Gen(self.rng, tx)
                    recent: list[str] = []
                    shown_failures = 0
                    last_advance = time.monotonic()
                    t_skip = time.monotonic()
                    for n in range(self.start):  # --start: same random stream, nothing sent
                        self.next_frame(gen, n)
                        self.stats.skipped += 1
                        if n % 1000 == 0:
                            await asyncio.sleep(0)  # answer the daemon's Heartbeats meanwhile
                    self.stats.skip_seconds = time.monotonic() - t_skip
                    t_send = self.stats.last_meter_values = time.monotonic()
                    rss_before = _rss_kb(d.proc.pid if d.proc else None)
                    self.streaming = True
                    for n in range(self.start, self.frames):
                        uid = f"z{n:x}"
                        kind, action, text, payload = self.next_frame(gen, n)
                        self.stats.kinds[kind] += 1
                        readable = kind != "broken"
                        if readable:
                            self.pending[uid] = (kind, action, payload, text)
                            self.stats.expecting += 1
                        else:
                            try:
                                m = json.loads(text)
                                if isinstance(m, list) and len(m) > 1 and isinstance(m[1], str):
                                    self.optional[m[1]] += 1
                            except (ValueError, RecursionError):
                                pass
                        recent.append(text)
                        del recent[:-8]
                        try:
                            await self.send(csms, kind, text)
                        except ConnectionClosed as e:
                            shown = "\n    ".join(t[:300] for t in recent)
                            raise AssertionError(f"link dropped ({e}) after frame {n}; last frames sent:\n    {shown}") from None
                        self.stats.sent += 1
                        while len(self.pending) >= self.window:
                            self.slot.clear()
                            try:
                                await asyncio.wait_for(self.slot.wait(), ANSWER_WAIT_S)
                            except TimeoutError:
                                self.stats.fail(f"no answer within {ANSWER_WAIT_S} s; {len(self.pending)} outstanding, "
                                                f"e.g. {next(iter(self.pending.values()))[3][:200]}")
                                self.pending.clear()
                            if d.proc is not None and d.proc.returncode is not None:
                                raise AssertionError(f"daemon exited with {d.proc.returncode}")
                        if time.monotonic() - last_advance > 1.0:
                            d.advance(30)  # one periodic sample a second
                            last_advance = time.monotonic()
                        if self.verbose and n and n % 10000 == 0:
                            el = time.monotonic() - t_send
                            print(f"  {n} frames, {self.stats.sent / el:.0f}/s, failures {len(self.stats.failures)}, "
                                  f"daemon VmRSS {_rss_kb(d.proc.pid if d.proc else None) / 1024:.0f} MB, "
                                  f"its CALLs received {self.stats.daemon_calls[0]}", flush=True)
                            for f in self.stats.failures[shown_failures:]:
                                print(f"    FAIL {f[:400]}", flush=True)
                            shown_failures = len(self.stats.failures)
                        if not csms.connected(BOX):
                            raise AssertionError(f"link dropped after frame {n}: {text[:200]}")
                    self.streaming = False
                    self.stats.meter_values_gap = max(self.stats.meter_values_gap,
                                                      time.monotonic() - self.stats.last_meter_values)
                    self.stats.daemon_rss_kb = (rss_before, _rss_kb(d.proc.pid if d.proc else None))
                    end = time.monotonic() + ANSWER_WAIT_S
                    while self.pending and time.monotonic() < end:
                        await asyncio.sleep(0.05)
                    if self.stats.longest_stall > STALL_FAIL_S:
                        self.stats.fail(f"harness fault: this process's event loop (the CSMS) stalled "
                                        f"{self.stats.longest_stall:.1f} s; slowest frame generation "
                                        f"{self.stats.slowest_generation}")
                    for uid, entry in list(self.pending.items())[:20]:
                        self.stats.fail(f"never answered: {entry[3][:200]}")
                    await asyncio.sleep(1.0)  # late duplicates
                    # the charge goes on
                    if d.proc is None or d.proc.returncode is not None or d.proc.pid != proc_pid:
                        self.stats.fail("the daemon process is gone")
                    if not csms.connected(BOX) or self.connects != connects or self.disconnects:
                        self.stats.fail(f"the link dropped during the run: {self.disconnects} disconnects, "
                                        f"{self.connects - connects} reconnects")
                    # each final check on its own: one failing does not skip the others
                    try:
                        await csms.call(BOX, "ClearChargingProfile", {})
                        sampling = await csms.call(BOX, "GetConfiguration", {"key": [
                            "MeterValueSampleInterval", "MeterValuesSampledData", "ClockAlignedDataInterval"]})
                        self.stats.final_sampling = {k["key"]: k.get("value") for k in sampling["configurationKey"]}
                        mark = csms.mark()
                        d.advance(30)
                        await csms.wait_for("MeterValues", predicate=lambda r: on_mv_tx(r.payload),
                                            since=mark, timeout=10)
                    except Exception as e:  # noqa: BLE001 - any of them is a failure to report
                        self.stats.fail(f"no MeterValues of the running transaction after the run: "
                                        f"{type(e).__name__}: {str(e)[:300]}")
                    c1 = d.connector(1)
                    battery_full = c1["status"] == "SuspendedEV" and (c1.get("soc") or 0) >= 99
                    self.stats.final_status = f"{c1['status']} (SoC {c1.get('soc')} %)"
                    if c1["transaction_id"] != tx or not (c1["status"] == "Charging" or battery_full):
                        self.stats.fail(f"the charge did not go on: connector 1 {c1['status']}, "
                                        f"transaction {c1['transaction_id']} (was {tx})")
                    if self.stop_transactions:
                        self.stats.fail(f"{len(self.stop_transactions)} StopTransaction sent, the first: "
                                        f"{self.stop_transactions[0]}")
                    if self.refused:
                        self.stats.fail(f"the charge point sent {len(self.refused)} frames our CSMS had "
                                        f"to refuse, the first: {self.refused[0]}")
                    del start
                except AssertionError as e:
                    self.stats.fail(str(e))
                finally:
                    ticker.cancel()
                    done.set()
                    if d.proc is not None and d.proc.returncode is None:
                        await d.stop()
                    if self.stats.failures and d.log_path.exists():
                        keep = Path(tempfile.gettempdir()) / f"fuzz-daemon-seed{self.seed}.log"
                        keep.write_bytes(d.log_path.read_bytes())
                        self.stats.fail(f"(the daemon's log is kept in {keep})")
        self.stats.seconds = time.monotonic() - t0
        return self.stats


def _rss_kb(pid: int | None) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return 0
    m = re.search(r"VmRSS:\s+(\d+)", status)
    return int(m.group(1)) if m else 0


async def run(frames: int, seed: int, window: int = 64, verbose: bool = False,
              skip_known_bugs: bool = False, start: int = 0) -> Stats:
    return await Fuzzer(frames, seed, window, verbose, skip_known_bugs, start).run()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1_000_000, help="frames to send (default 1000000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--window", type=int, default=64, help="CALLs in flight at once (default 64)")
    ap.add_argument("--verbose", "-v", action="store_true")
    ap.add_argument("--skip-known-bugs", action="store_true",
                    help="replace frames that hit a known daemon bug (known_bug(); each is an xfail "
                         "test in tests/reliability/test_fuzz_smoke.py) by fresh ones, and count them")
    ap.add_argument("--start", type=int, default=0, metavar="N",
                    help="generate frames 0..N-1 (the same random stream) without sending them, "
                         "then send N..--frames: reproduces a late finding in seconds")
    args = ap.parse_args()
    stats = asyncio.run(run(args.frames, args.seed, args.window, args.verbose, args.skip_known_bugs,
                            args.start))
    print(f"fuzz run, seed {args.seed}, window {args.window}")
    print(stats.summary())
    for f in stats.failures[:40]:
        print(f"  FAIL {f[:3000]}")
    return 0 if not stats.failures else 1


if __name__ == "__main__":
    sys.exit(main())
