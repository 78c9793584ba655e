"""pytest fixtures for the two central systems a charger test can talk to.

``csms``: our own ``controller.csms.CentralSystem`` on a free 127.0.0.1 port, fresh per test.
``peer_csms``: the independent node peer (``tests/peer_csms``), one process per module,
reset (default answers, empty event log) before each test.

Load them with ``pytest_plugins = ["csms_harness"]`` in a test module or in
``tests/conftest.py`` (``tests/`` is on sys.path there: it has no ``__init__.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from peer_harness import PeerCsms

from controller.csms import CentralSystem


@pytest.fixture
async def csms() -> AsyncIterator[CentralSystem]:
    async with CentralSystem("127.0.0.1", 0) as central_system:
        yield central_system


@pytest.fixture(scope="module")
def peer_csms_process() -> Iterator[PeerCsms]:
    with PeerCsms() as peer:
        yield peer


@pytest.fixture
def peer_csms(peer_csms_process: PeerCsms) -> PeerCsms:
    peer_csms_process.reset()
    return peer_csms_process
