from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.edge.harness import Edge
from tests.support.loops import pytest_asyncio_loop_factories  # noqa: F401 - the hook, shared


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    """A started EdgeServer (max body 1000 bytes), stopped with its client sockets when the test ends."""
    started = await Edge().start()
    yield started
    await started.stop()
