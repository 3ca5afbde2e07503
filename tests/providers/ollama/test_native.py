"""The body the Ollama passthrough sends: what corral read, as Go (Ollama) will read it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from corral.config.schema import ProviderConfig
from corral.core.call import Attempt, Call, Endpoint, Surface
from corral.providers.ollama.native import payload
from corral.providers.ollama.provider import OllamaProvider
from tests.support.godecode import CHAT_REQUEST, GENERATE_REQUEST, go_decode, top_level_keys


def provider(**cfg: Any) -> OllamaProvider:
    return OllamaProvider(ProviderConfig(name="gpu", type="ollama", base_url="http://127.0.0.1:9", **cfg))


def call(raw: bytes, endpoint: Endpoint = Endpoint.CHAT) -> Call:
    body = orjson.loads(raw)
    return Call(endpoint, body, raw, str(body.get("model")), True, "req_1", Surface.OLLAMA)


def sent(raw: bytes, *, model: str = "cheap:latest", num_ctx: int | None = None, **cfg: Any) -> bytes:
    attempt = Attempt(model=model, num_ctx=num_ctx)
    return payload(provider(**cfg), call(raw), attempt, upstream_stream=True)


AUDIT = (
    b'{"model":"chat","options":{"num_ctx":4096},"messages":[{"role":"user","content":"hi"}],'
    b'"stream":false,"MODEL":"premium:latest","OPTIONS":{"num_ctx":131072}}'
)


def test_case_variant_keys_never_reach_ollama() -> None:
    seen = go_decode(sent(AUDIT, num_ctx=4096), CHAT_REQUEST)
    assert seen["model"] == "cheap:latest"
    assert seen["options"] == {"num_ctx": 4096}
    assert seen["stream"] is True


@pytest.mark.parametrize(
    "extra",
    [b'"Model":"premium:latest"', b'"\\u017ftream":false', b'"\\u212aeep_alive":0', b'"THINK":true'],
)
def test_every_spelling_go_folds_to_a_field_is_dropped(extra: bytes) -> None:
    raw = b'{"model":"chat","messages":[],"stream":true,' + extra + b"}"
    out = sent(raw)
    assert go_decode(out, CHAT_REQUEST) == {"model": "cheap:latest", "messages": [], "stream": True}


def test_a_case_variant_option_is_dropped_and_the_pin_holds() -> None:
    raw = b'{"model":"chat","messages":[],"options":{"num_ctx":4096,"Num_Ctx":131072,"seed":1}}'
    seen = go_decode(sent(raw, num_ctx=4096), CHAT_REQUEST)
    assert seen["options"] == {"num_ctx": 4096, "seed": 1}


def test_duplicate_keys_are_sent_once_as_corral_read_them() -> None:
    # Go would merge the two options objects: the first one's num_ctx would load a huge context
    raw = (
        b'{"model":"premium:latest","options":{"num_ctx":131072},"messages":[],'
        b'"model":"cheap:latest","options":{"temperature":0}}'
    )
    out = sent(raw)
    assert top_level_keys(out) == ["model", "options", "messages"]
    assert go_decode(out, CHAT_REQUEST)["options"] == {"temperature": 0}


def test_a_streamed_unpinned_request_is_still_re_encoded_with_the_routed_model() -> None:
    raw = b'{"model":"cheap:latest","messages":[],"stream":true,"model":"cheap:latest"}'
    assert top_level_keys(sent(raw)) == ["model", "messages", "stream"]


def test_provider_defaults_fill_only_what_the_client_left_out() -> None:
    raw = b'{"model":"m","prompt":"hi","keep_alive":"1m","options":{"temperature":0.5}}'
    attempt = Attempt(model="m2")
    p = provider(keep_alive="10m", num_ctx=8192, options={"temperature": 0.1, "top_k": 5})
    out = payload(p, call(raw, Endpoint.COMPLETION), attempt, upstream_stream=True)
    seen = go_decode(out, GENERATE_REQUEST)
    assert seen == {
        "model": "m2", "prompt": "hi", "keep_alive": "1m",  # no stream: Ollama streams by default
        "options": {"temperature": 0.5, "top_k": 5, "num_ctx": 8192},
    }  # fmt: skip
