"""Reliability tests (issue 10): power cuts, fuzzed frames and long outages against the real daemon.

The heavy lifting lives in ``bench/powercut.py``, ``bench/fuzz.py`` and ``bench/outage.py``
(the full runs); these tests load them (as the modules ``powercut``, ``fuzz`` and ``outage``,
by file path: ``bench/``
is not put on sys.path, its ``drivers.py`` would shadow the ``drivers`` package) and run
short, seeded smoke runs of the same code.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "tests" / "integration") not in sys.path:
    sys.path.insert(0, str(REPO / "tests" / "integration"))

for _name in ("powercut", "fuzz", "outage"):
    if _name not in sys.modules:
        _spec = importlib.util.spec_from_file_location(_name, REPO / "bench" / f"{_name}.py")
        assert _spec is not None and _spec.loader is not None
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[_name] = _module
        _spec.loader.exec_module(_module)
