"""The official openai client, through corral, to an emulated OpenAI-compatible server (bytes forwarded)."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.e2e.conftest import VLLM_KEY, Fleet
from tests.emulators.common import Fault

USER = [{"role": "user", "content": "hello there friend"}]


def test_chat_through_alias_rewrites_only_the_model(fleet: Fleet) -> None:
    raw = fleet.client().chat.completions.with_raw_response.create(
        model="coder", messages=USER, temperature=0.3, extra_body={"top_k": 4, "vendor_flag": {"a": 1}}
    )
    resp = raw.parse()
    assert resp.choices[0].message.content == "Echo: hello there friend"
    seen = fleet.vllm.requests_to("/chat/completions")[-1]
    # the only deployment to try: asked for whole, not streamed and folded (nowhere to fail over to)
    assert seen.json == {
        "model": "qwen2.5-coder-32b",
        "messages": USER,
        "temperature": 0.3,
        "top_k": 4,
        "vendor_flag": {"a": 1},
    }
    assert seen.headers["authorization"] == f"Bearer {VLLM_KEY}"
    assert seen.headers["x-client-id"] == "corral"
    assert seen.headers["host"] == f"127.0.0.1:{fleet.vllm_server.port}"
    body = raw.http_response.json()
    assert "x_emulator" in body and "system_fingerprint" in body  # unknown upstream fields kept
    assert raw.headers["x-corral-provider"] == "vllm"


def test_provider_slash_model_and_streaming_passthrough(fleet: Fleet) -> None:
    stream = fleet.client().chat.completions.create(
        model="vllm/qwen2.5-coder-32b", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: hello there friend"
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    seen = fleet.vllm.requests_to("/chat/completions")[-1].json
    assert seen["stream"] is True and seen["stream_options"] == {"include_usage": True}


def test_stream_is_relayed_as_it_arrives(fleet: Fleet) -> None:
    import time

    fleet.vllm.token_delay = 0.15
    started = time.monotonic()
    stream = fleet.client().chat.completions.create(model="coder", messages=USER, stream=True)
    first = next(iter(stream))
    first_at = time.monotonic() - started
    rest = list(stream)
    total = time.monotonic() - started
    assert first.choices and rest
    assert first_at < total - 0.3, (first_at, total)  # the first chunk arrived well before the end


def test_embeddings_and_completions(fleet: Fleet) -> None:
    client = fleet.client()
    emb = client.embeddings.create(model="vllm/text-embedding-3-small", input="abc")
    assert len(emb.data[0].embedding) == 8
    comp = client.completions.create(model="vllm/qwen2.5-coder-32b", prompt="once upon")
    assert comp.choices[0].text


def test_upstream_auth_failure_is_502_without_the_key(fleet: Fleet) -> None:
    fleet.vllm.fault = Fault("status", status=401, message=f"Incorrect API key provided: {VLLM_KEY}")
    resp = httpx.post(
        fleet.gateway.v1 + "/chat/completions",
        headers=fleet.gateway.headers(),
        json={"model": "coder", "messages": USER},
    )
    assert resp.status_code == 502
    assert "credentials" in resp.json()["error"]["message"]
    assert VLLM_KEY not in resp.text


def test_upstream_rate_limit_keeps_429(fleet: Fleet) -> None:
    fleet.vllm.fault = Fault("busy")
    with pytest.raises(openai.APIStatusError) as info:
        fleet.client().chat.completions.create(model="coder", messages=USER)
    assert info.value.status_code in (429, 503)
    assert "vllm" in str(info.value)
