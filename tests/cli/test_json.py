"""``--json`` on every command: each prints JSON of a fixed shape (one object, or one object per
line for the streaming ones), run as a subprocess against a live gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from corral.security.crypto import generate_key
from tests.emulators.ollama import OllamaEmulator
from tests.migrate import configs
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread, free_port

UPSTREAM_KEY = "sk-upstream-key-0123456789abcdef"


def corral(
    *args: str, env: Mapping[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "NO_COLOR", "FORCE_COLOR"))}
    clean["CORRAL_HOME"] = "/nonexistent-corral-home"
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "corral", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
        input=stdin,
    )


def one(*args: str, **kw: Any) -> Any:
    done = corral(*args, "--json", **kw)
    assert done.returncode == 0, (args, done.stderr)
    return json.loads(done.stdout)


def lines(*args: str, **kw: Any) -> list[Any]:
    done = corral(*args, "--json", **kw)
    assert done.returncode in (0, 1), (args, done.stderr)
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GatewayServer, tuple[str, ...], tuple[str, ...]]]:
    upstream = OllamaEmulator(api_key=UPSTREAM_KEY, registry=[{"name": "gemma3"}])
    with ServerThread(upstream.app) as up:
        home: Path = tmp_path_factory.mktemp("home")
        with GatewayServer(make_config({}, demo=True), home=home) as server:
            admin = ("--url", server.admin_url, "--key", server.key)
            data = ("--url", server.url, "--key", server.key)
            added = one("providers", "add", "gpu", "--type", "ollama", "--base-url", up.url,
                        "--api-key-env", "K", *admin, env={"K": UPSTREAM_KEY})  # fmt: skip
            assert added["name"] == "gpu" and added["managed_by"] == "api"
            yield server, admin, data


def test_admin_commands(gw: tuple[GatewayServer, tuple[str, ...], tuple[str, ...]]) -> None:
    _, admin, _ = gw
    health = one("status", *admin)
    assert set(health) >= {"deployments", "retry_budget"}
    watched = lines("status", "--watch", "--count", "2", "--interval", "0", *admin)
    assert len(watched) == 2 and all("deployments" in w for w in watched)

    listed = one("providers", "list", *admin)
    assert {p["name"] for p in listed} == {"demo", "gpu"}
    assert {"name", "type", "base_url", "managed_by", "api_key_preview", "has_api_key"} <= set(listed[1])
    tested = one("providers", "test", "gpu", *admin)
    assert set(tested) == {"success", "latency_ms", "models_found", "error"} and tested["success"] is True
    rekeyed = one("providers", "set-key", "gpu", "--api-key-stdin", *admin, stdin=UPSTREAM_KEY + "\n")
    assert rekeyed["name"] == "gpu" and UPSTREAM_KEY not in json.dumps(rekeyed)

    issued = one("keys", "create", "--name", "ci", *admin)
    assert {"id", "key", "name", "scope", "expires_at"} <= set(issued)
    keys = one("keys", "list", *admin)
    assert [k["id"] for k in keys] == [issued["id"]] and "key" not in keys[0]
    assert one("keys", "revoke", issued["id"], *admin) == {"id": issued["id"], "deleted": True}

    models = one("models", *admin)
    assert {"id", "type", "provider", "context_length", "capabilities", "aliases"} <= set(models[0])


def test_catalog_commands(gw: tuple[GatewayServer, tuple[str, ...], tuple[str, ...]]) -> None:
    _, admin, _ = gw
    plan = one("catalog", "import", "gpu", "--dry-run", *admin)
    assert set(plan) == {"provider", "dry_run", "found", "added", "updated", "unchanged", "not_listed",
                         "show_failed"} and plan["dry_run"] is True  # fmt: skip
    done = one("catalog", "import", "gpu", "--yes", *admin)
    assert done["dry_run"] is False and len(done["added"]) == plan["found"]
    entry = one("catalog", "set", "gpu", "llama3.2:latest", "--input", "0.1", "--output", "0.2", *admin)
    assert (entry["input_price"], entry["output_price"], entry["context_length"]) == (0.1, 0.2, 131072)
    added = one("catalog", "set", "gpu", "new-model", "--display-name", "New", *admin)
    assert added["display_name"] == "New" and added["enabled"] is True
    rows = one("catalog", "list", "--provider", "gpu", *admin)
    assert {"provider", "model", "display_name", "enabled", "input_price", "output_price", "capabilities",
            "context_length", "notes"} <= set(rows[0])  # fmt: skip
    assert one("catalog", "rm", "gpu", "new-model", *admin) == {"name": "gpu/new-model", "deleted": True}


def test_data_plane_commands(gw: tuple[GatewayServer, tuple[str, ...], tuple[str, ...]]) -> None:
    _, admin, data = gw
    answer = one("chat", "demo/echo", "hello json", *data)
    assert set(answer) == {"model", "provider", "served_model", "fallback", "content", "ttft_ms",
                           "tokens_per_second", "usage"}  # fmt: skip
    assert answer["content"] == "Echo: hello json" and answer["provider"] == "demo"
    progress = lines("pull", "gemma3", "--instance", "gpu", *data)
    assert progress[-1] == {"status": "success", "instances": ["gpu"]}
    assert all(p["instance"] == "gpu" and "status" in p for p in progress[:-1])

    summary = one("usage", *admin)
    assert set(summary) >= {"data"} and {"requests", "cost_usd"} <= set(summary["data"][0])
    assert "data" in one("usage", "compare", *admin)
    tail = lines("usage", "tail", "--follow-seconds", "0.5", *admin)
    assert tail and {"id", "at", "requested_model", "provider", "status", "total_tokens"} <= set(tail[0])


def test_local_commands(tmp_path: Path) -> None:
    config = tmp_path / "corral.yaml"
    config.write_text("providers:\n  - {name: gpu, type: ollama, base_url: 'http://gpu:11434'}\n")
    checked = one("check", "--config", str(config))
    assert checked == {"ok": True, "source": str(config), "aliases": [], "prices": 0,
                       "providers": [{"name": "gpu", "type": "ollama", "base_url": "http://gpu:11434",
                                      "enabled": True}]}  # fmt: skip
    config.write_text("providers: 3\n")
    bad = corral("check", "--config", str(config), "--json")
    assert bad.returncode == 2 and json.loads(bad.stdout)["ok"] is False

    src = tmp_path / "litellm.yaml"
    src.write_text(
        configs.POOLS.substitute(gpu1="http://a:11434", gpu2="http://b:11434", gpu3="http://c:11434")
    )
    imported = one("import", "litellm", str(src))
    assert imported["valid"] is True and imported["summary"]["aliases"] == 2

    tree = one("completion", "bash")
    assert {"help", "options", "words", "commands"} == set(tree) and "chat" in tree["commands"]

    env = {"CORRAL_ENCRYPTION_KEY": generate_key(), "CORRAL_HOME": str(tmp_path),
           "CORRAL_DATABASE_URL": f"sqlite:///{tmp_path / 'corral.db'}"}  # fmt: skip
    rotated = one("admin", "rotate-encryption-key", env=env)
    assert set(rotated) == {"reencrypted", "key_id", "key_file", "new_key"} and rotated["new_key"]


def test_serve_prints_its_addresses_as_json(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(CORRAL_HOME=str(tmp_path), CORRAL_MASTER_KEY="sk-serve-json-master-key-0123456789")
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "serve", "--demo", "--port", str(port),
         "--admin-port", str(admin_port), "--json", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(30)
    assert ready == {"data": f"http://127.0.0.1:{port}", "admin": f"http://127.0.0.1:{admin_port}",
                     "console": f"http://127.0.0.1:{admin_port}/console", "master_key": "env",
                     "generated_master_key": None}  # fmt: skip
