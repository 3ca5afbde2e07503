"""``convert_litellm`` on LiteLLM configs: what each field becomes, what the report says (with
the source line), and that every result passes corral's own loader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.config.loader import load_config
from corral.migrate import Conversion, UnreadableSource, convert_litellm
from corral.migrate.report import Entry
from tests.migrate import configs

HOSTED_BASES = {
    "groq": "https://api.groq.com/openai/v1",
    "mistral": "https://api.mistral.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "together": "https://api.together.xyz/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "gemini": "https://generativelanguage.googleapis.com/v1beta/openai",
    "openai": "https://api.openai.com/v1",
}


def convert(text: str) -> Conversion:
    conversion = convert_litellm(text, "config.yaml")
    assert conversion.problem is None, conversion.problem
    return conversion


def line_of(text: str, needle: str, start: int = 0) -> int:
    """The 1-based line of the first line containing ``needle`` at or after line ``start``."""
    for number, line in enumerate(text.splitlines(), 1):
        if number >= start and needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the config")


def entries(c: Conversion, kind: str, *, containing: str) -> list[Entry]:
    return [e for e in c.report.of(kind) if containing in e.message or containing in e.where]  # type: ignore[arg-type]


def aliases(c: Conversion) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in c.config["models"]}


def providers(c: Conversion) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in c.config["providers"]}


def test_ops_center_cloud_models_fallbacks_and_the_explicit_looking_model() -> None:
    text = configs.OPS_CENTER.substitute(cloud="https://ollama.com", openai="https://api.openai.com/v1")
    c = convert(text)
    cloud = providers(c)["ollama-cloud"]
    assert cloud == {
        "name": "ollama-cloud", "type": "ollama", "base_url": "https://ollama.com",
        "api_key": "os.environ/OLLAMA_API_KEY", "timeout": 60,
    }  # fmt: skip
    assert providers(c)["openai"]["base_url"] == "https://api.openai.com/v1"
    models = aliases(c)
    assert models["kimi-k2.5"] == {
        "name": "kimi-k2.5", "target": "ollama-cloud/kimi-k2.5", "fallbacks": ["gpt-oss-120b"],
    }  # fmt: skip
    assert models["qwen3-coder"]["fallbacks"] == ["kimi-k2.5", "gpt-oss-120b"]
    assert not any("explicit_only" in m for m in models.values())  # never guessed
    choice = entries(c, "choice", containing="nobody's fallback")
    assert len(choice) == 1 and "openai-gpt4o" in choice[0].message and "qwen3-coder" in choice[0].message
    assert "gpt-oss-120b" not in choice[0].message.split(".")[0]  # it is a fallback
    assert c.config["router"] == {
        "max_attempts": 3, "request_timeout": 120, "strategy": "weighted", "eject_after": 3, "eject_base": 30,
    }  # fmt: skip
    assert c.config["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert c.config["prices"] == {"gpt-oss:120b": {"input": 0.15, "output": 0.6}}
    assert entries(c, "changed", containing="USD per token")[0].line == line_of(text, "input_cost_per_token")
    assert c.env_refs == {"OLLAMA_API_KEY", "OPENAI_API_KEY", "LITELLM_MASTER_KEY"}


def test_environment_references_are_never_resolved() -> None:
    text = configs.OPS_CENTER.substitute(cloud="https://ollama.com", openai="https://api.openai.com/v1")
    secret = "sk-live-resolved-secret-value"
    env = {"OLLAMA_API_KEY": secret, "OPENAI_API_KEY": secret, "LITELLM_MASTER_KEY": secret * 2}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        out = convert(text).yaml_text()
    assert secret not in out and out.count("os.environ/OLLAMA_API_KEY") == 1


def test_several_deployments_of_one_name_become_one_pool() -> None:
    text = configs.POOLS.substitute(
        gpu1="http://gpu1:11434", gpu2="http://gpu2:11434", gpu3="http://gpu3:11434"
    )
    c = convert(text)
    assert sorted(providers(c)) == ["ollama-gpu1", "ollama-gpu2", "ollama-gpu3"]  # one per api_base
    assert aliases(c)["llama3"]["targets"] == [
        {"target": "ollama-gpu1/llama3.2", "weight": 3.0},
        {"target": "ollama-gpu2/llama3.2", "weight": 1.0},
        {"target": "ollama-gpu3/llama3.2", "weight": 60.0, "priority": 2},
    ]
    assert aliases(c)["embed"] == {"name": "embed", "target": "ollama-gpu1/nomic-embed-text"}
    assert providers(c)["ollama-gpu2"]["max_parallel"] == 2
    assert providers(c)["ollama-gpu3"]["keep_alive"] == "30m"
    assert c.config["router"]["strategy"] == "least_busy"
    rpm = entries(c, "changed", containing="rpm 60 -> weight 60")
    assert rpm and rpm[0].line == line_of(text, "rpm: 60")
    assert entries(c, "mapped", containing="3 deployments of 'llama3' -> one pool")
    assert entries(c, "changed", containing="/api/generate")  # ollama/ vs ollama_chat/


def test_azure_and_bedrock_are_reported_with_their_lines_not_dropped() -> None:
    text = configs.AZURE_BEDROCK.substitute(openai="http://vllm:8000/v1", ollama="http://gpu1:11434")
    c = convert(text)
    unmapped = c.report.of("unmapped")
    azure = [e for e in unmapped if "azure/gpt-4o-eu" in e.message]
    bedrock = [e for e in unmapped if "bedrock/anthropic" in e.message]
    assert azure and azure[0].line == line_of(text, "model: azure/")
    assert "api-version" in azure[0].message
    assert bedrock and bedrock[0].line == line_of(text, "model: bedrock/")
    chain = [e for e in unmapped if "claude-bedrock" in e.message and e.where.startswith("fallbacks")]
    assert chain and chain[0].line == line_of(text, "fallbacks:")
    assert aliases(c)["gpt-4o"] == {"name": "gpt-4o", "target": "vllm/gpt-4o", "fallbacks": ["local"]}
    assert "claude-bedrock" not in aliases(c)
    assert not any("azure" in p["base_url"] for p in c.config["providers"])


def test_litellm_quickstart_example() -> None:
    text = configs.DOCS_QUICKSTART.substitute(
        openai="https://api.openai.com/v1", vllm="http://0.0.0.0:8000/v1"
    )
    c = convert(text)
    assert aliases(c)["gpt-3.5-turbo"]["target"] == "openai/gpt-3.5-turbo"  # the Azure deployment reported
    assert aliases(c)["vllm-model"]["target"] == "openai-local/facebook/opt-125m"
    assert "master_key" not in c.config  # sk-1234 is too short for corral
    short = entries(c, "unmapped", containing="master key is 7 characters")
    assert short and short[0].line == line_of(text, "master_key:")
    azure = entries(c, "unmapped", containing="azure/my-azure-deployment")
    assert azure and azure[0].line == line_of(text, "model: azure/")
    assert entries(c, "changed", containing="no provider prefix")
    assert entries(c, "unmapped", containing="set_verbose")
    literal = entries(c, "changed", containing="literal API key")
    assert literal and literal[0].line == line_of(text, "api_key: none")


def test_hosted_openai_compatible_prefixes_get_their_documented_base_urls() -> None:
    names = ("groq", "mistral", "openrouter", "deepseek", "together", "fireworks", "gemini", "openai")
    c = convert(configs.HOSTED.substitute(dict.fromkeys(names, ""), vllm="http://gpu9:8000/v1"))
    got = {name: p["base_url"] for name, p in providers(c).items()}
    assert got == {**HOSTED_BASES, "gpu9": "http://gpu9:8000/v1"}
    assert all(p["type"] == "openai" for p in providers(c).values())
    assert aliases(c)["router-claude"]["target"] == "openrouter/anthropic/claude-3.5-sonnet"
    assert aliases(c)["instruct"]["target"] == "openai/gpt-3.5-turbo-instruct"
    assert not c.report.of("unmapped")


def test_router_docs_cost_based_routing_and_the_chains_corral_cannot_express() -> None:
    text = configs.ROUTER_DOCS.substitute(openai="https://api.openai.com/v1", ollama="http://gpu1:11434")
    c = convert(text)
    assert c.config["router"]["strategy"] == "priority"
    assert aliases(c)["gpt-3.5-turbo"]["targets"] == [
        {"target": "openai/gpt-3.5-turbo", "priority": 1},
        {"target": "ollama-gpu1/llama3.2", "priority": 0},  # the cheaper one first
    ]
    assert aliases(c)["gpt-3.5"]["targets"] == aliases(c)["gpt-3.5-turbo"]["targets"]  # model_group_alias
    assert c.config["router"]["default_fallbacks"] == ["gpt-3.5-turbo-16k"]
    assert c.config["router"]["max_attempts"] == 4 and c.config["router"]["request_timeout"] == 30
    window = entries(c, "unmapped", containing="gpt-3.5-turbo -> gpt-3.5-turbo-16k")
    assert window and window[0].line == line_of(text, "context_window_fallbacks")
    wildcard = entries(c, "unmapped", containing="wildcard")
    assert wildcard and wildcard[0].line == line_of(text, 'model: "ollama/*"')
    assert c.config["prices"]["llama3.2"] == {"input": 0.0, "output": 0.0}


def test_settings_sections() -> None:
    c = convert(configs.SETTINGS_ONLY)
    assert c.config["redis_url"] == "redis://:${REDIS_PASSWORD}@${REDIS_HOST}:6380"
    assert c.config["database_url"] == "postgresql://litellm:secret@db:5432/litellm"
    assert c.config["router"] == {"health_interval": 300}
    assert providers(c)["ollama-local"]["base_url"] == "http://localhost:11434"  # LiteLLM's default
    text = configs.SETTINGS_ONLY
    for needle, kind in (("alerting", "unmapped"), ("SLACK_WEBHOOK_URL", "choice"), ("include", "unmapped")):
        found = [e for e in c.report.of(kind) if needle in e.where]  # type: ignore[arg-type]
        assert found and found[0].line == line_of(text, needle), needle
    assert "https://hooks.example/x" not in c.yaml_text()
    assert {"REDIS_HOST", "REDIS_PASSWORD", "LITELLM_MASTER_KEY"} <= c.env_refs


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("model_list:\n  - model_name: x\n    litellm_params: {model: [\n", "line 4"),
        ("- a\n- b\n", "expected a mapping"),
        ("", "an empty file"),
        ("providers: []\n", "none of model_list"),
    ],
)
def test_what_cannot_be_read_raises(text: str, why: str) -> None:
    with pytest.raises(UnreadableSource, match=why):
        convert_litellm(text, "config.yaml")


def test_every_output_is_accepted_by_corral_check(tmp_path: Path) -> None:
    text = configs.POOLS.substitute(
        gpu1="http://gpu1:11434", gpu2="http://gpu2:11434", gpu3="http://gpu3:11434"
    )
    out = tmp_path / "corral.yaml"
    out.write_text(convert(text).yaml_text())
    assert load_config(out, env={}).models[0].name == "llama3"
    assert yaml.safe_load(out.read_text())["models"][0]["name"] == "llama3"
    checked = subprocess.run(
        [sys.executable, "-m", "corral", "check", "--config", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    assert "alias llama3 -> ollama-gpu1/llama3.2" in checked.stdout
