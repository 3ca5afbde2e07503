"""A streamed answer's events folded into one ``Answer``, for a client that asked for a whole
answer from an upstream corral streams from anyway (so the first-token deadline and stall
detection hold for that call too).

Text, reasoning and logprobs are joined in the order they came. Tool-call fragments are put
together by ``index``: the id and the name from the first fragment that has them, the pieces
of the arguments' JSON text joined and then read as an object, as a whole answer's arguments
are. ``Finish`` gives the finish reason and the usage. A ``Failure`` ends the fold: the caller
raises it as the upstream's error, since an answer that did not finish is never handed on as
if it were whole.
"""

from __future__ import annotations

from collections.abc import Iterable

from corral.conversation.answer import Answer, Delta, Event, Failure, Finish, TokenLogprob, ToolCallDelta
from corral.conversation.request import ToolCall


class AnswerFold:
    """Events in (``add``), one ``Answer`` out (``answer``), once a ``Finish`` came."""

    __slots__ = ("_calls", "_logprobs", "_reasoning", "_text", "finish")

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._logprobs: list[TokenLogprob] | None = None
        self._calls: dict[int, tuple[list[str | None], list[str]]] = {}  # index -> ([id, name], arguments)
        self.finish: Finish | None = None

    def add(self, events: Iterable[Event]) -> Failure | None:
        """Fold ``events``; the first ``Failure`` among them is returned (nothing after it counts)."""
        for event in events:
            if isinstance(event, Delta):
                self._delta(event)
            elif isinstance(event, Finish):
                self.finish = event
            else:
                return event
        return None

    def _delta(self, delta: Delta) -> None:
        if delta.text:
            self._text.append(delta.text)
        if delta.reasoning:
            self._reasoning.append(delta.reasoning)
        if delta.logprobs:
            if self._logprobs is None:
                self._logprobs = []
            self._logprobs.extend(delta.logprobs)
        for piece in delta.tool_calls or ():
            self._call(piece)

    def _call(self, piece: ToolCallDelta) -> None:
        names, arguments = self._calls.setdefault(piece.index, ([None, None], []))
        if piece.id and names[0] is None:
            names[0] = piece.id
        if piece.name and names[1] is None:
            names[1] = piece.name
        if piece.arguments:
            arguments.append(piece.arguments)

    def answer(self) -> Answer:
        """The whole answer; only once ``finish`` is set."""
        if self.finish is None:
            raise RuntimeError("AnswerFold.answer before the stream finished")
        calls = []
        for place, index in enumerate(sorted(self._calls)):
            (call_id, name), pieces = self._calls[index]
            arguments = ToolCall("", "".join(pieces)).arguments_object() if pieces else {}
            calls.append(ToolCall(name or "", arguments, id=call_id, index=place))
        return Answer(
            text="".join(self._text),
            reasoning="".join(self._reasoning),
            tool_calls=calls,
            finish=self.finish.reason,
            usage=self.finish.usage,
            logprobs=self._logprobs,
        )


__all__ = ["AnswerFold"]
