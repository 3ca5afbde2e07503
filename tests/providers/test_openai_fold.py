"""The fold of an OpenAI-compatible server's stream into the whole answer a client asked for
(``providers.openai_fold``): the chunks vLLM, llama-cpp-python and Ollama's /v1 send, as they send
them, and the answer a client gets; fields corral does not know survive."""

from __future__ import annotations

import time
from typing import Any

from corral.config.schema import ProviderConfig
from corral.conversation.call import Outcome
from corral.providers.openai_fold import ChunkFold, _event, note


def chunk(choices: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 7,
        "model": "qwen",
        **top,
        "choices": choices,
    }


def folded(chunks: list[dict[str, Any]], chat: bool = True) -> ChunkFold:
    fold = ChunkFold(chat=chat)
    for c in chunks:
        fold.add(c)
    return fold


def test_text_role_and_unknown_fields() -> None:
    fold = folded(
        [
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
                system_fingerprint="fp_1",
            ),
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "reasoning_content": "Think"},
                        "finish_reason": None,
                    }
                ]
            ),
            chunk(
                [{"index": 0, "delta": {"role": "assistant", "content": "Hel", "reasoning_content": "ing"}}]
            ),
            chunk(
                [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop", "stop_reason": None}],
                kv_transfer_params=None,
            ),
            chunk([], usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}),
        ]
    )
    assert fold.finished
    assert fold.answer("m") == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 7,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello", "reasoning_content": "Thinking"},
                "logprobs": None,
                "finish_reason": "stop",
                "stop_reason": None,
            }
        ],
        "system_fingerprint": "fp_1",
        "kv_transfer_params": None,
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def test_tool_call_fragments_are_joined_by_index() -> None:
    fold = folded(
        [
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "call_a",
                                    "type": "function",
                                    "function": {"name": "get_weather", "arguments": ""},
                                }
                            ],
                        },
                    }
                ]
            ),
            chunk(
                [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}}]
            ),
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 1,
                                    "id": "call_b",
                                    "type": "function",
                                    "function": {"name": "get_time", "arguments": "{}"},
                                },
                                {"index": 0, "function": {"arguments": ' "Paris"}'}},
                            ]
                        },
                    }
                ]
            ),
            chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
        ]
    )
    (choice,) = fold.answer("m")["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }


def test_arguments_sent_as_an_object_and_a_name_repeated_are_not_doubled() -> None:
    fold = folded(
        [
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {"index": 0, "id": "c", "function": {"name": "f", "arguments": {"x": 1}}}
                            ]
                        },
                    }
                ]
            ),
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]},
                        "finish_reason": "tool_calls",
                    }
                ]
            ),
        ]
    )
    (call,) = fold.answer("m")["choices"][0]["message"]["tool_calls"]
    assert call == {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}


def test_several_choices_interleaved_and_logprobs_joined() -> None:
    lp = lambda t: {"content": [{"token": t, "logprob": -0.1, "bytes": None, "top_logprobs": []}]}  # noqa: E731
    fold = folded(
        [
            chunk([{"index": 1, "delta": {"content": "B"}, "logprobs": lp("B")}]),
            chunk([{"index": 0, "delta": {"content": "A"}, "logprobs": lp("A")}]),
            chunk([{"index": 0, "delta": {"content": "a"}, "logprobs": lp("a"), "finish_reason": "length"}]),
        ]
    )
    assert not fold.finished  # choice 1 has no finish reason yet: not a whole answer
    fold.add(chunk([{"index": 1, "delta": {"content": "b"}, "logprobs": lp("b"), "finish_reason": "stop"}]))
    assert fold.finished
    first, second = fold.answer("m")["choices"]
    assert (first["index"], first["message"]["content"], first["finish_reason"]) == (0, "Aa", "length")
    assert [t["token"] for t in first["logprobs"]["content"]] == ["A", "a"]
    assert (second["index"], second["message"]["content"]) == (1, "Bb")
    assert [t["token"] for t in second["logprobs"]["content"]] == ["B", "b"]


def test_legacy_completions() -> None:
    fold = folded(
        [
            {
                "id": "cmpl-1",
                "object": "text_completion",
                "created": 1,
                "model": "qwen",
                "choices": [{"index": 0, "text": "Once", "logprobs": None, "finish_reason": None}],
            },
            {
                "id": "cmpl-1",
                "object": "text_completion",
                "created": 1,
                "model": "qwen",
                "choices": [{"index": 0, "text": " upon", "logprobs": None, "finish_reason": "length"}],
            },
        ],
        chat=False,
    )
    answer = fold.answer("m")
    assert answer["object"] == "text_completion" and answer["model"] == "m"
    assert answer["choices"] == [
        {"index": 0, "text": "Once upon", "logprobs": None, "finish_reason": "length"}
    ]


def test_no_choices_or_no_finish_is_not_finished() -> None:
    assert not folded([]).finished
    assert not folded([chunk([], usage={"prompt_tokens": 1, "completion_tokens": 0})]).finished
    assert not folded([chunk([{"index": 0, "delta": {"content": "half"}}])]).finished


def test_the_usage_or_an_estimate_from_the_text() -> None:
    outcome = Outcome()
    fold = folded(
        [chunk([{"index": 0, "delta": {"content": "four", "reasoning": "xy"}, "finish_reason": "stop"}])]
    )
    note(fold, outcome)
    assert outcome.usage is None and outcome.chars == 6  # llama-cpp-python: no usage in streams
    fold.add(chunk([], usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}))
    note(fold, outcome)
    assert outcome.usage is not None and (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (
        3,
        1,
    )


def test_the_legacy_function_call_is_joined_like_a_tool_call() -> None:
    fold = folded(
        [
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "function_call": {"name": "get", "arguments": ""}},
                    }
                ]
            ),
            chunk([{"index": 0, "delta": {"function_call": {"arguments": '{"a":'}}}]),
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {"function_call": {"arguments": "1}"}},
                        "finish_reason": "function_call",
                    }
                ]
            ),
        ]
    )
    message = fold.answer("m")["choices"][0]["message"]
    assert message["function_call"] == {"name": "get", "arguments": '{"a":1}'}


def test_a_long_answer_folds_in_linear_time() -> None:
    pieces = 200_000  # a long reasoning answer, a few characters an event
    fold = ChunkFold(chat=True)
    started = time.process_time()
    for _ in range(pieces):
        fold.add({"choices": [{"index": 0, "delta": {"content": "abcd", "reasoning_content": "wxyz"}}]})
    fold.add({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    message = fold.answer("m")["choices"][0]["message"]
    assert len(message["content"]) == len(message["reasoning_content"]) == 4 * pieces
    assert time.process_time() - started < 10  # joined as it came, this took minutes


def test_a_choice_field_of_the_wrong_shape_is_left_out() -> None:
    cfg = ProviderConfig(name="vllm", type="openai", base_url="http://127.0.0.1:9/v1")
    fold = ChunkFold(chat=True)
    _event(cfg, fold, b'{"choices": [{"index": 0, "message": "x", "delta": {"content": "hi"}}]}')
    assert fold.answer("m")["choices"][0]["message"]["content"] == "hi"  # the odd field left out
