"""Provider key rotation without downtime: ``corral providers set-key`` (and the PATCH it
sends) while a loop of streaming requests runs through the gateway. The upstream accepts the
old and the new key while the key is replaced and the old one only until every request that
started with it has finished (an operator's rotation: add the new key upstream, rotate, revoke
the old). No request fails; requests in flight at the switch finish with the old key; every
request after it uses the new one; the audit log shows the change without either key; the old
ciphertext is gone from the store."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlalchemy import select

from corral.store.tables import audit_log, providers
from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

OLD = "sk-old-upstream-key-0123456789abcdef"
NEW = "sk-new-upstream-key-fedcba9876543210"
WITNESS = "witness"  # a request held in flight, with the old key, until the new key is in use
WORKERS = 3
PER_WORKER = 6
WORDS = " ".join(f"word{i}" for i in range(20))
DEADLINE = 60.0  # seconds for the whole loop


@dataclass
class Upstream:
    """The keys the upstream accepts, changeable from the test thread, and which key each
    request (by its message) came with."""

    accepted: set[str]
    used: dict[str, str] = field(default_factory=dict)  # message -> key
    arrived: dict[str, float] = field(default_factory=dict)  # message -> monotonic time
    held: threading.Event = field(default_factory=threading.Event)  # the witness reached the upstream
    _new_key_seen: asyncio.Event | None = None  # made on the upstream's loop

    def app(self, emu: OllamaEmulator) -> web.Application:
        app = emu.app()

        @web.middleware
        async def check(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.path in ("/api/chat", "/api/generate"):
                token = request.headers.get("Authorization", "").removeprefix("Bearer ")
                body = await request.json()
                name = body["messages"][-1]["content"].split()[0]
                self.used[name], self.arrived[name] = token, time.monotonic()
                if token not in self.accepted:
                    return web.json_response({"error": "unauthorized"}, status=401)
                seen = self._new_key_seen = self._new_key_seen or asyncio.Event()
                if token == NEW:
                    seen.set()
                if name == WITNESS:  # authenticated with the old key; answers once the new one is used
                    self.held.set()
                    await asyncio.wait_for(seen.wait(), DEADLINE)
            return await handler(request)

        app.middlewares.insert(1, check)  # after the recorder; the emulator itself checks no key
        return app


@dataclass
class Run:
    lock: threading.Lock = field(default_factory=threading.Lock)
    results: list[dict[str, Any]] = field(default_factory=list)
    starts: dict[str, float] = field(default_factory=dict)
    started: threading.Condition = field(default_factory=threading.Condition)
    open: int = 0


def stream_once(gw: GatewayServer, run: Run, name: str) -> None:
    content = f"{name} {WORDS}"  # a reply of some 20 tokens
    body = {"model": "cloud/llama3.2", "stream": True, "messages": [{"role": "user", "content": content}]}
    result: dict[str, Any] = {"name": name, "start": time.monotonic()}
    with run.lock:
        run.starts[name] = result["start"]
    with run.started:
        run.open += 1
        run.started.notify_all()
    try:
        with httpx.stream(
            "POST", gw.v1 + "/chat/completions", json=body, headers=gw.headers(), timeout=30
        ) as r:
            result["status"] = r.status_code
            lines = [line for line in r.iter_lines() if line]
        result["complete"] = (
            bool(lines) and lines[-1] == "data: [DONE]" and not any('"error"' in x for x in lines)
        )
    except httpx.HTTPError as exc:
        result["status"], result["complete"] = type(exc).__name__, False
    result["end"] = time.monotonic()
    with run.started:
        run.open -= 1
        run.started.notify_all()
    with run.lock:
        run.results.append(result)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[GatewayServer, OllamaEmulator, Upstream]]:
    emu = OllamaEmulator(token_delay=0.04)
    upstream = Upstream({OLD})
    with ServerThread(lambda: upstream.app(emu)) as up, GatewayServer(make_config({}), home=tmp_path) as gw:
        created = httpx.post(
            gw.admin_url + "/admin/providers",
            json={"name": "cloud", "type": "ollama", "base_url": up.url, "api_key": OLD, "max_parallel": 0},
            headers=gw.headers(),
        )
        assert created.status_code == 201, created.text
        yield gw, emu, upstream


def stored_row(gw: GatewayServer) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        async with gw.app.parts.control.store.engine.connect() as conn:
            row = (await conn.execute(select(providers).where(providers.c.name == "cloud"))).mappings().one()
            return dict(row)

    result: dict[str, Any] = gw.call(read)
    return result


def everything_stored(gw: GatewayServer) -> str:
    async def read() -> str:
        async with gw.app.parts.control.store.engine.connect() as conn:
            rows = [dict(r._mapping) for t in (providers, audit_log) for r in await conn.execute(select(t))]
        return json.dumps(rows, default=str)

    text: str = gw.call(read)
    return text


def set_key(gw: GatewayServer, key: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["CORRAL_HOME"] = "/nonexistent-corral-home"
    return subprocess.run(
        [sys.executable, "-m", "corral", "providers", "set-key", "cloud", "--api-key-stdin",
         "--url", gw.admin_url, "--key", gw.key],
        input=key + "\n", capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def test_rotating_a_provider_key_under_load_fails_no_request(
    gateway: tuple[GatewayServer, OllamaEmulator, Upstream],
) -> None:
    gw, _, upstream = gateway
    old_ciphertext = stored_row(gw)["api_key_enc"]
    run = Run()
    stop_at = time.monotonic() + DEADLINE

    def worker(w: int) -> None:
        for i in range(PER_WORKER):
            if time.monotonic() > stop_at:
                return
            stream_once(gw, run, f"w{w}-r{i}")

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(WORKERS)]
    threads.append(threading.Thread(target=stream_once, args=(gw, run, WITNESS), daemon=True))
    for t in threads:
        t.start()
    assert upstream.held.wait(30)
    with run.started:  # every worker has a stream open, and some have finished one
        assert run.started.wait_for(
            lambda: run.open == WORKERS + 1 and len(run.results) >= WORKERS, timeout=30
        )
    upstream.accepted.add(NEW)  # 1. the new key exists upstream
    before = time.monotonic()
    rotated = set_key(gw, NEW)  # 2. corral switches to it
    switched = time.monotonic()
    assert rotated.returncode == 0, rotated.stderr
    assert NEW not in rotated.stdout and "Replaced the API key of 'cloud'" in rotated.stdout
    with run.lock:
        straddling = _open_before(run, before)
    with run.started:  # 3. the old key is revoked once every request that started with it is over
        assert run.started.wait_for(lambda: not _still_open(run, straddling), timeout=30)
    upstream.accepted.discard(OLD)
    for t in threads:
        t.join(DEADLINE)

    failed = [r for r in run.results if r["status"] != 200 or not r["complete"]]
    assert not failed, failed
    assert len(run.results) == WORKERS * PER_WORKER + 1
    first_new = min(t for name, t in upstream.arrived.items() if upstream.used[name] == NEW)
    assert first_new > before
    witness = next(r for r in run.results if r["name"] == WITNESS)
    assert upstream.used[WITNESS] == OLD and witness["end"] > first_new  # in flight across the switch
    later = [name for name, t in upstream.arrived.items() if t > first_new]
    assert later and {upstream.used[name] for name in later} == {NEW}  # every request after the switch
    assert {upstream.used[r["name"]] for r in run.results if r["start"] > switched} == {NEW}

    entry = httpx.get(
        gw.admin_url + "/admin/audit?action=provider.update&target=cloud", headers=gw.headers()
    ).json()["data"][0]
    assert entry["before"]["api_key_preview"] != entry["after"]["api_key_preview"]
    assert OLD not in json.dumps(entry) and NEW not in json.dumps(entry)
    row = stored_row(gw)
    assert row["api_key_enc"] != old_ciphertext
    assert gw.app.parts.control.store.crypto.decrypt(row["api_key_enc"], what="test") == NEW
    stored = everything_stored(gw)
    assert old_ciphertext not in stored and OLD not in stored and NEW not in stored


def _open_before(run: Run, mark: float) -> set[str]:
    """Requests that started before ``mark`` and have not finished (call under the lock)."""
    finished = {r["name"] for r in run.results}
    return {name for name, start in run.starts.items() if start < mark and name not in finished}


def _still_open(run: Run, names: set[str]) -> bool:
    finished = {r["name"] for r in run.results}
    return bool(names - finished)


def test_set_key_reads_an_environment_variable_and_never_argv(
    gateway: tuple[GatewayServer, OllamaEmulator, Upstream],
) -> None:
    gw, _, upstream = gateway
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    base = [
        sys.executable,
        "-m",
        "corral",
        "providers",
        "set-key",
        "cloud",
        "--url",
        gw.admin_url,
        "--key",
        gw.key,
    ]

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=60, env={**env, **extra}
        )

    assert run("--api-key", NEW).returncode == 2  # no such option: a key on the command line is refused
    assert run().returncode == 2  # one of --api-key-env / --api-key-stdin is required
    unset = run("--api-key-env", "NOT_SET_ANYWHERE")
    assert unset.returncode == 1 and "NOT_SET_ANYWHERE is not set" in unset.stderr
    done = run("--api-key-env", "NEW_KEY", "--json", NEW_KEY=NEW)
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["name"] == "cloud" and view["has_api_key"] is True and NEW not in done.stdout
    upstream.accepted = {NEW}
    chat = {"model": "cloud/llama3.2", "messages": [{"role": "user", "content": "after rotation"}]}
    answer = httpx.post(gw.v1 + "/chat/completions", json=chat, headers=gw.headers(), timeout=30)
    assert answer.status_code == 200 and upstream.used["after"] == NEW
