"""A streamed answer's events folded into one Answer (``conversation.fold``)."""

from __future__ import annotations

import pytest

from corral.conversation.answer import Delta, Failure, Finish, TokenLogprob, ToolCallDelta, Usage
from corral.conversation.fold import AnswerFold


def test_text_reasoning_logprobs_and_the_finish() -> None:
    fold = AnswerFold()
    assert fold.add([Delta(text="Hel", reasoning="mm", logprobs=[TokenLogprob("Hel", -0.5)])]) is None
    assert (
        fold.add([Delta(text="lo", logprobs=[TokenLogprob("lo", -0.1)]), Finish("length", Usage(4, 2))])
        is None
    )
    answer = fold.answer()
    assert (answer.text, answer.reasoning, answer.finish, answer.usage) == (
        "Hello",
        "mm",
        "length",
        Usage(4, 2),
    )
    assert [t.token for t in answer.logprobs or []] == ["Hel", "lo"]
    assert answer.tool_calls == []


def test_tool_call_fragments_by_index() -> None:
    fold = AnswerFold()
    fold.add([Delta(tool_calls=[ToolCallDelta(1, "call_b", "get_time", "{}")])])
    fold.add([Delta(tool_calls=[ToolCallDelta(0, "call_a", "get_weather", '{"city"')])])
    fold.add([Delta(tool_calls=[ToolCallDelta(0, None, "", ': "Paris"}')]), Finish("tool_calls")])
    calls = fold.answer().tool_calls
    assert [(c.id, c.name, c.arguments, c.index) for c in calls] == [
        ("call_a", "get_weather", {"city": "Paris"}, 0),
        ("call_b", "get_time", {}, 1),
    ]


def test_a_failure_ends_the_fold_and_there_is_no_answer() -> None:
    fold = AnswerFold()
    failure = Failure("broke off", "upstream_stream_interrupted")
    assert fold.add([Delta(text="half"), failure, Finish("stop")]) is failure
    assert fold.finish is None
    with pytest.raises(RuntimeError):
        fold.answer()
