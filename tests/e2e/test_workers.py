"""``corral serve --workers 2`` as an operator runs it: real processes on loopback, in front of an
Ollama emulator, with PostgreSQL (this run's own database) for keys and usage.

Two pids serve; a worker killed with SIGKILL under load is restarted and the only failed
requests are ones in flight when it died; SIGTERM to the supervisor drains a stream in flight
and leaves exactly one usage record per answered request; workers that keep dying end the
supervisor with a non-zero status; and a config N workers could not honour without Redis is
refused with the fix named.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.emulators.ollama import OllamaEmulator
from tests.supervisor.process import KEY, Load, Replica, wait_for
from tests.support.databases import *  # noqa: F403 - the postgres_url fixture
from tests.support.databases import fetch
from tests.support.servers import ServerThread, free_port

AUTH = {"Authorization": f"Bearer {KEY}"}
pytestmark = [pytest.mark.postgres, pytest.mark.timeout(400)]


@pytest.fixture
def upstream() -> Iterator[tuple[OllamaEmulator, ServerThread]]:
    emu = OllamaEmulator(token_delay=0.02)
    with ServerThread(emu.app, loop="uvloop") as server:
        yield emu, server


def _config(tmp_path: Path, upstream_url: str, extra: str = "") -> Path:
    path = tmp_path / "corral.yaml"
    path.write_text(
        f"providers:\n  - {{name: gpu, type: ollama, base_url: '{upstream_url}', max_parallel: 32,"
        " first_token_timeout: 60}\n"
        "server:\n  shutdown_timeout: 20\n"
        # this shared machine can stall the emulator for a second: no adaptive first-token cut
        "router:\n  first_token: {min: 30s, max: 60s}\n" + extra
    )
    return path


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    """The replicas a test started: any still running at its end (a failed test) are killed."""
    started: list[Replica] = []
    yield started
    for replica in started:
        replica.kill()


def _replica(
    tmp_path: Path,
    upstream_url: str,
    db: str,
    started: list[Replica],
    extra: str = "",
    env: dict[str, str] | None = None,
) -> Replica:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    replica = Replica(
        home,
        _config(tmp_path, upstream_url, extra),
        free_port(),
        free_port(),
        {"CORRAL_DATABASE_URL": db, **(env or {})},
    )
    started.append(replica)
    return replica


def chat(url: str, words: str = "one two three four five six seven eight") -> None:
    """One streamed chat on a new connection; raises unless the whole answer arrived."""
    with httpx.stream(
        "POST", url + "/v1/chat/completions", headers=AUTH, timeout=30,
        json={"model": "gpu/llama3.2", "stream": True, "messages": [{"role": "user", "content": words}]},
    ) as resp:  # fmt: skip
        if resp.status_code != 200:
            raise AssertionError(f"status {resp.status_code}: {resp.read()!r}")
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]", lines[-3:]
    text = "".join(
        (json.loads(line.removeprefix("data: "))["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for line in lines[:-1]
    )
    assert text == f"Echo: {words}", text


def _requests_by_worker(replica: Replica) -> float:
    text = httpx.get(replica.admin_url + "/metrics", headers=AUTH, timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "corral_requests_total" and "worker" in s.labels
    )


def _usage_rows(db: str) -> int:
    rows = asyncio.run(fetch(db, "SELECT count(*) AS n, count(DISTINCT request_id) AS d FROM usage"))
    assert rows[0]["n"] == rows[0]["d"]
    return int(rows[0]["n"])


def test_two_workers_serve_from_two_pids_under_one_supervisor(
    tmp_path: Path, upstream: tuple[OllamaEmulator, ServerThread], postgres_url: str, replicas: list[Replica]
) -> None:
    replica = _replica(tmp_path, upstream[1].url, postgres_url, replicas).start().wait_ready()
    try:
        out = replica.output
        assert out.count(READY_LINE) == 1 and "2 worker processes" in out
        workers = replica.workers_now()
        assert len(workers) == 2 and replica.pid not in workers
        seen: dict[int, dict[str, Any]] = {}
        for _ in range(400):  # every new connection may land on either worker
            identity = replica.health()["worker"]
            assert isinstance(identity, dict)
            seen[int(identity["pid"])] = identity
            if len(seen) == 2:
                break
        assert set(seen) == workers, seen
        assert sorted(int(w["index"]) for w in seen.values()) == [0, 1]
        assert all(w["supervisor_pid"] == replica.pid and w["workers"] == 2 for w in seen.values())
        for _ in range(6):
            chat(replica.url)
        # /metrics, from whichever worker answers: both workers' series, labelled; the answers add up
        wait_for(lambda: _requests_by_worker(replica) == 6, 20, "six answers counted across the workers")
        text = httpx.get(replica.admin_url + "/metrics", headers=AUTH, timeout=10).text
        assert (
            'process_cpu_seconds_total{worker="0"}' in text
            and 'process_cpu_seconds_total{worker="1"}' in text
        )
    finally:
        assert replica.terminate() == 0, replica.output


READY_LINE = "control plane (admin API, metrics) on"


def test_a_worker_killed_under_load_is_restarted_and_only_its_requests_fail(
    tmp_path: Path, upstream: tuple[OllamaEmulator, ServerThread], postgres_url: str, replicas: list[Replica]
) -> None:
    replica = _replica(tmp_path, upstream[1].url, postgres_url, replicas).start().wait_ready()
    load = Load([replica.url], chat, threads=6, limit=3000)
    try:
        load.start()
        wait_for(lambda: load.succeeded_since(0) >= 20, 60, "20 answers before the kill")
        before = replica.workers_now()
        victim = min(before)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(replica.workers_now() - before) == 1, 30, "the replacement worker")
        wait_for(
            lambda: "is listening" in replica.output.rsplit("killed by SIGKILL", 1)[-1], 60, "it to listen"
        )
        restarted_at = time.monotonic()
        wait_for(lambda: load.succeeded_since(restarted_at) >= 30, 60, "30 answers after the restart")
    finally:
        outcomes = load.stop()
        code = replica.terminate()
    failed = [o for o in outcomes if not o.ok]
    assert code == 0, replica.output
    assert f"(pid {victim}) was killed by SIGKILL; starting it again" in replica.output
    # a client has one request at a time: at most one failure per client, each in flight at the kill
    assert len(failed) <= load.threads, failed
    assert all(o.started <= killed_at <= o.ended for o in failed), (killed_at, failed)
    assert sum(o.ok for o in outcomes) >= 50


def test_sigterm_drains_a_stream_in_flight_and_flushes_every_usage_record(
    tmp_path: Path, upstream: tuple[OllamaEmulator, ServerThread], postgres_url: str, replicas: list[Replica]
) -> None:
    _emu, server = upstream
    replica = _replica(tmp_path, server.url, postgres_url, replicas).start().wait_ready()
    answered = 0
    for _ in range(10):
        chat(replica.url, "warm up")
        answered += 1
    words = " ".join(f"w{i}" for i in range(40))  # 40 tokens, 20 ms apart: under a second in flight
    first, done, errors = threading.Event(), threading.Event(), []

    def slow() -> None:
        try:
            with httpx.stream(
                "POST", replica.url + "/v1/chat/completions", headers=AUTH, timeout=30,
                json={"model": "gpu/llama3.2", "stream": True,
                      "messages": [{"role": "user", "content": words}]},
            ) as resp:  # fmt: skip
                lines = []
                for line in resp.iter_lines():
                    if line:
                        lines.append(line)
                        first.set()
            text = "".join(
                (json.loads(x.removeprefix("data: "))["choices"] or [{}])[0].get("delta", {}).get("content")
                or ""
                for x in lines
                if x.startswith("data: {")
            )
            assert lines[-1] == "data: [DONE]" and text == f"Echo: {words}", lines[-3:]
        except Exception as exc:  # reported to the test thread
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=slow, daemon=True).start()
    assert first.wait(20)
    assert replica.terminate() == 0, replica.output  # returns once every worker has exited
    assert done.wait(5) and not errors, errors
    answered += 1
    assert "stopping 2 workers" in replica.output
    assert _usage_rows(postgres_url) == answered
    assert not list(replica.home.glob("usage-spill*.jsonl")), "records left in a spill file"


def test_workers_that_keep_dying_end_the_supervisor_with_status_1(
    tmp_path: Path, upstream: tuple[OllamaEmulator, ServerThread], postgres_url: str, replicas: list[Replica]
) -> None:
    replica = _replica(tmp_path, upstream[1].url, postgres_url, replicas).start()
    killed: set[int] = set()
    deadline = time.monotonic() + 90
    while replica.proc is not None and replica.proc.poll() is None and time.monotonic() < deadline:
        started = {int(m) for m in re.findall(r"worker \d+ started \(pid (\d+)\)", replica.output)}
        for pid in (replica.workers_now() & started) - killed:  # not the migration's child
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        replica.ended.wait(0.05)  # the supervisor's output ends when it exits
    assert replica.proc is not None and replica.proc.wait(30) == 1, replica.output
    assert "workers keep dying" in replica.output
    assert len(killed) >= 6


def test_limits_n_workers_cannot_share_without_redis_are_refused_naming_the_fix(
    tmp_path: Path, upstream: tuple[OllamaEmulator, ServerThread], postgres_url: str, replicas: list[Replica]
) -> None:
    replica = _replica(
        tmp_path, upstream[1].url, postgres_url, replicas, "user_limits:\n  alice: {rpm: 60}\n"
    ).start()
    assert replica.proc is not None and replica.proc.wait(60) == 2
    replica.ended.wait(10)
    assert "user_limits" in replica.output and "Set redis_url" in replica.output
    assert "--workers 1" in replica.output and READY_LINE not in replica.output


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_without_redis_a_key_revoked_through_one_worker_is_refused_by_all_within_a_second(
    tmp_path: Path,
    upstream: tuple[OllamaEmulator, ServerThread],
    postgres_url: str,
    replicas: list[Replica],
    store: str,
) -> None:
    # no redis_url: the workers see each other's admin changes in the store's audit log
    home = tmp_path / "home"
    home.mkdir()
    env = {"CORRAL_DATABASE_URL": postgres_url} if store == "postgres" else {}
    replica = Replica(home, _config(tmp_path, upstream[1].url), free_port(), free_port(), env)
    replicas.append(replica)
    replica.start().wait_ready()
    try:
        made = httpx.post(replica.admin_url + "/admin/keys", headers=AUTH, json={"name": "ci"}, timeout=10)
        assert made.status_code == 201, made.text
        key, key_id = made.json()["key"], made.json()["id"]

        def status() -> int:  # a new connection each time: either worker may take it
            headers = {"Authorization": f"Bearer {key}"}
            return httpx.get(replica.url + "/v1/models", headers=headers, timeout=10).status_code

        wait_for(lambda: all(status() == 200 for _ in range(20)), 5, "the new key accepted by both workers")
        revoked = httpx.delete(f"{replica.admin_url}/admin/keys/{key_id}", headers=AUTH, timeout=10)
        assert revoked.status_code in (200, 204), revoked.text
        at = time.monotonic()
        wait_for(lambda: all(status() == 401 for _ in range(20)), 5, "the revoked key refused by both")
        took = time.monotonic() - at
        assert took < 1.5, f"the revoked key was still accepted somewhere {took:.2f} s after"
    finally:
        assert replica.terminate() == 0, replica.output
