"""Reading a request body: bounded parse cost, and client names checked before they travel on."""

from __future__ import annotations

import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import orjson
import pytest

from corral.errors import BodyTooLarge, InvalidRequest
from corral.http import json_body
from corral.http.json_body import PARSE_FACTOR, SCAN_FROM, check_name, parse_cost, parse_json

SIZE = 8 * 1024 * 1024


def fill(unit: bytes) -> bytes:
    """A chat body of about ``SIZE`` bytes whose messages list repeats ``unit``."""
    head, tail = b'{"model":"m","messages":[', b"0]}"
    return head + unit * ((SIZE - len(head)) // len(unit)) + tail


def peak_of_parsing(raw: bytes) -> tuple[int, BaseException | None]:
    """The most memory ``parse_json(raw)`` held at once, and what it raised."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        try:
            parse_json(raw)
        except (BodyTooLarge, InvalidRequest) as exc:
            return tracemalloc.get_traced_memory()[1], exc
        return tracemalloc.get_traced_memory()[1], None
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "unit",
    [b"{},", b"[],", b'{"a":0},', b"[[]],", b"[1,2],", b'"a",', '"é",'.encode(), b"0,", b'"\\"",'],
    ids=["empty-objects", "empty-lists", "small-objects", "nested", "pairs", "1-char", "é", "zeros", "quote"],
)
def test_a_body_of_tiny_values_is_refused_before_it_is_parsed(unit: bytes) -> None:
    raw = fill(unit)
    peak, exc = peak_of_parsing(raw)
    assert isinstance(exc, BodyTooLarge), exc
    assert exc.status == 413 and exc.code == "body_too_complex"
    assert f"more than {PARSE_FACTOR} times its size" in exc.message
    assert "fewer, larger values" in exc.message
    assert peak < 3 * len(raw)  # the scan's own copies; parsing would have taken 13 to 38 times


def _tool() -> dict[str, object]:
    city = {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}
    unit = {"type": "string", "enum": ["celsius", "fahrenheit"]}
    parameters = {"type": "object", "properties": {"city": city, "unit": unit}, "required": ["city"]}
    return {"type": "function", "function": {"name": "get_weather", "parameters": parameters}}


def _ordinary() -> dict[str, bytes]:
    rng = random.Random(7)
    prose = "It was a bright cold day in April, and the clocks were striking thirteen: "
    result = orjson.dumps({"temperature": 22, "readings": list(range(40)), "unit": "celsius"}).decode()
    csv = "\n".join(",".join(str(rng.randrange(100)) for _ in range(12)) for _ in range(40))
    n = SIZE // 1000
    return {
        "chat": orjson.dumps({"model": "m", "messages": [{"role": "user", "content": prose * 12}] * n}),
        "tools": orjson.dumps({"model": "m", "messages": [], "tools": [_tool()] * (SIZE // 260)}),
        "agent": orjson.dumps(
            {
                "model": "m",
                "messages": [{"role": "tool", "content": result}, {"role": "user", "content": csv}] * n,
            }
        ),
        "token-ids": orjson.dumps(
            {"model": "m", "input": [rng.randrange(150_000) for _ in range(SIZE // 7)]}
        ),
        "image": orjson.dumps({"model": "m", "prompt": "?", "images": ["QUJD" * (SIZE // 4)]}),
        "csv-rows": orjson.dumps({"model": "m", "input": [csv[:60]] * (SIZE // 64)}),
    }


_MEASURE = """
import sys
from corral.http.json_body import parse_json
def hwm():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
with open(sys.argv[1], "rb") as f:
    raw = f.read()
before = hwm()
parse_json(raw)
print(hwm() - before)
"""


@pytest.mark.parametrize("kind", ["chat", "tools", "agent", "token-ids", "image", "csv-rows"])
def test_large_ordinary_bodies_are_parsed_within_the_limit(kind: str, tmp_path: Path) -> None:
    raw = _ordinary()[kind]
    assert len(raw) > SCAN_FROM
    assert parse_cost(raw) <= PARSE_FACTOR * len(raw)
    if not Path("/proc/self/status").exists():
        pytest.skip("measuring the parse's resident memory needs Linux's /proc/self/status")
    body = tmp_path / "body.json"
    body.write_bytes(raw)
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(body)], capture_output=True, text=True, timeout=120, check=True
    )
    assert int(done.stdout) <= PARSE_FACTOR * len(raw)  # the peak resident memory of the parse


def test_small_bodies_are_not_scanned() -> None:
    raw = b'{"model":"m","messages":[' + b"{}," * (SCAN_FROM // 3 - 20) + b"{}]}"
    assert len(raw) <= SCAN_FROM and parse_cost(raw) > PARSE_FACTOR * len(raw)
    assert parse_json(raw)["model"] == "m"  # at most about 40 MiB, so not worth a scan


@pytest.mark.parametrize("quotes", ["few", "many"])
def test_commas_and_brackets_inside_strings_are_not_structure(
    quotes: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # strings are found one by one under a few thousand quotes, else by splitting: the same count
    if quotes == "many":
        monkeypatch.setattr(json_body, "_FEW_QUOTES", 0)
    text = '[1,2],{"a":[3]},\\"' * 100_000  # orjson escapes its quotes and backslashes
    raw = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": text}] * 2})
    assert len(raw) > SCAN_FROM
    assert parse_cost(raw) <= 3 * len(raw)  # not the 30 times counting its brackets would give
    assert parse_json(raw)["messages"][1]["content"] == text


def test_escaped_quotes_do_not_hide_strings_or_fake_them() -> None:
    # the string '\\' ends at the quote after two backslashes; '\"' does not end one
    raw = b'{"a":"\\\\","b":"\\"{[,:","c":' + b"[" * 10 + b"]" * 10 + b"}"
    assert parse_json(raw)["b"] == '"{[,:'
    assert parse_cost(raw) > 0


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"{", "invalid_json"), (b"[1]", "invalid_json"), (b'"x"', "invalid_json")],
)
def test_not_an_object_is_a_400(raw: bytes, code: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_json(raw)
    assert info.value.status == 400 and info.value.code == code


@pytest.mark.parametrize(
    "name", ["llama3.2", "hf.co/org/Model-GGUF:Q4_K_M", "ollama/qwen3:8b", "a b", "模型"]
)
def test_plain_names_pass(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("x" * 257, "at most 256"),
        ("evil/slow-x\r\nX-Injected: 1", "U+000D"),
        ("a\x00", "U+0000"),
        ("a\x7f", "U+007F"),
        ("a\x85", "U+0085"),
        ("a\u2028b", "U+2028"),
        ("a\u200bb", "U+200B"),
    ],
)
def test_long_or_control_character_names_are_a_400_naming_the_field(name: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_name(name, "model")
    assert info.value.status == 400 and info.value.param == "model"
    assert fragment in info.value.message and "'model'" in info.value.message
