"""The official openai client, through corral, to an emulated Ollama (native API underneath)."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest

from tests.e2e.conftest import CLOUD_KEY, Fleet

USER = [{"role": "user", "content": "hello there friend"}]


def last_body(emu: object, path: str) -> dict:  # type: ignore[type-arg]
    return emu.requests_to(path)[-1].json  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize("model", ["local/llama3.2", "llama3.2", "ollama/llama3.2:latest", "llama3.2:latest"])
def test_chat_by_every_name_form(fleet: Fleet, model: str) -> None:
    resp = fleet.client().chat.completions.create(model=model, messages=USER)
    assert resp.choices[0].message.content == "Echo: hello there friend"
    assert resp.choices[0].finish_reason == "stop"
    sent = last_body(fleet.ollama, "/api/chat")
    # corral always streams from Ollama (first-token failover, stall detection) and folds the answer
    assert sent["model"] in ("llama3.2", "llama3.2:latest") and sent["stream"] is True
    assert resp.usage is not None and resp.usage.completion_tokens == 4
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 4


def test_alias_to_ollama_cloud_sends_bearer_key_and_own_host(fleet: Fleet) -> None:
    raw = fleet.client().chat.completions.with_raw_response.create(model="cloud-gpt", messages=USER)
    assert raw.headers["x-corral-provider"] == "ollama-cloud"
    assert raw.headers["x-corral-model"] == "gpt-oss:120b"
    assert raw.parse().choices[0].message.content == "Echo: hello there friend"
    seen = fleet.cloud.requests_to("/api/chat")[-1]
    assert seen.headers["authorization"] == f"Bearer {CLOUD_KEY}"
    assert seen.headers["host"] == f"127.0.0.1:{fleet.cloud_server.port}"
    assert CLOUD_KEY not in raw.http_response.text


def test_streaming_has_one_id_and_usage(fleet: Fleet) -> None:
    stream = fleet.client().chat.completions.create(
        model="local/llama3.2", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: hello there friend"
    assert len({c.id for c in chunks}) == 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert (
        chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    )
    assert last_body(fleet.ollama, "/api/chat")["stream"] is True


def test_options_keep_alive_and_num_ctx_reach_ollama(fleet: Fleet) -> None:
    fleet.client().chat.completions.create(
        model="local/llama3.2",
        messages=USER,
        temperature=0.2,
        top_p=0.9,
        seed=7,
        stop=["x"],
        max_tokens=50,
        frequency_penalty=0.5,
        presence_penalty=0.1,
    )
    sent = last_body(fleet.ollama, "/api/chat")
    assert sent["keep_alive"] == "10m"
    assert sent["options"] == {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["x"],
        "num_predict": 50,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.1,
        "num_ctx": 8192,
    }
    fleet.client().chat.completions.create(
        model="local/llama3.2",
        messages=USER,
        extra_body={"keep_alive": -1, "num_ctx": 2048, "options": {"top_k": 5}},
    )
    sent = last_body(fleet.ollama, "/api/chat")
    assert sent["keep_alive"] == -1 and sent["options"]["num_ctx"] == 2048 and sent["options"]["top_k"] == 5


def test_max_tokens_gives_length_finish(fleet: Fleet) -> None:
    resp = fleet.client().chat.completions.create(
        model="local/llama3.2", messages=USER, max_completion_tokens=2
    )
    assert resp.choices[0].finish_reason == "length"
    assert resp.choices[0].message.content == "Echo: hello"


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": "d",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    for name in ("weather", "time")
]


def test_tool_calls_round_trip(fleet: Fleet) -> None:
    client = fleet.client()
    messages: list[dict] = [{"role": "user", "content": "please call weather and time"}]  # type: ignore[type-arg]
    resp = client.chat.completions.create(model="local/llama3.2", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["weather", "time"]
    assert all(isinstance(json.loads(c.function.arguments), dict) for c in calls)
    assert len({c.id for c in calls}) == 2
    messages.append(choice.message.model_dump(exclude_none=True))
    for call in calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    client.chat.completions.create(model="local/llama3.2", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    sent = last_body(fleet.ollama, "/api/chat")["messages"]
    assert isinstance(sent[1]["tool_calls"][0]["function"]["arguments"], dict)
    assert [m.get("tool_name") for m in sent[2:]] == ["weather", "time"]


def test_streamed_tool_calls_have_distinct_indexes(fleet: Fleet) -> None:
    stream = fleet.client().chat.completions.create(
        model="local/llama3.2",
        messages=[{"role": "user", "content": "call weather and time"}],
        tools=TOOLS,
        stream=True,
    )  # type: ignore[arg-type]
    chunks = list(stream)
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert sorted(d.index for d in deltas) == [0, 1]
    assert all(isinstance(json.loads(d.function.arguments or ""), dict) for d in deltas if d.function)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_thinking_comes_back_as_reasoning_content(fleet: Fleet) -> None:
    resp = fleet.client().chat.completions.create(model="cloud-gpt", messages=USER, reasoning_effort="high")
    assert last_body(fleet.cloud, "/api/chat")["think"] == "high"
    assert getattr(resp.choices[0].message, "reasoning_content", None)
    stream = fleet.client().chat.completions.create(
        model="cloud-gpt", messages=USER, reasoning_effort="low", stream=True
    )
    reasoning = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in stream if c.choices
    )
    assert reasoning == resp.choices[0].message.reasoning_content  # type: ignore[attr-defined]


def test_json_mode_becomes_format(fleet: Fleet) -> None:
    resp = fleet.client().chat.completions.create(
        model="local/llama3.2", messages=USER, response_format={"type": "json_object"}
    )
    assert last_body(fleet.ollama, "/api/chat")["format"] == "json"
    assert isinstance(json.loads(resp.choices[0].message.content or ""), dict)
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}}
    fleet.client().chat.completions.create(
        model="local/llama3.2",
        messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    )
    assert last_body(fleet.ollama, "/api/chat")["format"] == schema


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def test_data_url_images_reach_ollama_and_remote_urls_are_refused(fleet: Fleet) -> None:
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    # the emulator's llama3.2 has no vision, and corral refuses images for it (as Ollama does): say it sees
    facts = fleet.gateway.gateway.engine.fit.facts  # type: ignore[union-attr]
    facts.learn("local", "llama3.2:latest", ["completion", "tools", "vision"], None)
    fleet.client().chat.completions.create(
        model="local/llama3.2", messages=[{"role": "user", "content": content}]
    )  # type: ignore[list-item,misc]
    sent = last_body(fleet.ollama, "/api/chat")["messages"][0]
    assert sent == {"role": "user", "content": "what is this", "images": [PNG]}
    before = len(fleet.ollama.requests)
    remote = [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}}]
    with pytest.raises(openai.BadRequestError) as info:
        fleet.client().chat.completions.create(
            model="local/llama3.2", messages=[{"role": "user", "content": remote}]
        )  # type: ignore[list-item,misc]
    assert "data:" in str(info.value)
    assert len(fleet.ollama.requests) == before


def test_embeddings_float_and_base64(fleet: Fleet) -> None:
    client = fleet.client()
    floats = client.embeddings.create(
        model="local/nomic-embed-text", input=["a b", "c"], encoding_format="float"
    )
    assert len(floats.data) == 2 and len(floats.data[0].embedding) == 8
    sent = last_body(fleet.ollama, "/api/embed")
    assert sent["input"] == ["a b", "c"]
    b64 = client.embeddings.create(
        model="local/nomic-embed-text", input=["a b", "c"]
    )  # the client asks for base64
    assert b64.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_completions_use_generate(fleet: Fleet) -> None:
    resp = fleet.client().completions.create(model="local/llama3.2", prompt="once upon", max_tokens=20)
    assert resp.choices[0].text == "Echo: once upon"
    assert last_body(fleet.ollama, "/api/generate")["options"]["num_predict"] == 20
    text = "".join(
        c.choices[0].text
        for c in fleet.client().completions.create(model="local/llama3.2", prompt="once upon", stream=True)
        if c.choices
    )
    assert text == "Echo: once upon"


def test_models_lists_discovered_and_aliases(fleet: Fleet) -> None:
    ids = {m.id for m in fleet.client().models.list()}
    assert {
        "cloud-gpt",
        "coder",
        "local/llama3.2:latest",
        "ollama-cloud/gpt-oss:120b",
        "vllm/qwen2.5-coder-32b",
    } <= ids
    assert fleet.client().models.retrieve("local/llama3.2:latest").owned_by == "local"


def test_upstream_404_keeps_status_and_names_provider(fleet: Fleet) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        fleet.client().chat.completions.create(model="local/not-pulled", messages=USER)
    assert "Upstream 'local'" in str(info.value) and "not found" in str(info.value)


def test_mid_stream_error_becomes_an_in_band_error(fleet: Fleet) -> None:
    from tests.emulators.common import Fault

    fleet.ollama.fault = Fault("midstream_error", message="CUDA out of memory", after_chunks=2)
    stream = fleet.client().chat.completions.create(model="local/llama3.2", messages=USER, stream=True)
    got: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    assert "CUDA out of memory" in str(info.value)
    assert len(got) >= 1


def test_dropped_stream_is_never_silently_truncated(fleet: Fleet) -> None:
    from tests.emulators.common import Fault

    fleet.ollama.fault = Fault("drop_midstream", after_chunks=2)
    with httpx.stream(
        "POST",
        fleet.gateway.v1 + "/chat/completions",
        headers=fleet.gateway.headers(),
        json={"model": "local/llama3.2", "messages": USER, "stream": True},
    ) as resp:
        body = resp.read().decode()
    assert "incomplete" in body and '"error"' in body
    assert "[DONE]" not in body
