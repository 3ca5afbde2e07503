"""``corral rules list|add|rm`` against a live gateway with its control plane, as a subprocess."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_admin_cli import corral
from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayServer]:
    with ServerThread(OllamaEmulator().app) as up:
        config = {
            "providers": [{"name": "gpu", "type": "ollama", "base_url": up.url}],
            "router": {"health_interval": "60s", "rules": [{"level": "eco", "model": "gpu/llama3.2"}]},
        }
        with GatewayServer(make_config(config), home=tmp_path) as server:
            yield server


def test_rules_add_list_rm(gw: GatewayServer) -> None:
    opts = ("--url", gw.admin_url, "--key", gw.key)
    added = corral("rules", "add", "precision", "gpu/qwen3:0.6b", "--tier", "gold", "--priority", "1", *opts)
    assert added.returncode == 0, added.stderr
    assert "corral/precision for tier gold -> gpu/qwen3:0.6b" in added.stdout
    listed = corral("rules", "list", "--json", *opts)
    rows = json.loads(listed.stdout)
    assert [(r["level"], r["tier"], r["managed_by"]) for r in rows] == [
        ("eco", "all", "config"),
        ("precision", "gold", "api"),
    ]
    assert rows[1]["priority"] == 1
    bad = corral("rules", "add", "eco", "nothing", *opts)
    assert bad.returncode != 0 and "'nothing' is not a model alias" in bad.stderr
    removed = corral("rules", "rm", rows[1]["id"], *opts)
    assert removed.returncode == 0, removed.stderr
    assert [r["managed_by"] for r in json.loads(corral("rules", "list", "--json", *opts).stdout)] == [
        "config"
    ]
