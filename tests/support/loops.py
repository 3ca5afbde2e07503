"""The asyncio/uvloop parametrization hook, imported by the conftest of each folder whose tests
run on both loops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Every test runs on asyncio's own loop and on uvloop, which the gateway runs on."""
    factories: dict[str, Callable[[], Any]] = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories
