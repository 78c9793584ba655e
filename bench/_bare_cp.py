"""The baseline for ``bench/roundtrip.py``: the bare ``ocpp`` library as a charge point.

A minimal ``ocpp.v16.ChargePoint`` subclass with trivial ``@on`` handlers that answer
GetConfiguration and RemoteStartTransaction with fixed payloads, everything else left
to the library's defaults (including its schema validation, ``ASYNC_VALIDATION`` on).
It runs in its own process, as the charger daemon does, and connects like the daemon's
link does (subprotocol ocpp1.6, no compression), so only the charge point side differs.

    python bench/_bare_cp.py URL IDENTITY PAYLOADS.json [--sync-validation]

``PAYLOADS.json``: ``{"GetConfiguration": {...}, "RemoteStartTransaction": {...}}``, the
camelCase CALLRESULT payloads to send (roundtrip.py passes the daemon's own answers,
so both sides send the same bytes). ``--sync-validation`` turns the library's
``ocpp.messages.ASYNC_VALIDATION`` off, as the daemon does (schema checks in the receive
task instead of a thread executor). Runs until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import ocpp.messages
import websockets
from ocpp.charge_point import camel_to_snake_case
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import connect


def make_charge_point(payloads: dict[str, dict[str, Any]]) -> type[ChargePoint]:
    get_configuration = camel_to_snake_case(payloads["GetConfiguration"])
    remote_start = camel_to_snake_case(payloads["RemoteStartTransaction"])

    class BareChargePoint(ChargePoint):  # type: ignore[misc]
        @on(Action.get_configuration)
        def on_get_configuration(self, **kwargs: Any) -> call_result.GetConfiguration:
            return call_result.GetConfiguration(**get_configuration)

        @on(Action.remote_start_transaction)
        def on_remote_start_transaction(self, **kwargs: Any) -> call_result.RemoteStartTransaction:
            return call_result.RemoteStartTransaction(**remote_start)

    return BareChargePoint


async def main(url: str, identity: str, payload_file: str) -> None:
    with open(payload_file) as f:
        payloads = json.load(f)
    cls = make_charge_point(payloads)
    async with connect(
        f"{url.rstrip('/')}/{identity}",
        subprotocols=[websockets.Subprotocol("ocpp1.6")],
        compression=None,
        open_timeout=10,
        proxy=None,
    ) as ws:
        await cls(identity, ws).start()


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--sync-validation" in argv:
        argv.remove("--sync-validation")
        ocpp.messages.ASYNC_VALIDATION = False
    if len(argv) != 3:
        sys.exit(__doc__)
    asyncio.run(main(*argv))
