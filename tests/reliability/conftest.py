"""Reliability tests (issue 10): power cuts and fuzzed frames against the real daemon.

The heavy lifting lives in ``bench/powercut.py`` and ``bench/fuzz.py`` (the full runs);
these tests import them and run short, seeded smoke runs of the same code.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for path in (REPO / "bench", REPO / "tests" / "integration"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
