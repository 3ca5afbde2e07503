"""The conversation model, answer side: a whole answer, the events of a streamed one, and usage.

An upstream adapter reads its upstream's answer into an ``Answer`` (or ``Embeddings``), or its
stream into ``Event``s; a surface writes them out in its client's API. A stream is any number of
``Delta``s, then exactly one of:

- ``Finish``: the answer is complete, which an adapter says only once the upstream's body ended
  cleanly after a finish reason (an upstream's ``[DONE]`` is held until then);
- ``Failure``: it is not (the connection broke, the upstream reported an error, or it ended
  without a finish reason); what was streamed before is all the client gets.

Nothing follows either. Tool calls stream as ``ToolCallDelta`` fragments keyed by ``index``
(OpenAI's way: an id and name first, the arguments' JSON text in pieces); an adapter whose
upstream sends whole calls sends each as one fragment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import orjson

from corral.conversation.request import ToolCall

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(slots=True, frozen=True)
class Usage:
    """Tokens of one call. ``estimated``: corral counted them from the text, the upstream did not
    say (or said 0 for an answer that had text, as engines that ignore ``include_usage`` do)."""

    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True, frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int] | None = None
    top: tuple[TokenLogprob, ...] | None = None  # the most likely alternatives (None: not sent)


@dataclass(slots=True)
class Answer:
    """A whole (not streamed) answer: choice 0, as corral asks every upstream for one."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish: FinishReason | None = None
    usage: Usage | None = None
    logprobs: list[TokenLogprob] | None = None
    refusal: str = ""  # the model declined, saying this (OpenAI's ``refusal``)


@dataclass(slots=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int = 0


@dataclass(slots=True)
class ToolCallDelta:
    index: int  # which call of the answer this is a piece of
    id: str | None = None
    name: str = ""
    arguments: str = ""  # a piece of the arguments' JSON text


@dataclass(slots=True)
class Delta:
    """A piece of a streamed answer."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCallDelta] | None = None
    logprobs: list[TokenLogprob] | None = None


@dataclass(slots=True, frozen=True)
class Finish:
    reason: FinishReason
    usage: Usage | None = None


@dataclass(slots=True, frozen=True)
class Failure:
    message: str
    code: str = "upstream_stream_interrupted"


Event = Delta | Finish | Failure


def upstream_error_message(value: object) -> str:
    """The message of an error an upstream reported in-band: its text, or its JSON."""
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        value = value["message"]
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return f"Upstream reported an error mid-stream: {text or 'no details given'}"
