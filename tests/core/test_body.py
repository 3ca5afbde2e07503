"""Rewriting the model of a forwarded body without re-encoding it."""

from __future__ import annotations

import orjson
import pytest

from corral.core.body import with_model


def test_same_model_returns_the_same_bytes() -> None:
    raw = b'{"model": "m", "messages": []}'
    assert with_model(raw, orjson.loads(raw), "m") is raw


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"vllm/qwen","messages":[{"role":"user","content":"say \\"model\\": \\"x\\""}]}',
        b'{ "messages": [], "model" :  "vllm/qwen" , "temperature": 0.5 }',
        b'{"model":"vllm/q\\u00fcen","stream":true}',
    ],
)
def test_splice_keeps_every_other_byte(raw: bytes) -> None:
    body = orjson.loads(raw)
    out = with_model(raw, body, "qwen")
    assert orjson.loads(out) == {**body, "model": "qwen"}
    head = raw[: raw.index(b'"model"')]
    assert out.startswith(head)


def test_nested_model_key_falls_back_to_reencoding() -> None:
    raw = b'{"metadata":{"model":"a"},"model":"p/b","x":1}'
    out = with_model(raw, orjson.loads(raw), "b")
    assert orjson.loads(out) == {"metadata": {"model": "a"}, "model": "b", "x": 1}


def test_model_name_with_quotes_is_encoded_safely() -> None:
    raw = b'{"model":"p/m"}'
    assert orjson.loads(with_model(raw, orjson.loads(raw), 'we"ird')) == {"model": 'we"ird'}
