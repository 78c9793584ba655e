"""R-DT 1-3 in the core: CostUpdated for the running transaction only; picture requests."""

from __future__ import annotations

import json

import pytest
from test_charger import make_rig  # noqa: F401 - the fixture

from controller.core import pictures


def cost(tx, total=1.0):
    body = {"currency": "EUR", "method": "CostUpdated", "connectID": 1, "totalCost": total, "transactionId": tx}
    return {"vendorId": "com.se.cost", "messageId": "CostUpdated", "data": json.dumps(body)}


def test_r_dt_1_cost_of_another_transaction_is_rejected_with_a_reason(make_rig):  # noqa: F811
    rig = make_rig()
    rig.boot()
    tx = rig.charge(1)
    assert rig.request("DataTransfer", cost(tx + 1000)) == {
        "status": "Rejected", "data": json.dumps({"reason": "UnknownTransaction"})}
    assert rig.charger.snapshot()["connectors"][0]["cost"] is None
    assert rig.request("DataTransfer", cost(tx, 2.5)) == {"status": "Accepted"}


def test_pictures_without_a_runtime_port_answer_not_supported(make_rig):  # noqa: F811
    rig = make_rig()
    rig.boot()
    data = json.dumps({"fileType": "Tariff", "type": "file", "location": "http://x/t.png"})
    reply = rig.request("DataTransfer", {"vendorId": "com.se.tariff", "messageId": "TariffDownload", "data": data})
    assert reply == {"status": "Rejected", "data": json.dumps({"downloadStatus": "NotSupported"})}


def test_the_port_is_called_with_the_request_and_its_outcome_answered(make_rig):  # noqa: F811
    rig = make_rig()
    rig.boot()
    seen = []
    rig.charger.picture_port = lambda req: (seen.append(req), "Downloaded")[1]
    data = json.dumps({"fileType": "logo", "type": "file", "location": "ftp://h/logo.png"})
    reply = rig.request("DataTransfer", {"vendorId": "Schneider Electric", "messageId": "ImageDownload", "data": data})
    assert reply == {"status": "Accepted", "data": json.dumps({"downloadStatus": "Downloaded"})}
    assert seen == [pictures.PictureRequest("logo", "file", "ftp://h/logo.png", pictures.LOGO_MAX)]


@pytest.mark.parametrize(("message", "data", "expected"), [
    ("TariffDownload", {"fileType": "Tariff", "type": "file", "location": "https://h/t.png"}, "tariff"),
    ("TariffDownload", {"fileType": "Tariff", "type": "file", "location": "https://h/t.png", "size": 2097153},
     "TooLarge"),
    ("TariffDownload", {"fileType": "Tariff", "type": "folder", "location": "ftp://h/"}, "InvalidRequest"),
    ("TariffDownload", {"fileType": "Tariff", "type": "file", "location": "file:///etc/passwd"}, "InvalidRequest"),
    ("ImageDownload", {"fileType": "screensaver", "type": "folder", "location": "ftp://h/i/"}, "screensaver"),
    ("ImageDownload", {"fileType": "screensaver", "type": "folder", "location": "https://h/i/"}, "InvalidRequest"),
    ("ImageDownload", {"fileType": "banner", "type": "file", "location": "https://h/i.png"}, "InvalidRequest"),
    ("ImageDownload", "not json", "InvalidRequest"),
])
def test_requests_are_checked_before_anything_is_fetched(message, data, expected):
    out = pictures.parse(message, data if isinstance(data, str) else json.dumps(data))
    assert (out if isinstance(out, str) else out.kind) == expected
