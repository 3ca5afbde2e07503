from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.edge.harness import Edge


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    """A started EdgeServer (max body 1000 bytes), stopped with its client sockets when the test ends."""
    started = await Edge().start()
    yield started
    await started.stop()


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Every test runs on asyncio's own loop and on uvloop, which the gateway runs on."""
    factories: dict[str, Callable[[], Any]] = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories
