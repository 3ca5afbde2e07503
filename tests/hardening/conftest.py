"""Regression tests for the hostile-input audit: each runs against a real gateway served as
`corral serve` serves it, over real sockets, once on asyncio and once on uvloop."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    """The event loop the gateway under test runs on (pass it as ``GatewayServer(loop=...)``)."""
    kind: str = request.param
    return kind
