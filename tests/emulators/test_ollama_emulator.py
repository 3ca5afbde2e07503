"""The Ollama emulator, driven by the official ``ollama`` client (and raw httpx for wire details)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import httpx
import ollama
import pytest

from tests.emulators.common import Fault
from tests.emulators.ollama import ModelSpec, OllamaEmulator, allowed_host
from tests.support.servers import ServerThread

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    },
]


@pytest.fixture
def emu() -> OllamaEmulator:
    return OllamaEmulator()


@pytest.fixture
def server(emu: OllamaEmulator) -> Iterator[ServerThread]:
    with ServerThread(emu.app) as srv:
        yield srv


@pytest.fixture
def client(server: ServerThread) -> Iterator[ollama.Client]:
    with ollama.Client(host=server.url, timeout=10) as c:
        yield c


def user(text: str, **extra: object) -> dict[str, object]:
    return {"role": "user", "content": text, **extra}


# ------------------------------------------------------------------ discovery endpoints


def test_root_and_version_answer_get_and_head(server: ServerThread) -> None:
    assert httpx.get(server.url + "/").text == "Ollama is running"
    assert httpx.head(server.url + "/").status_code == 200
    assert httpx.get(server.url + "/api/version").json() == {"version": "0.12.10"}
    assert httpx.head(server.url + "/api/tags").status_code == 200


def test_list_has_documented_shape(client: ollama.Client) -> None:
    models = {m.model: m for m in client.list().models}
    assert set(models) == {"llama3.2:latest", "qwen3:0.6b", "nomic-embed-text:latest"}
    llama = models["llama3.2:latest"]
    assert llama.details is not None and llama.details.family == "llama"
    assert llama.details.quantization_level == "Q4_K_M" and llama.size and llama.digest
    assert llama.modified_at is not None


def test_show_reports_context_length_and_capabilities(client: ollama.Client) -> None:
    shown = client.show("qwen3:0.6b")
    assert shown.modelinfo is not None and shown.modelinfo["qwen3.context_length"] == 40960
    assert shown.capabilities == ["completion", "tools", "thinking"]
    assert shown.template and shown.parameters
    with pytest.raises(ollama.ResponseError) as err:
        client.show("missing:7b")
    assert err.value.status_code == 404


def test_ps_lists_loaded_models_and_chat_loads_them(emu: OllamaEmulator, client: ollama.Client) -> None:
    assert client.ps().models == []
    client.chat(model="llama3.2", messages=[user("hi")], stream=False)
    emu.loaded["qwen3:0.6b"] = 8192
    loaded = {m.model: m for m in client.ps().models}
    assert loaded["llama3.2:latest"].context_length == 4096
    assert loaded["qwen3:0.6b"].context_length == 8192
    assert loaded["qwen3:0.6b"].expires_at is not None and loaded["qwen3:0.6b"].size_vram


# ------------------------------------------------------------------ chat


def test_chat_streams_one_word_per_chunk_with_final_metrics(client: ollama.Client) -> None:
    chunks = list(client.chat(model="llama3.2", messages=[user("hello there friend")], stream=True))
    assert [c.message.content for c in chunks[:-1]] == ["Echo:", " hello", " there", " friend"]
    assert all(not c.done for c in chunks[:-1])
    final = chunks[-1]
    assert final.done and final.done_reason == "stop"
    assert final.eval_count == 4 and final.prompt_eval_count == 3
    assert final.eval_duration and final.prompt_eval_duration and final.load_duration
    assert final.total_duration and final.total_duration >= final.eval_duration


def test_chat_non_streamed_and_the_wire_format(server: ServerThread) -> None:
    body = {"model": "llama3.2", "messages": [user("a b")]}
    single = httpx.post(server.url + "/api/chat", json=body | {"stream": False})
    assert single.headers["content-type"].startswith("application/json")
    assert single.json()["message"] == {"role": "assistant", "content": "Echo: a b"}
    streamed = httpx.post(server.url + "/api/chat", json=body)  # stream defaults to true
    assert streamed.headers["content-type"] == "application/x-ndjson"
    lines = streamed.text.splitlines()
    assert len(lines) == 4 and all(isinstance(json.loads(line), dict) for line in lines)
    assert json.loads(lines[0])["created_at"].endswith("Z")


def test_num_predict_truncates_with_done_reason_length(client: ollama.Client) -> None:
    reply = client.chat(model="llama3.2", messages=[user("one two three four")], options={"num_predict": 2})
    assert reply.message.content == "Echo: one"
    assert reply.done_reason == "length" and reply.eval_count == 2


def test_thinking_streams_before_content(client: ollama.Client) -> None:
    chunks = list(client.chat(model="qwen3:0.6b", messages=[user("why")], think=True, stream=True))
    kinds = ["thinking" if c.message.thinking else "content" for c in chunks if not c.done]
    assert kinds.index("content") > 1 and "thinking" not in kinds[kinds.index("content") :]
    assert "".join(c.message.thinking or "" for c in chunks) == "The user said: why"
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="llama3.2", messages=[user("why")], think=True)
    assert err.value.status_code == 400 and "thinking" in err.value.error


def test_format_json_gives_valid_json(client: ollama.Client) -> None:
    reply = client.chat(model="llama3.2", messages=[user("x y")], format="json")
    assert json.loads(reply.message.content or "") == {"echo": "x y"}
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}}
    assert json.loads(client.generate(model="llama3.2", prompt="z", format=schema).response) == {"echo": "z"}


def test_tool_call_in_a_non_final_chunk(client: ollama.Client) -> None:
    chunks = list(
        client.chat(model="llama3.2", messages=[user("please call get_weather")], tools=TOOLS, stream=True)
    )
    assert len(chunks) == 2 and not chunks[0].done and chunks[1].done_reason == "stop"
    (call,) = chunks[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert call.function.arguments == {"city": "test", "days": 1}


def test_two_tool_calls_and_explicit_arguments(server: ServerThread, client: ollama.Client) -> None:
    reply = client.chat(model="llama3.2", messages=[user("call get_time and get_weather")], tools=TOOLS)
    assert [c.function.name for c in reply.message.tool_calls or []] == ["get_time", "get_weather"]
    raw = httpx.post(
        server.url + "/api/chat",
        json={"model": "llama3.2", "stream": False, "tools": TOOLS,
              "messages": [user('call get_weather with {"city": "Paris"}')]},
    ).json()  # fmt: skip
    (call,) = raw["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["function"]["index"] == 0
    assert call["function"]["arguments"] == {"city": "Paris"}


def test_tool_result_message_is_accepted(client: ollama.Client) -> None:
    messages = [
        user("call get_time"),
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_time", "arguments": {}}}],
        },
        {"role": "tool", "content": "12:00", "tool_name": "get_time"},
    ]
    reply = client.chat(model="llama3.2", messages=messages, tools=TOOLS)
    assert reply.message.content == "Tool result: 12:00" and not reply.message.tool_calls


def test_images_arrive(client: ollama.Client) -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    reply = client.chat(model="llama3.2", messages=[user("look", images=[png, png])])
    assert reply.message.content == "Echo: look [2 images]"


def test_empty_messages_load_the_model(emu: OllamaEmulator, client: ollama.Client) -> None:
    reply = client.chat(model="qwen3:0.6b", messages=[])
    assert reply.done and reply.done_reason == "load" and "qwen3:0.6b" in emu.loaded
    assert client.generate(model="qwen3:0.6b", prompt="", keep_alive=0).done_reason == "unload"
    assert "qwen3:0.6b" not in emu.loaded


def test_unknown_model_and_bad_json(server: ServerThread, client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="nope", messages=[user("hi")])
    assert err.value.status_code == 404
    assert err.value.error == 'model "nope" not found, try pulling it first'
    bad = httpx.post(server.url + "/api/chat", content=b"{not json")
    assert bad.status_code == 400 and "error" in bad.json()


# ------------------------------------------------------------------ generate and embeddings


def test_generate_streams_response_fields(client: ollama.Client) -> None:
    chunks = list(client.generate(model="llama3.2", prompt="say hi", stream=True))
    assert "".join(c.response for c in chunks) == "Echo: say hi"
    assert chunks[-1].done and chunks[-1].eval_count == 3 and chunks[-1].prompt_eval_count == 2
    assert client.generate(model="llama3.2", prompt="").done_reason == "load"


def test_embed_is_deterministic_and_honours_dimensions(client: ollama.Client) -> None:
    first = client.embed(model="nomic-embed-text", input=["alpha", "beta gamma"])
    assert len(first.embeddings) == 2 and all(len(v) == 8 for v in first.embeddings)
    assert first.embeddings[0] != first.embeddings[1] and first.prompt_eval_count == 3
    assert client.embed(model="nomic-embed-text", input="alpha").embeddings[0] == first.embeddings[0]
    assert len(client.embed(model="nomic-embed-text", input="alpha", dimensions=4).embeddings[0]) == 4
    legacy = client.embeddings(model="nomic-embed-text", prompt="alpha")
    assert list(legacy.embedding) == first.embeddings[0]


# ------------------------------------------------------------------ model management


def test_pull_streams_progress_and_adds_the_model(emu: OllamaEmulator, client: ollama.Client) -> None:
    progress = list(client.pull("gemma3:1b", stream=True))
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == [
        "verifying sha256 digest", "writing manifest", "success",
    ]  # fmt: skip
    completed = [p.completed for p in progress if p.total]
    assert len(completed) >= 3 and completed == sorted(completed) and completed[-1] == progress[1].total
    assert "gemma3:1b" in emu.models
    assert client.pull("phi3", stream=False).status == "success" and "phi3:latest" in emu.models


def test_pull_of_a_model_the_registry_lacks_fails() -> None:
    emu = OllamaEmulator(registry=[ModelSpec("gemma3:1b")])
    with ServerThread(emu.app) as srv, ollama.Client(host=srv.url) as client:
        with pytest.raises(ollama.ResponseError, match="file does not exist"):
            list(client.pull("nope:1b", stream=True))
        client.pull("gemma3:1b")
    assert "gemma3:1b" in emu.models and "nope:1b" not in emu.models


def test_copy_and_delete(emu: OllamaEmulator, client: ollama.Client) -> None:
    assert client.copy("llama3.2", "mine:v1").status == "success"
    assert emu.models["mine:v1"].digest == emu.models["llama3.2:latest"].digest
    assert client.delete("mine:v1").status == "success" and "mine:v1" not in emu.models
    for call in (lambda: client.delete("mine:v1"), lambda: client.copy("ghost", "x")):
        with pytest.raises(ollama.ResponseError) as err:
            call()
        assert err.value.status_code == 404


# ------------------------------------------------------------------ auth, host check, recording


def test_api_key_is_required_when_configured() -> None:
    emu = OllamaEmulator(api_key="s3cret")
    with ServerThread(emu.app) as srv, ollama.Client(host=srv.url) as anonymous:
        with pytest.raises(ollama.ResponseError) as err:
            anonymous.list()
        assert err.value.status_code == 401 and err.value.error == "unauthorized"
        with ollama.Client(host=srv.url, headers={"Authorization": "Bearer s3cret"}) as authed:
            assert len(authed.list().models) == 3
        assert httpx.get(srv.url + "/").status_code == 200  # liveness stays open


def test_host_header_check(server: ServerThread) -> None:
    for host, status in [("evil.example.com", 403), ("localhost:11434", 200), ("box.internal", 200),
                         ("192.168.1.9:11434", 200), ("[::1]:11434", 200), ("8.8.8.8", 403)]:  # fmt: skip
        assert httpx.get(server.url + "/api/tags", headers={"Host": host}).status_code == status, host
    assert allowed_host("printer.local") and allowed_host("10.1.2.3") and not allowed_host("ollama.com:443")


def test_host_check_can_be_disabled() -> None:
    with ServerThread(OllamaEmulator(check_host=False).app) as srv:
        assert httpx.get(srv.url + "/api/tags", headers={"Host": "ollama.com"}).status_code == 200


def test_requests_are_recorded(emu: OllamaEmulator, client: ollama.Client) -> None:
    client.chat(model="llama3.2", messages=[user("hi")], options={"num_ctx": 2048})
    (req,) = emu.requests_to("/api/chat")
    assert req.method == "POST" and req.json is not None
    assert req.json["options"] == {"num_ctx": 2048} and "user-agent" in req.headers
    assert emu.loaded["llama3.2:latest"] == 2048


# ------------------------------------------------------------------ faults and timing


def test_busy_fault_gives_ollamas_503_once(emu: OllamaEmulator, client: ollama.Client) -> None:
    emu.fault = Fault(kind="busy", times=1)
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="llama3.2", messages=[user("hi")])
    assert err.value.status_code == 503
    assert err.value.error == "server busy, please try again.  maximum pending requests exceeded"
    assert client.chat(model="llama3.2", messages=[user("hi")]).message.content == "Echo: hi"
    assert client.list().models  # discovery endpoints are not affected by default


def test_status_fault_is_per_model(emu: OllamaEmulator, client: ollama.Client) -> None:
    emu.model_faults["qwen3:0.6b"] = Fault(kind="status", status=500, message="boom")
    with pytest.raises(ollama.ResponseError) as err:
        client.generate(model="qwen3:0.6b", prompt="x")
    assert (err.value.status_code, err.value.error) == (500, "boom")
    assert client.generate(model="llama3.2", prompt="x").response == "Echo: x"


def test_hang_before_headers_times_out_the_client(emu: OllamaEmulator, server: ServerThread) -> None:
    emu.fault = Fault(kind="hang_before_headers", seconds=1.0)
    with ollama.Client(host=server.url, timeout=0.3) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.chat(model="llama3.2", messages=[user("hi")])


def test_midstream_error_after_k_chunks(emu: OllamaEmulator, client: ollama.Client) -> None:
    emu.fault = Fault(kind="midstream_error", after_chunks=2, message="runner crashed")
    seen: list[str] = []
    with pytest.raises(ollama.ResponseError, match="runner crashed"):
        for chunk in client.chat(model="llama3.2", messages=[user("a b c d")], stream=True):
            seen.append(chunk.message.content or "")
    assert seen == ["Echo:", " a"]


def test_drop_midstream_breaks_the_body(emu: OllamaEmulator, server: ServerThread) -> None:
    emu.fault = Fault(kind="drop_midstream", after_chunks=1)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(server.url + "/api/chat", json={"model": "llama3.2", "messages": [user("a b c")]})


def test_stall_midstream_and_token_delay(emu: OllamaEmulator, client: ollama.Client) -> None:
    emu.fault = Fault(kind="stall_midstream", after_chunks=1, seconds=0.4)
    start = time.monotonic()
    stamps = []
    for _ in client.chat(model="llama3.2", messages=[user("a b")], stream=True):
        stamps.append(time.monotonic() - start)
    assert stamps[1] - stamps[0] >= 0.35 and len(stamps) == 4
    emu.token_delay = 0.1
    start = time.monotonic()
    assert list(client.chat(model="llama3.2", messages=[user("a b c")], stream=True))[-1].done
    assert time.monotonic() - start >= 0.4  # 5 chunks, 4 gaps


def test_load_seconds_delays_a_cold_model_only(emu: OllamaEmulator, client: ollama.Client) -> None:
    emu.load_seconds = 0.3
    cold = client.chat(model="llama3.2", messages=[user("hi")])
    warm = client.chat(model="llama3.2", messages=[user("hi")])
    assert cold.load_duration is not None and cold.load_duration >= 300_000_000
    assert warm.load_duration is not None and warm.load_duration < 100_000_000
