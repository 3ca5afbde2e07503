"""The servers and clients of the conformance tests: a recording edge (built in ``start_edge``,
the one place that knows how an ``EdgeServer`` is put together) and a scripted upstream. Every
test runs on asyncio and on uvloop; the report header says which Hypothesis profile and seed
the properties run with."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest

from corral.edge.server import EdgeServer
from corral.http.routes import Route, RouteTable
from corral.keys.principal import Principal
from tests.conformance.harness import Edge, Recorder, Upstream
from tests.conformance.messages import STREAM_PATH
from tests.conformance.profiles import FACTOR, PROFILE
from tests.conformance.request_strategies import MAX_BODY, METHODS
from tests.support.loops import pytest_asyncio_loop_factories  # noqa: F401 - the hook, shared


def pytest_report_header(config: pytest.Config) -> str:
    if PROFILE == "ci":
        return "conformance: hypothesis profile 'ci' (derandomized: the same examples on every run)"
    seed = config.getoption("hypothesis_seed", default=None)
    return f"conformance: hypothesis profile 'long' x{FACTOR}, seed {seed if seed is not None else 'random'}"


def _no_gate(headers: Mapping[str, str], admin: bool) -> Principal:
    raise AssertionError("every route of the conformance edge is open")


async def start_edge(recorder: Recorder) -> EdgeServer:
    """A started EdgeServer on 127.0.0.1 whose every origin-form path, for each method in
    ``METHODS``, is the recorder's (``STREAM_PATH`` answers a stream). The one place that knows
    how an EdgeServer is put together."""
    table = RouteTable(_no_gate)
    table.add(METHODS, STREAM_PATH, Route(recorder.stream, access="open"))
    table.add(METHODS, "/", Route(recorder.record, access="open"))
    table.add_prefix(METHODS, "/", Route(recorder.record, access="open"))
    server = EdgeServer(table, MAX_BODY)
    await server.start("127.0.0.1", 0)
    return server


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    """A recording edge, shared by the examples of one test (each on a connection of its own)."""
    recorder = Recorder(MAX_BODY)
    server = await start_edge(recorder)
    yield Edge(server, recorder)
    await server.close(1.0)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """A scripted upstream, shared by the examples of one test."""
    started = Upstream()
    await started.server.start()
    yield started
    await started.server.stop()
