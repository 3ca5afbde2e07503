"""Discovery learns what models can do: capabilities from /api/tags, the context length from
/api/show (once per digest, again when a model is pulled under a new digest), on a real emulated
Ollama over loopback; and the config of affinity, capabilities and context fallbacks."""

from __future__ import annotations

import pytest

from corral.config.schema import ProviderConfig
from corral.core.catalog import Catalog, ProviderEntry
from corral.core.discovery import Discovery
from corral.errors import ConfigError
from corral.providers.ollama.provider import OllamaProvider
from corral.routing.capabilities import ModelFacts
from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import make_config
from tests.support.servers import ServerThread


async def test_discovery_learns_capabilities_and_context_from_tags_and_show() -> None:
    emulator = OllamaEmulator(
        [
            {
                "name": "qwen3:8b",
                "capabilities": ["completion", "tools", "thinking"],
                "context_length": 40960,
            },
            {"name": "nomic-embed-text", "capabilities": ["embedding"], "context_length": 2048},
        ]
    )
    with ServerThread(emulator.app) as server:
        provider = OllamaProvider(ProviderConfig(name="gpu", type="ollama", base_url=server.url))
        facts = ModelFacts()
        catalog = Catalog([ProviderEntry("gpu", "ollama")], [])
        discovery = Discovery(catalog, {"gpu": provider}, {}, interval=60, timeout=5, facts=facts)
        try:
            await discovery.refresh_all()
            qwen = facts.of("gpu", "qwen3:8b")
            assert qwen.capabilities == frozenset({"completion", "tools", "thinking"})
            assert qwen.context_length == 40960
            assert facts.of("gpu", "nomic-embed-text").capabilities == frozenset({"embedding"})
            assert facts.of("gpu", "nomic-embed-text:latest").context_length == 2048
            shows = len(emulator.requests_to("/api/show"))
            await discovery.refresh_all()
            assert len(emulator.requests_to("/api/show")) == shows  # same digests: not asked again
            emulator.models["qwen3:8b"].digest = "0" * 64  # pulled again
            emulator.models["qwen3:8b"].context_length = 32768
            await discovery.refresh_all()
            assert len(emulator.requests_to("/api/show")) == shows + 1
            assert facts.of("gpu", "qwen3:8b").context_length == 32768
        finally:
            await provider.close()


def test_config_of_affinity_capabilities_and_context_fallbacks() -> None:
    providers = 'providers: [{name: a, type: ollama, base_url: "http://127.0.0.1:9"}]\n'
    cfg = make_config(
        providers
        + """
models:
  - {name: x, target: a/m, affinity: false, capabilities: [completion, vision], context_length: 8192,
     context_window_fallbacks: [y]}
  - {name: y, target: a/big}
router:
  affinity: {size: 10, ttl: 10m, wait: 500ms}
  context_window_fallbacks: [y]
  capabilities: {a/m: [completion]}
  context_length: {m: 4096}
"""
    )
    x = cfg.models[0]
    assert (x.affinity, x.capabilities, x.context_length, x.context_window_fallbacks) == (
        False, ("completion", "vision"), 8192, ("y",),
    )  # fmt: skip
    r = cfg.router
    assert (r.affinity.size, r.affinity.ttl, r.affinity.wait) == (10, 600.0, 0.5)
    assert r.affinity.spill_below == 2048  # the default
    assert r.capabilities == {"a/m": ("completion",)} and r.context_length == {"m": 4096}
    assert make_config(providers + "router: {affinity: false}").router.affinity.enabled is False
    with pytest.raises(ConfigError, match=r"context_window_fallbacks.*'nope'"):
        make_config(providers + "models: [{name: x, target: a/m, context_window_fallbacks: [nope]}]")
    with pytest.raises(ConfigError, match="unknown capability 'sight'"):
        make_config(providers + "models: [{name: x, target: a/m, capabilities: [sight]}]")


def test_config_of_spill_below() -> None:
    providers = 'providers: [{name: a, type: ollama, base_url: "http://127.0.0.1:9"}]\n'

    def spill_below(value: str) -> int:
        cfg = make_config(providers + f"router: {{affinity: {{spill_below: {value}}}}}")
        return cfg.router.affinity.spill_below

    assert spill_below("512") == 512
    assert spill_below("0") == 0  # spilling off: a full pinned deployment is always waited for
    for wrong in ("-1", "1.5", "lots", "true"):
        with pytest.raises(ConfigError) as info:
            spill_below(wrong)
        message = str(info.value)
        assert "router.affinity.spill_below" in message and "0 or more" in message, message
        assert "set it to 0 to always wait" in message, message
