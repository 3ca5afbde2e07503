"""One gateway across processes: four `corral serve` processes sharing PostgreSQL and Redis, in
front of two Ollama emulators (tests/cluster/harness.py).

P7a's ``corral serve --workers 2`` had not landed when these were written, so four
single-worker processes on separate ports stand in for two replicas of two workers: for the
shared state (limits, health, probes, slots, changes) that is the same thing, each process is
one worker with its own memory and its own connection to Redis and PostgreSQL.

Every wait is a poll with a deadline (``until``); the 1 s bounds are the issue's.
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
    propagation_bound,
    redis_url,
    seen_everywhere,
    until,
)
from tests.emulators.ollama import OllamaEmulator
from tests.support.servers import ServerThread

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
NODES = 4
CONFIG = """
providers:
  - name: a
    type: ollama
    base_url: http://127.0.0.1:{a}
    max_parallel: 2
  - name: b
    type: ollama
    base_url: http://127.0.0.1:{b}
router:
  health_interval: 1
  health_timeout: 0.5
  eject_after: 1
  queue_timeout: 30
server:
  discovery_interval: 2
"""


@dataclass
class Cluster:
    gw: Gateways
    a: OllamaEmulator
    a_server: ServerThread
    b: OllamaEmulator
    b_server: ServerThread

    def key(self, **fields: object) -> tuple[str, str]:
        with self.gw.admin(0) as admin:
            resp = admin.post("/admin/keys", json={"name": "cluster-test", **fields})
        assert resp.status_code in (200, 201), resp.text
        body = resp.json()
        return body["key"], body["id"]

    def base(self, i: int) -> str:
        return self.gw.nodes[i % NODES].url


@pytest.fixture(autouse=True)
def _reset_faults() -> Iterator[None]:
    """Overrides tests/e2e/conftest.py's: these tests do not use its fleet (so it is not started)."""
    yield


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    url = redis_url()
    a, b = OllamaEmulator(), OllamaEmulator()
    with (
        own_prefix(url) as prefix,
        own_database() as database,
        ServerThread(a.app) as a_server,
        ServerThread(b.app) as b_server,
    ):
        config = root / "corral.yaml"
        config.write_text(CONFIG.format(a=a_server.port, b=b_server.port))
        with gateways(config, base_env(database, url, prefix), root, NODES) as gw:
            made = Cluster(gw, a, a_server, b, b_server)
            try:
                yield made
            finally:
                made.b_server.stop()  # the one a test restarted, if it did


def test_every_process_lists_the_fleet_and_one_holds_the_probe_lease(cluster: Cluster) -> None:
    def fleet() -> list[dict[str, object]] | None:
        views = [cluster.gw.health(i)["cluster"] for i in range(NODES)]
        workers = views[0]["workers"]
        leaders = [w for w in workers if w["leader"]]
        return workers if len(workers) == NODES and len(leaders) == 1 else None

    workers = until(fleet, 5, f"{NODES} workers listed, exactly one leading")
    assert {w["pid"] for w in workers} == {n.proc.pid for n in cluster.gw.nodes}
    assert all(w["host"] and w["started"] and w["replica"] for w in workers)


