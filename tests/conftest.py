"""Shared fixtures: the two central systems (ours on `ocpp`, the node peer on `ocpp-rpc`).

``tests/support`` (test PKI, file servers) is put on sys.path here so that unit and
integration tests share one copy of each.
"""

import sys
from pathlib import Path

import pytest

_SUPPORT = str(Path(__file__).resolve().parent / "support")
if _SUPPORT not in sys.path:
    sys.path.insert(0, _SUPPORT)

pytest.register_assert_rewrite("file_servers", "tls_material")  # before any test imports them

pytest_plugins = ["csms_harness"]
