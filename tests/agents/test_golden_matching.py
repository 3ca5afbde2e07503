"""The goldens' own machinery: the files are well formed, and the comparison can fail."""

from __future__ import annotations

from typing import Any

import pytest

from tests.agents import goldens

CASES = goldens.cases()


def test_golden_files_are_well_formed() -> None:
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 30
    for case in CASES:
        assert case["surface"] in goldens.SURFACES and case["upstream"] in goldens.UPSTREAMS
        assert case["kind"] in goldens.KINDS
        assert ("expected" in case) != ("error" in case), case["name"]
        source = {"request": "input", "answer": "upstream_answer", "stream": "upstream_stream"}[case["kind"]]
        assert source in case, case["name"]
        if case["kind"] != "request":
            assert "request" in case, case["name"]


def test_every_surface_meets_every_upstream_it_must() -> None:
    met = {(c["surface"], c["upstream"], c["kind"]) for c in CASES}
    for surface in ("anthropic_messages", "openai_responses"):
        for kind in goldens.KINDS:
            assert (surface, "ollama", kind) in met and (surface, "openai", kind) in met
    for kind in goldens.KINDS:
        assert ("openai_chat", "anthropic", kind) in met


@pytest.mark.parametrize(
    ("expected", "actual", "subset", "problem"),
    [
        ({"a": 1}, {"a": 1}, False, None),
        ({"a": 1}, {"a": 1, "b": 2}, False, "keys"),
        ({"a": 1}, {"a": 1, "b": 2}, True, None),
        ({"a": 1}, {"a": True}, False, "!="),  # True == 1 in Python, not in JSON
        ({"id": "re:^msg_.+"}, {"id": "msg_1"}, False, None),
        ({"id": "re:^msg_.+"}, {"id": "toolu_1"}, False, "does not match"),
        ([1, 2], [1], False, "expected 2 items"),
        ({"x": [{"a": 1}]}, {"x": [{"a": 2}]}, True, "$.x[0].a"),
    ],
)
def test_mismatch(expected: Any, actual: Any, subset: bool, problem: str | None) -> None:
    found = goldens.mismatch(expected, actual, subset)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_messages_events_drop_pings_and_merge_one_blocks_deltas() -> None:
    def delta(index: int, kind: str, **value: str) -> tuple[str, dict[str, Any]]:
        return (
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": {"type": kind, **value}},
        )

    events = [
        ("ping", {"type": "ping"}),
        delta(0, "text_delta", text="a"),
        delta(0, "text_delta", text="b"),
        delta(1, "input_json_delta", partial_json="{"),
        delta(1, "input_json_delta", partial_json="}"),
        delta(2, "signature_delta", signature="x"),
        delta(2, "signature_delta", signature="y"),
    ]
    merged = goldens.messages_events(events)
    assert [e[1]["delta"] for e in merged] == [
        {"type": "text_delta", "text": "ab"},
        {"type": "input_json_delta", "partial_json": "{}"},
        {"type": "signature_delta", "signature": "x"},
        {"type": "signature_delta", "signature": "y"},
    ]


def test_responses_events_check_sequence_numbers_and_merge_deltas() -> None:
    events = [
        {
            "type": "response.output_text.delta",
            "item_id": "m",
            "output_index": 0,
            "delta": d,
            "sequence_number": i,
        }
        for i, d in enumerate(["a", "b"])
    ]
    assert goldens.responses_events(events) == [
        {"type": "response.output_text.delta", "item_id": "m", "output_index": 0, "delta": "ab"}
    ]
    with pytest.raises(AssertionError, match="sequence_number"):
        goldens.responses_events(events[1:])


def test_chat_chunks_merge_content_and_one_calls_fragments_only() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    call = {"index": 0, "id": "c0", "type": "function", "function": {"name": "f", "arguments": "{"}}
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "hi"}),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "c1", "function": {"name": "g", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
        {"choices": [], "usage": {"prompt_tokens": 1}},
    ]
    pairs = goldens.chat_chunks(chunks)
    assert pairs[0] == [{"role": "assistant", "content": "hi"}, None]
    assert pairs[1][0]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert pairs[2][0]["tool_calls"][0]["id"] == "c1"  # a new call is not folded into the last
    assert pairs[3:] == [[{}, "tool_calls"], ["usage", {"prompt_tokens": 1}]]
