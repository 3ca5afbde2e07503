"""What several workers without Redis would get wrong is refused when it is added while serving.

A gateway told it is one of 4 workers (the supervisor's environment, ``corral.identity``) and
given no ``redis_url`` refuses, through its real admin API over HTTP, a provider whose
``max_parallel`` is below 4 and a key with limits (409, naming the fix). The same requests pass
with one worker, or with 4 workers sharing a Redis key prefix. And a provider stored earlier
with such a ``max_parallel`` stops ``corral serve --workers 2`` at start, as the YAML check does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.security.crypto import generate_key
from tests.supervisor.process import Replica
from tests.support.databases import *  # noqa: F403 - the postgres_url fixture
from tests.support.gateway import GatewayServer, make_config
from tests.support.rediskeys import *  # noqa: F403 - the redis_prefix fixture
from tests.support.servers import free_port

pytestmark = pytest.mark.timeout(120)

GPU = {"name": "gpu", "type": "ollama", "base_url": "http://127.0.0.1:9"}


def _workers(count: int) -> dict[str, str]:
    """The environment a supervisor gives worker 0 of ``count``."""
    return {
        "CORRAL_SUPERVISOR_PID": str(os.getpid()),
        "CORRAL_WORKER_INDEX": "0",
        "CORRAL_WORKER_COUNT": str(count),
    }


@pytest.fixture
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayServer]:
    """A gateway with its control plane (SQLite in ``tmp_path``): ``(workers, redis)``."""
    workers, redis = request.param
    config: dict[str, Any] = {"providers": []}
    env = _workers(workers)
    if redis:
        url, prefix = request.getfixturevalue("redis_prefix")
        config["redis_url"] = url
        env["CORRAL_REDIS_PREFIX"] = f"{prefix}:"
    with GatewayServer(make_config(config), home=tmp_path, env=env) as server:
        yield server


def _call(server: GatewayServer, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.request(method, server.admin_url + path, json=body, headers=server.headers(), timeout=10)


def _refused(resp: httpx.Response, param: str) -> str:
    assert resp.status_code == 409, resp.text
    error = resp.json()["error"]
    assert error["code"] == "needs_shared_store" and error["param"] == param
    assert error["type"] == "invalid_request_error"
    message: str = error["message"]
    assert "redis_url" in message and "4 worker" in message
    return message


@pytest.mark.parametrize("gateway", [(4, False)], indirect=True)
def test_four_workers_without_redis_refuse_a_max_parallel_they_cannot_split(gateway: GatewayServer) -> None:
    message = _refused(_call(gateway, "POST", "/admin/providers", {**GPU, "max_parallel": 2}), "max_parallel")
    assert "max_parallel 2" in message and "at least 4" in message
    assert _call(gateway, "GET", "/admin/providers/gpu", {}).status_code == 404  # nothing was stored

    assert _call(gateway, "POST", "/admin/providers", {**GPU, "max_parallel": 4}).status_code == 201
    _refused(_call(gateway, "PATCH", "/admin/providers/gpu", {"max_parallel": 3}), "max_parallel")
    assert _call(gateway, "GET", "/admin/providers/gpu", {}).json()["max_parallel"] == 4
    assert _call(gateway, "PATCH", "/admin/providers/gpu", {"max_parallel": 0}).status_code == 200  # no cap
    # a disabled provider sends nothing; enabling it is the change that is refused
    assert _call(gateway, "POST", "/admin/providers", {**GPU, "name": "off", "enabled": False,
                                                        "max_parallel": 1}).status_code == 201  # fmt: skip
    _refused(_call(gateway, "PATCH", "/admin/providers/off", {"enabled": True}), "max_parallel")


@pytest.mark.parametrize("gateway", [(4, False)], indirect=True)
def test_four_workers_without_redis_refuse_keys_with_limits(gateway: GatewayServer) -> None:
    message = _refused(_call(gateway, "POST", "/admin/keys", {"name": "ci", "rpm": 60}), "rpm")
    assert "4 times over" in message
    _refused(_call(gateway, "POST", "/admin/keys", {"name": "ci", "max_budget": 5.0}), "max_budget")
    assert _call(gateway, "GET", "/admin/keys", {}).json()["data"] == []  # nothing was issued

    free = _call(gateway, "POST", "/admin/keys", {"name": "free"})
    assert free.status_code == 201
    ident = free.json()["id"]
    _refused(_call(gateway, "PATCH", f"/admin/keys/{ident}", {"tpm": 1000}), "tpm")
    assert _call(gateway, "GET", f"/admin/keys/{ident}", {}).json()["tpm"] is None
    assert _call(gateway, "PATCH", f"/admin/keys/{ident}", {"name": "renamed"}).status_code == 200
    # a disabled key counts nothing, so it may hold limits; enabling it is refused
    off = _call(gateway, "POST", "/admin/keys", {"name": "off", "enabled": False, "rpm": 5})
    assert off.status_code == 201
    _refused(_call(gateway, "PATCH", f"/admin/keys/{off.json()['id']}", {"enabled": True}), "rpm")
    cleared = _call(gateway, "PATCH", f"/admin/keys/{off.json()['id']}", {"enabled": True, "rpm": None})
    assert cleared.status_code == 200 and cleared.json()["enabled"] is True


@pytest.mark.parametrize(
    "gateway",
    [pytest.param((1, False), id="one-worker"), pytest.param((4, True), id="redis", marks=pytest.mark.redis)],
    indirect=True,
)
def test_the_same_changes_pass_with_one_worker_or_with_redis(gateway: GatewayServer) -> None:
    assert _call(gateway, "POST", "/admin/providers", {**GPU, "max_parallel": 2}).status_code == 201
    assert _call(gateway, "PATCH", "/admin/providers/gpu", {"max_parallel": 1}).status_code == 200
    key = _call(gateway, "POST", "/admin/keys", {"name": "ci", "rpm": 60, "max_budget": 5.0})
    assert key.status_code == 201 and key.json()["rpm"] == 60
    assert _call(gateway, "PATCH", f"/admin/keys/{key.json()['id']}", {"tpm": 1000}).status_code == 200


@pytest.mark.postgres
def test_a_stored_provider_workers_cannot_split_stops_the_start(tmp_path: Path, postgres_url: str) -> None:
    secret = generate_key()
    env = {"CORRAL_DATABASE_URL": postgres_url, "CORRAL_ENCRYPTION_KEY": secret}
    config = tmp_path / "corral.yaml"
    config.write_text("providers: []\n")
    with GatewayServer(make_config({"providers": []}), home=tmp_path / "one", env=env) as one:
        assert _call(one, "POST", "/admin/providers", {**GPU, "max_parallel": 1}).status_code == 201
    home = tmp_path / "home"
    home.mkdir()
    replica = Replica(home, config, free_port(), free_port(), env).start()
    assert replica.proc is not None and replica.proc.wait(60) == 2
    assert replica.ended.wait(10)
    assert "provider gpu: max_parallel 1" in replica.output and "Set redis_url" in replica.output
    assert "listening on" not in replica.output
