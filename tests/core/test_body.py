"""The forwarded body: re-encoded with the routed model, whatever the client's bytes held; and the
keys a case-insensitive (Go) reader would take for a field."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.body import (
    OLLAMA_FIELDS,
    OPENAI_FIELDS,
    shadowing_key,
    shadowing_path,
    with_model,
    without_shadowing,
)
from tests.support.godecode import first_wins, fold, top_level_keys


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"vllm/qwen","messages":[{"role":"user","content":"say \\"model\\": \\"x\\""}]}',
        b'{ "messages": [], "model" :  "vllm/qwen" , "temperature": 0.5 }',
        b'{"model":"vllm/q\\u00fcen","stream":true}',
    ],
)
def test_every_other_field_is_kept(raw: bytes) -> None:
    body = orjson.loads(raw)
    assert orjson.loads(with_model(raw, body, "qwen")) == {**body, "model": "qwen"}


def test_key_order_is_kept() -> None:
    raw = b'{"messages":[],"model":"p/m","stream":true}'
    assert top_level_keys(with_model(raw, orjson.loads(raw), "m")) == ["messages", "model", "stream"]


def test_nested_model_keys_are_left_alone() -> None:
    raw = b'{"metadata":{"model":"a"},"model":"p/b","x":1}'
    out = with_model(raw, orjson.loads(raw), "b")
    assert orjson.loads(out) == {"metadata": {"model": "a"}, "model": "b", "x": 1}


def test_model_name_with_quotes_is_encoded_safely() -> None:
    raw = b'{"model":"p/m"}'
    assert orjson.loads(with_model(raw, orjson.loads(raw), 'we"ird')) == {"model": 'we"ird'}


@pytest.mark.parametrize(
    "raw",
    [
        # the one match of a regex for "model": "..." was the key '\"model' inside a message
        b'{"mod\\u0065l":"ok-premium","messages":[{"role":"user","content":"hi","\\"model":"x"}]}',
        b'{"model":"ok-premium","mod\\u0065l":"ok-premium"}',  # orjson keeps the last
        b'{"model":"ok-premium","messages":[],"model":"ok-premium"}',
    ],
)
def test_the_model_is_the_one_given_however_the_key_is_spelled(raw: bytes) -> None:
    out = with_model(raw, orjson.loads(raw), "ok-cheap")
    assert top_level_keys(out).count("model") == 1
    assert first_wins(out)["model"] == "ok-cheap" == orjson.loads(out)["model"]


def test_an_unchanged_model_still_drops_duplicate_keys() -> None:
    # both keys read 'ok-cheap' to orjson (the last wins); a first-wins reader would run 'ok-premium'
    raw = b'{"model":"ok-premium","messages":[],"model":"ok-cheap"}'
    out = with_model(raw, orjson.loads(raw), "ok-cheap")
    assert top_level_keys(out) == ["model", "messages"]
    assert first_wins(out)["model"] == "ok-cheap"


def test_a_model_added_to_the_parsed_body_is_forwarded() -> None:
    # x-corral-power with no model in the body: the route adds one to the parsed body only
    raw = b'{"messages":[{"role":"user","content":"hi","model":"x"}]}'
    body = {**orjson.loads(raw), "model": "corral/eco"}
    out = orjson.loads(with_model(raw, body, "qwen3:8b"))
    assert out["model"] == "qwen3:8b" and out["messages"][0]["model"] == "x"


# the property: whatever the bytes, the upstream reads the model given and nothing else changed --

_KEYS = st.sampled_from(["model", "Model", "messages", "x", '"model', "model ", "mod\\el", "stream"])
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8), st.sampled_from(['"model":"x"', "model", '\\"model\\"']),
)  # fmt: skip


def _spelling(key: str) -> st.SearchStrategy[str]:
    """``key`` as JSON text: plain, or with some characters written as \\u escapes."""

    def encode(escaped: list[bool]) -> str:
        body = "".join(
            f"\\u{ord(c):04{'x' if i % 2 else 'X'}}" if esc else json.dumps(c)[1:-1]
            for i, (c, esc) in enumerate(zip(key, escaped, strict=True))
        )
        return f'"{body}"'

    return st.lists(st.booleans(), min_size=len(key), max_size=len(key)).map(encode)


@st.composite
def _json(draw: st.DrawFn, depth: int = 0) -> str:
    """JSON text for any value, objects with repeated and escaped keys, "model" anywhere."""
    kind = draw(st.sampled_from(["scalar", "list", "object"] if depth < 3 else ["scalar"]))
    if kind == "scalar":
        return json.dumps(draw(_SCALARS))
    if kind == "list":
        return "[" + ",".join(draw(st.lists(_json(depth + 1), max_size=3))) + "]"
    pairs = draw(st.lists(st.tuples(_KEYS, _json(depth + 1)), max_size=4))
    return "{" + ",".join(f"{draw(_spelling(k))}:{v}" for k, v in pairs) + "}"


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    """A top-level object with at least one "model" key (one of them last), any spellings."""
    pairs = draw(st.lists(st.tuples(_KEYS, _json(1)), max_size=5))
    models = draw(st.lists(st.tuples(st.just("model"), _json(1)), min_size=1, max_size=3))
    ordered = draw(st.permutations(pairs + models))
    texts = [f"{draw(_spelling(k))}:{v}" for k, v in ordered]
    return ("{" + ",".join(texts) + "}").encode()


@settings(max_examples=400, deadline=None)
@given(raw=_bodies(), model=st.text(min_size=1, max_size=12))
def test_property_the_upstream_reads_the_model_given_and_every_other_field_unchanged(
    raw: bytes, model: str
) -> None:
    body = orjson.loads(raw)
    out = with_model(raw, body, model)
    parsed = orjson.loads(out)
    assert parsed["model"] == model
    others = {k: v for k, v in body.items() if k != "model"}
    assert {k: v for k, v in parsed.items() if k != "model"} == others
    keys = top_level_keys(out)
    assert len(keys) == len(set(keys))  # so first-wins and last-wins readers agree
    assert first_wins(out) == parsed


# shadowing keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["MODEL", "Model", "OPTIONS", "Stream", "keep_ALIVE", "\u017ftream", "\u212aeep_alive", "Think"]
)
def test_a_key_go_would_take_for_a_field_is_found(key: str) -> None:
    assert fold(key) in {fold(f) for f in OLLAMA_FIELDS}  # Go would take it for a field
    assert shadowing_key({"model": "m", key: 1}, OLLAMA_FIELDS) == key


@pytest.mark.parametrize("key", ["model", "x-trace", "Foo", "MODELS", "model_", "\u0130mages"])
def test_other_keys_are_not(key: str) -> None:
    assert shadowing_key({key: 1}, OLLAMA_FIELDS) is None


def test_shadowing_inside_options_is_found_with_its_path() -> None:
    body = {"model": "m", "options": {"num_ctx": 4096, "Num_Ctx": 131072}}
    assert shadowing_path(body, OLLAMA_FIELDS) == "options.Num_Ctx"
    assert shadowing_path({"model": "m", "options": {"temperature": 1}}, OLLAMA_FIELDS) is None


def test_openai_fields_cover_what_corral_reads() -> None:
    for key in ("Max_Tokens", "STREAM_OPTIONS", "User", "Messages"):
        assert shadowing_key({key: 1}, OPENAI_FIELDS) == key


def test_without_shadowing_drops_only_those_keys() -> None:
    body = {"model": "m", "MODEL": "p", "x": 1}
    assert without_shadowing(body, OLLAMA_FIELDS) == {"model": "m", "x": 1}
    plain = {"model": "m"}
    assert without_shadowing(plain, OLLAMA_FIELDS) is plain
