"""The provider-type registry: one declaration per type, read by config validation, the admin
API's schema, prices, health state and the gateway."""

from __future__ import annotations

import importlib

import pytest

from corral.config.provider_types import CONFIG_TYPES, LOCAL_TYPES, REGISTRY, Auth
from corral.errors import ConfigError
from corral.routing.state import DeploymentState
from tests.support.gateway import make_config


def provider(**extra: object) -> dict[str, object]:
    return {"providers": [{"name": "p", "type": "openai", "base_url": "https://api.example.com/v1", **extra}]}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_type_names_an_adapter_that_implements_the_contract(name: str) -> None:
    module, _, cls = REGISTRY[name].adapter.partition(":")
    adapter = getattr(importlib.import_module(module), cls)
    for method in ("send", "list_models", "probe", "close"):
        assert callable(getattr(adapter, method, None)), f"{name}: {adapter.__name__}.{method}"


@pytest.mark.parametrize(
    ("auth", "headers"),
    [
        (None, {"Authorization": "Bearer sk-1"}),
        ("bearer", {"Authorization": "Bearer sk-1"}),
        ("x-api-key", {"x-api-key": "sk-1"}),
        ("api-key", {"api-key": "sk-1"}),
        ("none", {}),
    ],
)
def test_the_key_goes_where_auth_says(auth: str | None, headers: dict[str, str]) -> None:
    extra = {"api_key": "sk-1"} if auth is None else {"api_key": "sk-1", "auth": auth}
    cfg = make_config(provider(**extra)).providers[0]
    assert cfg.key_headers() == headers


@pytest.mark.parametrize("bad", ["x api key", "content-length", "", 3])
def test_an_auth_that_is_no_header_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="auth"):
        make_config(provider(api_key="k", auth=bad))


def test_without_a_key_nothing_is_sent() -> None:
    assert make_config(provider(auth="x-api-key")).providers[0].key_headers() == {}
    assert Auth().headers(None) == {}


def test_type_specific_keys_name_the_types_that_take_them() -> None:
    with pytest.raises(ConfigError, match="applies only to providers of type: ollama"):
        make_config(provider(keep_alive="5m"))


def test_unknown_types_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=", ".join(CONFIG_TYPES)):
        make_config({"providers": [{"name": "p", "type": "bedrock", "base_url": "https://x.test"}]})
    assert "demo" not in CONFIG_TYPES  # only --demo adds it


def test_defaults_come_from_the_type() -> None:
    cfg = make_config({"providers": [{"name": "o", "type": "ollama", "base_url": "https://ollama.com/api"}]})
    ollama = cfg.providers[0]
    assert (ollama.base_url, ollama.max_parallel, ollama.path("health")) == (
        "https://ollama.com",
        4,
        "/api/version",
    )
    assert make_config(provider()).providers[0].max_parallel == 0


def test_readers_of_the_registry() -> None:
    from corral.http.admin.openapi import PROVIDER_FIELDS

    assert PROVIDER_FIELDS["type"] == {"enum": list(CONFIG_TYPES)}
    assert {"ollama", "demo"} == LOCAL_TYPES
    assert DeploymentState("o", "ollama").warm("m", None) is False  # its probe lists loaded models
    assert DeploymentState("v", "openai").warm("m", None) is None  # unknown


def test_the_upstream_pool_sends_the_key_as_auth_says() -> None:
    from corral.providers.upstream import make_pool

    cfg = make_config(provider(api_key="sk-1", auth="x-api-key", headers={"X-API-Key": "by hand"})).providers[
        0
    ]
    head = make_pool(cfg)._head.decode()  # the pre-encoded header lines of every request
    assert "x-api-key: sk-1\r\n" in head and "by hand" not in head and "Authorization" not in head
