"""R-OPSYS 3: structured journal entries (native protocol) with the OCPP fields."""

from __future__ import annotations

import logging
import socket
import struct

from controller.journal import JournalHandler, encode


def _parse(data: bytes) -> dict[str, str]:
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            fields[k.decode()] = v.decode()
            i = nl + 1
        else:  # binary form: KEY\n<u64 le length><data>\n
            (n,) = struct.unpack("<Q", data[nl + 1 : nl + 9])
            fields[line.decode()] = data[nl + 9 : nl + 9 + n].decode()
            i = nl + 9 + n + 1
    return fields


def test_r_opsys_3_entries_carry_priority_and_ocpp_fields(tmp_path):
    path = tmp_path / "journal.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    handler = JournalHandler(str(path))
    logger = logging.getLogger("test.journal")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("transaction %s stopped", 7, extra={"connector": 1, "transaction_id": 7, "ocpp_message_id": "u-1"})
        fields = _parse(server.recv(65536))
    finally:
        logger.removeHandler(handler)
        handler.close()
        server.close()
    assert fields["MESSAGE"] == "transaction 7 stopped"
    assert fields["PRIORITY"] == "4"
    assert fields["CONNECTOR"] == "1" and fields["TRANSACTION_ID"] == "7" and fields["OCPP_MESSAGE_ID"] == "u-1"
    assert fields["SYSLOG_IDENTIFIER"] == "evsectl"


def test_r_opsys_3_multiline_values_use_the_binary_form():
    assert _parse(encode({"MESSAGE": "a\nb", "PRIORITY": 6})) == {"MESSAGE": "a\nb", "PRIORITY": "6"}
