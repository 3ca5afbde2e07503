"""Two replicas of ``corral serve --workers 2`` (the issue's layout) sharing PostgreSQL and
Redis in front of Ollama emulators: four workers that behave as one gateway.

A replica's workers share its port, so a request lands on whichever worker accepts it; what
is asserted here holds whichever worker that is: the fleet view lists all four workers with one
probe-lease holder, an rpm limit of 60 holds across them, ``max_parallel: 2`` holds in total
under 50 concurrent requests, and probes reach each instance once per interval. The tests that
time propagation to each worker (revocation, ejection) run on single-worker processes that can
be addressed one by one (test_cluster.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.cluster.harness import (
    Gateways,
    base_env,
    chat,
    gateways,
    metric,
    own_database,
    own_prefix,
    redis_url,
    until,
)
from tests.emulators.ollama import OllamaEmulator
from tests.support.servers import ServerThread

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(400)]
REPLICAS, WORKERS = 2, 2
CONFIG = """
providers:
  - name: a
    type: ollama
    base_url: http://127.0.0.1:{a}
    max_parallel: 2
router:
  health_interval: 1
  health_timeout: 0.5
  queue_timeout: 60
"""


@dataclass
class TwoReplicas:
    gw: Gateways
    a: OllamaEmulator

    def key(self, **fields: object) -> str:
        with self.gw.admin(0) as admin:
            resp = admin.post("/admin/keys", json={"name": "workers-test", **fields})
        assert resp.status_code in (200, 201), resp.text
        key: str = resp.json()["key"]
        return key


@pytest.fixture(autouse=True)
def _reset_faults() -> Iterator[None]:
    """Overrides tests/e2e/conftest.py's: these tests do not use its fleet (so it is not started)."""
    yield


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoReplicas]:
    root = tmp_path_factory.mktemp("workers")
    url = redis_url()
    a = OllamaEmulator()
    with own_prefix(url) as prefix, own_database() as database, ServerThread(a.app) as a_server:
        config = root / "corral.yaml"
        config.write_text(CONFIG.format(a=a_server.port))
        with gateways(config, base_env(database, url, prefix), root, REPLICAS, WORKERS) as gw:
            yield TwoReplicas(gw, a)


def test_admin_health_lists_all_four_workers_of_both_replicas_and_one_lease_holder(two: TwoReplicas) -> None:
    def listed() -> list[dict[str, object]] | None:
        workers = two.gw.health(0)["cluster"]["workers"]
        leaders = [w for w in workers if w["leader"]]
        return workers if len(workers) == REPLICAS * WORKERS and len(leaders) == 1 else None

    workers = until(listed, 30, "4 workers listed, exactly one leading")
    assert len({w["replica"] for w in workers}) == REPLICAS
    assert sorted(int(str(w["index"])) for w in workers) == [0, 0, 1, 1]
    assert {w["supervisor_pid"] for w in workers} == {n.proc.pid for n in two.gw.nodes}


def test_an_rpm_limit_of_60_holds_across_all_four_workers(two: TwoReplicas) -> None:
    # all of it within one clock minute: across a boundary the sliding window rightly admits more
    until(lambda: time.time() % 60 < 15, 65, "the start of a minute", every=0.2)
    minute = int(time.time() // 60)
    key = two.key(rpm=60)
    bases = [n.url for n in two.gw.nodes]
    statuses = [chat(bases[i % REPLICAS], key, "a/llama3.2").status_code for i in range(60)]
    refused = [chat(bases[i % REPLICAS], key, "a/llama3.2").status_code for i in range(6)]
    assert int(time.time() // 60) == minute, "the requests took past the minute: too slow to tell"
    fail_open = sum(metric(node, two.gw.headers, "corral_limiter_fail_open_total") for node in two.gw.nodes)
    assert fail_open == 0, f"{fail_open} admits let through unlimited (Redis timed out): inconclusive"
    assert statuses == [200] * 60
    assert refused == [429] * 6  # the 61st and later, whichever worker they land on


def test_max_parallel_2_holds_in_total_across_four_workers_under_50_concurrent_requests(
    two: TwoReplicas,
) -> None:
    key = two.key()
    two.a.token_delay = 0.02
    two.a.max_generating = 0
    bases = [n.url for n in two.gw.nodes]

    async def one(client: httpx.AsyncClient, i: int) -> int:
        body = {
            "model": "a/llama3.2",
            "stream": True,
            "messages": [{"role": "user", "content": "one two three"}],
        }
        resp = await client.post(
            bases[i % REPLICAS] + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        )
        return resp.status_code

    async def run() -> list[int]:
        # a connection per request, so the replicas' workers share them out between themselves
        limits = httpx.Limits(max_connections=60, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=90, limits=limits) as client:
            return list(await asyncio.gather(*(one(client, i) for i in range(50))))

    try:
        statuses = asyncio.run(run())
    finally:
        two.a.token_delay = 0.0
    assert statuses == [200] * 50
    assert two.a.max_generating == 2, f"{two.a.max_generating} at once on an instance of max_parallel 2"


def test_probes_reach_the_instance_once_per_interval_not_once_per_worker(two: TwoReplicas) -> None:
    before = len(two.a.requests_to("/api/version"))
    started = time.monotonic()
    until(lambda: time.monotonic() - started >= 4.0, 6, "4 s of probing pass", every=0.1)
    probes = len(two.a.requests_to("/api/version")) - before
    assert 2 <= probes <= 6, f"{probes} probes in 4 s with a 1 s interval ({REPLICAS * WORKERS} workers)"
