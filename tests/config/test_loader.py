"""Config loading: the documented minimal shape works as written; every error names file, path and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.config import load_config
from corral.config.loader import ollama_host_url
from corral.errors import ConfigError

MINIMAL = """
master_key: os.environ/CORRAL_MASTER_KEY
providers:
  - name: local                 # models addressable as local/<model>
    type: ollama                # ollama | openai
    base_url: http://127.0.0.1:11434
  - name: ollama-cloud
    type: ollama
    base_url: https://ollama.com
    api_key: os.environ/OLLAMA_API_KEY   # sent as Authorization: Bearer
    timeout: 60
  - name: vllm
    type: openai                # any OpenAI-compatible server
    base_url: http://vllm:8000/v1
    api_key: os.environ/VLLM_API_KEY
    headers: {X-Client-ID: corral}
    verify_ssl: true
    models: [qwen2.5-coder-32b]  # optional static list; otherwise discovered
models:
  - name: cloud-kimi            # public alias
    target: ollama-cloud/kimi-k2.5
"""

ENV = {"CORRAL_MASTER_KEY": "m" * 32, "OLLAMA_API_KEY": "ok-secret-1234", "VLLM_API_KEY": "vk-5678"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "corral.yaml"
    path.write_text(text)
    return path


def test_minimal_shape_from_the_issue_loads_exactly_as_written(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env=ENV)
    assert config.master_key == "m" * 32
    local, cloud, vllm = config.providers
    assert (local.name, local.type, local.base_url, local.api_key) == (
        "local",
        "ollama",
        "http://127.0.0.1:11434",
        None,
    )
    assert cloud.api_key == "ok-secret-1234" and cloud.timeout == 60.0
    assert (
        vllm.type == "openai"
        and vllm.headers == {"X-Client-ID": "corral"}
        and vllm.models == ("qwen2.5-coder-32b",)
    )
    assert vllm.path("chat") == "/chat/completions" and local.path("chat") == "/api/chat"
    assert [(m.name, m.target) for m in config.models] == [("cloud-kimi", "ollama-cloud/kimi-k2.5")]


def test_dollar_brace_references_expand(tmp_path: Path) -> None:
    text = "providers:\n  - {name: a, type: openai, base_url: 'http://${HOST}:8000/v1', api_key: '${K}'}\n"
    config = load_config(write(tmp_path, text), env={"HOST": "gpu1", "K": "abc"})
    assert config.providers[0].base_url == "http://gpu1:8000/v1"
    assert config.providers[0].api_key == "abc"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            "providers:\n  - {name: a, type: olama, base_url: 'http://x'}\n",
            ["providers[0].type", "ollama, openai"],
        ),
        (
            "providers:\n  - {name: a, type: ollama, base_url: 'http://x', timout: 5}\n",
            ["providers[0].timout", "Did you mean 'timeout'"],
        ),
        (
            "providers:\n  - {name: a, type: ollama, base_url: 'ftp://x'}\n",
            ["providers[0].base_url", "http://"],
        ),
        (
            "providers:\n  - {name: a, type: ollama, base_url: 'http://x', api_key: os.environ/NOPE_KEY}\n",
            ["providers[0].api_key", "NOPE_KEY is not set"],
        ),
        ("models:\n  - {name: x, target: ghost/model}\n", ["models[0].target", "'ghost'", "not defined"]),
        ("models:\n  - {name: x, target: nomodel}\n", ["models[0].target", "provider/model"]),
        (
            "providers:\n  - {name: a, type: openai, base_url: 'http://x', keep_alive: 5m}\n",
            ["providers[0].keep_alive", "type: ollama"],
        ),
        (
            "providers:\n  - {name: a, type: ollama, base_url: 'http://x'}\n"
            "  - {name: a, type: ollama, base_url: 'http://y'}\n",
            ["providers", "used twice"],
        ),
        ("master_key: short\n", ["master_key", "16 characters"]),
        ("server: {port: 99999}\n", ["server.port", "65535"]),
        (
            "providers:\n  - {name: a, type: ollama, base_url: 'http://x', timeout: soon}\n",
            ["providers[0].timeout", "duration"],
        ),
        ("providers: [\n", ["not valid YAML", "line"]),
        (
            "providers:\n  - {name: 'a/b', type: ollama, base_url: 'http://x'}\n",
            ["providers[0].name", "no '/'"],
        ),
        ("bogus: 1\n", ["unknown key 'bogus'"]),
    ],
)
def test_errors_name_file_key_path_and_fix(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml", env={})


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    text = (
        "providers:\n  - {name: a, type: ollama, base_url: 'http://x', api_key: os.environ/K, timeout: -1}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={"K": "supersecretvalue"})
    assert "supersecretvalue" not in str(info.value)


def test_durations_accept_units(tmp_path: Path) -> None:
    text = (
        "providers:\n  - {name: a, type: ollama, base_url: 'http://x', timeout: 2m, connect_timeout: 500ms}\n"
    )
    cfg = load_config(write(tmp_path, text), env={}).providers[0]
    assert (cfg.timeout, cfg.connect_timeout) == (120.0, 0.5)


def test_ollama_cloud_api_suffix_is_accepted(tmp_path: Path) -> None:
    text = "providers:\n  - {name: c, type: ollama, base_url: 'https://ollama.com/api'}\n"
    assert load_config(write(tmp_path, text), env={}).providers[0].base_url == "https://ollama.com"


def test_no_file_serves_local_ollama_from_ollama_host() -> None:
    assert load_config(None, env={}).providers[0].base_url == "http://127.0.0.1:11434"
    assert load_config(None, env={"OLLAMA_HOST": "gpu:1234"}).providers[0].base_url == "http://gpu:1234"


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("https://ollama.example", "https://ollama.example:443"),
        ("http://[::1]:11434", "http://[::1]:11434"),
    ],
)
def test_ollama_host_forms(value: str, url: str) -> None:
    assert ollama_host_url(value) == url


@pytest.mark.parametrize("url", ["https://l[", "http://h:abc", "http://h:99999"])
def test_malformed_urls_are_config_errors_not_crashes(tmp_path: Path, url: str) -> None:
    text = f"providers:\n  - {{name: a, type: ollama, base_url: '{url}'}}\n"
    with pytest.raises(ConfigError, match=r"providers\[0\]\.base_url"):
        load_config(write(tmp_path, text), env={})


def test_provider_names_cannot_end_in_a_newline(tmp_path: Path) -> None:
    text = 'providers:\n  - {name: "abc\\n", type: ollama, base_url: "http://x"}\n'
    with pytest.raises(ConfigError, match="not a valid provider name"):
        load_config(write(tmp_path, text), env={})


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("headers: {'X-Team': \"a\\r\\nEvil: 1\"}", "one line of plain ASCII"),
        ("headers: {'X-Team': 'zespół'}", "one line of plain ASCII"),
        ("headers: {'Bad Name': 'x'}", "not a valid header name"),
        ("headers: {'Content-Length': '5'}", "set by corral itself"),
        ("headers: {'transfer-encoding': 'chunked'}", "set by corral itself"),
        ('api_key: "sk-\\r\\nX-Evil: 1"', "printable ASCII"),
        ("base_url: 'http://h/ścieżka'", "percent-encode"),
    ],
)
def test_values_that_cannot_go_on_the_wire_are_config_errors(
    tmp_path: Path, entry: str, fragment: str
) -> None:
    base = "" if entry.startswith("base_url") else "base_url: 'http://x', "
    text = f"providers:\n  - {{name: a, type: openai, {base}{entry}}}\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert fragment in str(info.value)
    assert "sk-" not in str(info.value)  # a key is never echoed, even a malformed one


def test_header_and_key_values_that_can_go_on_the_wire_load(tmp_path: Path) -> None:
    text = (
        "providers:\n  - {name: a, type: openai, base_url: 'http://x/v1', api_key: 'sk-abc_123.=',"
        " headers: {'X-Team': 'ml platform', 'OpenAI-Organization': 'org-1'}}\n"
    )
    provider = load_config(write(tmp_path, text), env={}).providers[0]
    assert provider.api_key == "sk-abc_123.="
    assert provider.headers == {"X-Team": "ml platform", "OpenAI-Organization": "org-1"}


def test_a_path_that_could_split_the_request_line_is_a_config_error(tmp_path: Path) -> None:
    text = (
        "providers:\n  - {name: a, type: openai, base_url: 'http://x',"
        ' paths: {chat: "/chat HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET /admin"}}\n'
    )
    with pytest.raises(ConfigError, match="printable ASCII with no spaces"):
        load_config(write(tmp_path, text), env={})


def test_a_fractional_request_limit_for_a_user_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"user_limits\.alice.*whole number"):
        load_config(write(tmp_path, "user_limits:\n  alice: {rpm: 2.5}\n"), env={})


def test_read_limits_default_and_can_be_set_per_provider(tmp_path: Path) -> None:
    text = """
providers:
  - {name: a, type: ollama, base_url: "http://a:11434"}
  - {name: b, type: openai, base_url: "http://b/v1", max_response_bytes: 2097152, max_line_bytes: 4096}
"""
    a, b = load_config(write(tmp_path, text), env={}).providers
    assert (a.max_response_bytes, a.max_line_bytes) == (64 * 1024 * 1024, 8 * 1024 * 1024)
    assert (b.max_response_bytes, b.max_line_bytes) == (2097152, 4096)


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("max_response_bytes: 100", "providers[0].max_response_bytes: must be at least 1024, got 100"),
        ("max_line_bytes: 0", "providers[0].max_line_bytes: must be at least 1024, got 0"),
        ("max_response_bytes: 64MiB", "providers[0].max_response_bytes: must be a whole number"),
        ("max_line_bytes: true", "providers[0].max_line_bytes: must be a whole number"),
    ],
)
def test_a_read_limit_that_is_not_a_byte_count_is_a_config_error(
    tmp_path: Path, entry: str, fragment: str
) -> None:
    text = f"""
providers:
  - name: a
    type: ollama
    base_url: http://a:11434
    {entry}
"""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    assert fragment in str(caught.value)
