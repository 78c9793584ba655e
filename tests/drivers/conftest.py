"""Fixtures for driver tests: a fake monotonic clock, a recording emit, contexts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.interfaces import ConnectorSpec, DriverContext, DriverEvent

# Station used unless a test says otherwise: CCS2 60 kW + CHAdeMO 50 kW, 120 kW total,
# so one connector alone is never held back by the station limit.
DEFAULT_CONNECTORS = (
    ConnectorSpec(1, "CCS2", 60_000.0),
    ConnectorSpec(2, "CHAdeMO", 50_000.0),
)
DEFAULT_STATION_MAX_W = 120_000.0


class FakeMonotonic:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        assert seconds >= 0
        self.now_s += seconds


class RecordingEmit:
    """Stands in for ``ctx.emit``; keeps every event in order."""

    def __init__(self) -> None:
        self.events: list[DriverEvent] = []

    def __call__(self, event: DriverEvent) -> None:
        self.events.append(event)


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def emitted() -> RecordingEmit:
    return RecordingEmit()


CtxFactory = Callable[..., DriverContext]


@pytest.fixture
def make_ctx(tmp_path: Path, clock: FakeMonotonic, emitted: RecordingEmit) -> CtxFactory:
    """Build a DriverContext; defaults: tmp state dir, the fake clock, the recorder."""

    def factory(
        *,
        state_dir: Path | None = None,
        connectors: tuple[ConnectorSpec, ...] = DEFAULT_CONNECTORS,
        station_max_power_w: float = DEFAULT_STATION_MAX_W,
        options: dict[str, Any] | None = None,
    ) -> DriverContext:
        return DriverContext(
            state_dir=state_dir or tmp_path / "state",
            connectors=connectors,
            station_max_power_w=station_max_power_w,
            emit=emitted,
            monotonic=clock,
            options=options or {},
        )

    return factory


@pytest.fixture
def ctx(make_ctx: CtxFactory) -> DriverContext:
    return make_ctx()