def test_an_rpm_limit_of_60_holds_across_all_processes(cluster: Cluster) -> None:
    # all of it within one clock minute: across a boundary the sliding window rightly admits more
    until(lambda: time.time() % 60 < 15, 65, "the start of a minute", every=0.2)
    minute = int(time.time() // 60)
    key, _ = cluster.key(rpm=60)
    statuses = [chat(cluster.base(i), key, "b/llama3.2").status_code for i in range(60)]
    refused = [chat(cluster.base(i), key, "b/llama3.2").status_code for i in range(NODES)]
    assert int(time.time() // 60) == minute, "the requests took past the minute: too slow to tell"
    fail_open = sum(
        metric(node, cluster.gw.headers, "corral_limiter_fail_open_total") for node in cluster.gw.nodes
    )
    assert fail_open == 0, f"{fail_open} admits let through unlimited (Redis timed out): inconclusive"
    assert statuses == [200] * 60
    assert refused == [429] * NODES  # the 61st, wherever it lands


def test_a_key_revoked_through_one_process_is_refused_by_all_within_1s(cluster: Cluster) -> None:
    key, key_id = cluster.key()
    until(
        lambda: all(chat(cluster.base(i), key, "b/llama3.2").status_code == 200 for i in range(NODES)),
        1.0,
        "a new key accepted by every process",
    )
    with cluster.gw.admin(1) as admin:
        assert admin.delete(f"/admin/keys/{key_id}").status_code in (200, 204)
    revoked, bound = time.monotonic(), propagation_bound()
    took = seen_everywhere(
        NODES,
        lambda i: chat(cluster.base(i), key, "b/llama3.2").status_code == 401,
        revoked,
        bound,
        "the revoked key refused",
    )
    assert took < bound, f"the last process refused the revoked key {took:.2f} s after (bound {bound:.2f} s)"


def test_an_alias_created_through_one_process_serves_through_all_within_1s(cluster: Cluster) -> None:
    key, _ = cluster.key()
    assert chat(cluster.base(3), key, "team/cluster").status_code == 404
    with cluster.gw.admin(0) as admin:
        created = admin.post("/admin/aliases", json={"name": "team/cluster", "target": "b/llama3.2"})
    assert created.status_code == 201, created.text
    made, bound = time.monotonic(), propagation_bound()
    took = seen_everywhere(
        NODES,
        lambda i: chat(cluster.base(i), key, "team/cluster").status_code == 200,
        made,
        bound,
        "alias served",
    )
    assert took < bound, f"the last process served the new alias {took:.2f} s after (bound {bound:.2f} s)"


def test_an_instance_killed_is_ejected_everywhere_within_1s_and_returns_on_recovery(cluster: Cluster) -> None:
    key, _ = cluster.key()

    def states() -> list[str]:
        return [cluster.gw.deployment(i, "b")["state"] for i in range(NODES)]

    until(lambda: set(states()) == {"healthy"}, 5, "b healthy everywhere")
    port = cluster.b_server.port
    cluster.b_server.stop()
    resp = chat(cluster.base(2), key, "b/llama3.2")  # the first failure, seen by process 2 (or a probe)
    failed, bound = time.monotonic(), propagation_bound()
    assert resp.status_code >= 500
    took = seen_everywhere(
        NODES, lambda i: cluster.gw.deployment(i, "b")["state"] == "ejected", failed, bound, "b ejected"
    )
    assert took < bound, (
        f"the last process ejected b {took:.2f} s after the first failure (bound {bound:.2f} s)"
    )
    for i in range(NODES):  # nobody sends it traffic now: refused at once, not after a connect error
        assert chat(cluster.base(i), key, "b/llama3.2").status_code >= 500
    cluster.b_server = ServerThread(cluster.b.app, port=port).start()
    until(lambda: set(states()) == {"healthy"}, 4, "b back everywhere after its probe passes")
    assert all(chat(cluster.base(i), key, "b/llama3.2").status_code == 200 for i in range(NODES))


def test_probes_reach_each_instance_once_per_interval_not_once_per_process(cluster: Cluster) -> None:
    before = len(cluster.a.requests_to("/api/version"))
    started = time.monotonic()
    until(lambda: time.monotonic() - started >= 4.0, 6, "4 s of probing pass", every=0.1)
    probes = len(cluster.a.requests_to("/api/version")) - before
    assert 2 <= probes <= 6, f"{probes} probes in 4 s with a 1 s interval ({NODES} processes)"


def test_max_parallel_2_holds_in_total_across_processes_under_50_concurrent_requests(
    cluster: Cluster,
) -> None:
    key, _ = cluster.key()
    cluster.a.token_delay = 0.02
    cluster.a.max_generating = 0

    async def one(client: httpx.AsyncClient, i: int) -> int:
        resp = await client.post(
            cluster.base(i) + "/v1/chat/completions",
            json={
                "model": "a/llama3.2",
                "stream": True,
                "messages": [{"role": "user", "content": "one two three"}],
            },
            headers={"Authorization": f"Bearer {key}"},
        )
        return resp.status_code

    async def run() -> list[int]:
        limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return list(await asyncio.gather(*(one(client, i) for i in range(50))))

    try:
        statuses = asyncio.run(run())
    finally:
        cluster.a.token_delay = 0.0
    assert statuses == [200] * 50
    assert cluster.a.max_generating == 2, (
        f"{cluster.a.max_generating} at once on an instance of max_parallel 2"
    )
