"""Redis stopped mid-run under two `corral serve` processes that share it: serving goes on, each
on its own view, the outage is counted (metrics, /admin/health), and the shared state
converges when Redis is back (one lease holder again, health changes shared again).

The Redis is this test's own redis-server on a free port (tests/cluster/harness.RedisServer),
started, stopped and started again by the test; PostgreSQL is a database of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster.harness import (
    RedisServer,
    base_env,
    chat,
    gateways,
    own_database,
    propagation_bound,
    seen_everywhere,
    until,
)
from tests.emulators.ollama import OllamaEmulator
from tests.support.servers import ServerThread

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
CONFIG = """
providers:
  - name: c
    type: ollama
    base_url: http://127.0.0.1:{c}
  - name: d
    type: ollama
    base_url: http://127.0.0.1:{d}
router:
  health_interval: 1
  health_timeout: 0.5
  eject_after: 1
  eject_base: 30
"""


def metric(admin_url: str, headers: dict[str, str], name: str) -> float:
    text = httpx.get(admin_url + "/metrics", headers=headers, timeout=5).text
    line = next(x for x in text.splitlines() if x.startswith(name + " "))
    return float(line.split()[1])


@pytest.fixture(autouse=True)
def _reset_faults() -> Iterator[None]:
    """Overrides tests/e2e/conftest.py's: these tests do not use its fleet (so it is not started)."""
    yield


def test_redis_stopped_mid_run_serving_goes_on_and_state_converges_after(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    c, d = OllamaEmulator(), OllamaEmulator()
    with (
        own_database() as database,
        ServerThread(c.app) as c_server,
        ServerThread(d.app) as d_server,
    ):
        config = tmp_path / "corral.yaml"
        config.write_text(CONFIG.format(c=c_server.port, d=d_server.port))
        env = base_env(database, server.url, "corral-outage-test")
        try:
            with gateways(config, env, tmp_path, 2) as gw:
                with gw.admin(0) as admin:
                    key = admin.post("/admin/keys", json={"name": "outage"}).json()["key"]
                until(
                    lambda: chat(gw.nodes[1].url, key, "c/llama3.2").status_code == 200, 2, "key everywhere"
                )
                leaders = lambda: sum(gw.health(i)["cluster"]["leader"] for i in range(2))  # noqa: E731
                until(lambda: leaders() == 1, 5, "one lease holder")

                server.stop()
                for _ in range(5):  # serving goes on through both
                    for node in gw.nodes:
                        assert chat(node.url, key, "c/llama3.2").status_code == 200
                until(
                    lambda: all(gw.health(i)["cluster"]["redis"] == "degraded" for i in range(2)),
                    5,
                    "the outage shown in /admin/health",
                )
                for node in gw.nodes:
                    assert metric(node.admin_url, gw.headers, "corral_cluster_degraded") == 1.0
                    assert metric(node.admin_url, gw.headers, "corral_cluster_redis_errors_total") >= 1
                until(lambda: leaders() == 2, 5, "each process probing for itself meanwhile")

                server.start()  # the same port, empty: nothing of the old state is left in it
                until(
                    lambda: all(gw.health(i)["cluster"]["redis"] == "ok" for i in range(2)),
                    10,
                    "both back on Redis",
                )
                until(lambda: leaders() == 1, 8, "one lease holder again")
                until(lambda: len(gw.health(0)["cluster"]["workers"]) == 2, 5, "both listed again")

                # a failure seen by the lease holder only (the other does not probe) ...
                leader = next(i for i in range(2) if gw.health(i)["cluster"]["leader"])
                other = 1 - leader
                d_port = d_server.port
                d_server.stop()
                assert chat(gw.nodes[leader].url, key, "d/llama3.2").status_code >= 500
                failed, bound = time.monotonic(), propagation_bound()
                took = seen_everywhere(
                    1, lambda _: gw.deployment(other, "d")["state"] == "ejected", failed, bound, "d ejected"
                )
                assert took < bound, (
                    f"... ejects d in the other process too, {took:.2f} s after ({bound:.2f})"
                )
                d_server = ServerThread(d.app, port=d_port).start()
        finally:
            d_server.stop()
            server.stop()
