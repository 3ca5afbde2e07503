"""A rolling restart of two replicas, each ``corral serve --workers 2``, sharing PostgreSQL and
Redis, in front of an Ollama emulator: while clients (that retry on connection refused) send
streamed chats through both, one replica is stopped with SIGTERM and started again. No client
request fails and the usage table holds exactly one record per answered request.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from corral.security.crypto import generate_key
from tests.e2e.test_workers import _config, chat
from tests.emulators.ollama import OllamaEmulator
from tests.supervisor.process import Load, Replica, wait_for
from tests.support.databases import *  # noqa: F403 - the postgres_url fixture
from tests.support.databases import fetch
from tests.support.rediskeys import *  # noqa: F403 - the redis_prefix fixture
from tests.support.servers import ServerThread, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(600)]


def test_a_rolling_restart_loses_no_request_and_no_usage_record(
    tmp_path: Path, postgres_url: str, redis_prefix: tuple[str, str]
) -> None:
    emu = OllamaEmulator(token_delay=0.02)
    url, prefix = redis_prefix
    shared = {
        "CORRAL_DATABASE_URL": postgres_url,
        "CORRAL_REDIS_URL": url,
        "CORRAL_REDIS_PREFIX": f"{prefix}:",
        "CORRAL_ENCRYPTION_KEY": generate_key(),  # both replicas read the same stored secrets
    }
    replicas: list[Replica] = []
    with ServerThread(emu.app, loop="uvloop") as upstream:
        for name in ("a", "b"):
            home = tmp_path / name
            home.mkdir()
            replicas.append(Replica(home, _config(home, upstream.url), free_port(), free_port(), shared))
        a, b = replicas
        load = Load([a.url, b.url], chat, threads=4, limit=5000, retry_refused=True)
        try:
            a.start()
            b.start()
            a.wait_ready()
            b.wait_ready()
            load.start()
            wait_for(lambda: load.succeeded_since(0) >= 30, 60, "30 answers through both replicas")
            assert a.terminate() == 0, a.output  # drains while the clients move to b
            assert "stopping 2 workers" in a.output
            a.start().wait_ready()
            back = a.pid
            wait_for(lambda: load.succeeded_since(0) >= 120, 120, "answers after the restart")
        finally:
            outcomes = load.stop()
            codes = [r.terminate() if r.proc is not None else 0 for r in replicas]
            for r in replicas:
                r.kill()
    failed = [o for o in outcomes if not o.ok]
    assert not failed, failed[:5]
    assert codes == [0, 0], [r.output for r in replicas]
    assert back != 0
    answered = sum(o.ok for o in outcomes)
    rows = asyncio.run(
        fetch(postgres_url, "SELECT count(*) AS n, count(DISTINCT request_id) AS d FROM usage")
    )
    assert rows[0]["n"] == rows[0]["d"] == answered
