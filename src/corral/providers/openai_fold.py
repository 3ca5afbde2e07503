"""An OpenAI client's non-streamed chat or completions call to an OpenAI-compatible server,
streamed from the server and folded back into the one JSON answer the client asked for.

A server answering a whole request sends nothing until the whole answer is done, so a hung
vLLM would only be caught by the provider's full ``timeout``. Streamed, its first event comes at
the first token: the first-token deadline covers the headers and that event, as it does for an
Ollama call, and the engine fails over in time. Nothing has reached the client while the answer
is folded, so an error event, a broken connection or a body that ends before every choice has
its finish reason is raised (the engine fails over) instead of handed on as a complete answer.
Only when there is somewhere to fail over to (``Attempt.elsewhere``): folding costs about what
relaying a stream does, and the last deployment left is better asked for the whole answer.

The fold keeps what the server sent, fields corral does not know included: the chunks' top-level
fields (the last value that is not null wins; ``object`` becomes the whole answer's), each
choice's ``delta`` made its ``message`` (text fields joined, ``role`` kept once, tool-call
fragments joined by ``index``), a completion's ``text`` joined, ``logprobs`` lists joined, the
usage of the usage chunk. Answers are bounded like any whole answer (``max_response_bytes`` over
the stream's bytes) and each event like any stream's (``max_line_bytes``).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import orjson

from corral.conversation.answer import upstream_error_message
from corral.conversation.call import Call, Outcome
from corral.conversation.openai.answers import read_usage
from corral.conversation.openai.streams import SSEDecoder
from corral.errors import UpstreamError
from corral.httpclient import TooLarge
from corral.providers.upstream import Framer, incomplete, json_object, no_first_token, upstream_errors

if TYPE_CHECKING:
    from corral.config.schema import ProviderConfig
    from corral.httpclient import Response

_TEXT_KEEP = frozenset({"role"})  # string fields of a delta that are set once, not joined


class _Parts(list[str]):
    """The pieces of a text field, joined once at the end (joining as they come is quadratic)."""


def _text(value: Any) -> Any:
    return "".join(value) if isinstance(value, _Parts) else value


def _length(value: Any) -> int:
    if isinstance(value, _Parts):
        return sum(len(piece) for piece in value)
    return len(value) if isinstance(value, str) else 0


def forwarded(call: Call, model: str) -> bytes:
    """The body the upstream gets: the client's, with the routed model, streamed, with usage."""
    options = call.body.get("stream_options")
    options = options if isinstance(options, dict) else {}
    body = {**call.body, "model": model, "stream": True, "stream_options": {**options, "include_usage": True}}
    return orjson.dumps(body)


class ChunkFold:
    """``chat.completion.chunk`` (or streamed ``text_completion``) objects in, one answer out."""

    __slots__ = ("_chat", "_choices", "_top", "first_at", "usage")

    def __init__(self, *, chat: bool) -> None:
        self._chat = chat
        self._top: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self.usage: Any = None
        self.first_at: float | None = None  # monotonic time the first event came

    def add(self, chunk: dict[str, Any]) -> None:
        for key, value in chunk.items():
            if key == "choices":
                for choice in value if isinstance(value, list) else ():
                    if isinstance(choice, dict):
                        self._choice(choice)
            elif key == "usage":
                if value:
                    self.usage = value
            elif key != "object" and (value is not None or key not in self._top):
                self._top[key] = value

    def _choice(self, choice: dict[str, Any]) -> None:
        index = choice.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else 0
        slot = self._choices.get(index)
        if slot is None:
            body: dict[str, Any] = {"role": "assistant"} if self._chat else {"text": _Parts()}
            slot = self._choices[index] = {"index": index, "message": body} if self._chat else body
            slot["index"] = index
        for key, value in choice.items():
            if key == "delta" and self._chat:
                if isinstance(value, dict):
                    _join_message(slot["message"], value)
            elif key == "text" and not self._chat:
                if isinstance(value, str):
                    slot["text"].append(value)
            elif key == "logprobs":
                _join_logprobs(slot, value)
            elif key in ("delta", "message", "text", "index"):
                continue  # another shape's field, or not an object: nothing to keep
            elif value is not None or key not in slot:
                slot[key] = value

    @property
    def finished(self) -> bool:
        """Every choice has its finish reason (and there is at least one)."""
        return bool(self._choices) and all(c.get("finish_reason") for c in self._choices.values())

    def answer(self, model: str) -> dict[str, Any]:
        """The whole answer, saying ``model`` (the name the client asked for)."""
        top = dict(self._top)
        out: dict[str, Any] = {
            "id": top.pop("id", None),
            "object": "chat.completion" if self._chat else "text_completion",
            "created": top.pop("created", 0),
            "model": model,
        }
        top.pop("model", None)
        choices = [self._choices[i] for i in sorted(self._choices)]
        for choice in choices:
            if not self._chat:
                choice["text"] = _text(choice["text"])
                continue
            message = choice["message"]
            for key, value in message.items():
                message[key] = _text(value)
            for call in message.get("tool_calls") or ():
                call["function"]["arguments"] = _text(call["function"]["arguments"])
            if isinstance(message.get("function_call"), dict):
                message["function_call"]["arguments"] = _text(message["function_call"].get("arguments", ""))
            if not message.get("content") and message.get("tool_calls"):
                message["content"] = None  # as whole answers say it: calls, no text
            message.setdefault("content", None)
            for call in message.get("tool_calls") or ():
                call.pop("_index", None)
                call.setdefault("type", "function")
            choice.setdefault("logprobs", None)
        out["choices"] = choices
        out.update(top)
        if self.usage is not None:
            out["usage"] = self.usage
        return out

    def chars(self) -> int:
        """Characters of text in choice 0 (for an estimate when the server reported no usage)."""
        first = self._choices.get(min(self._choices)) if self._choices else None
        if first is None:
            return 0
        if not self._chat:
            return _length(first.get("text"))
        message = first["message"]
        return sum(_length(v) for k, v in message.items() if k not in _TEXT_KEEP)


def _join_message(message: dict[str, Any], delta: dict[str, Any]) -> None:
    for key, value in delta.items():
        if key == "tool_calls":
            if isinstance(value, list):
                _join_calls(message.setdefault("tool_calls", []), value)
        elif key == "function_call":  # the legacy functions API: one call, in pieces
            if isinstance(value, dict):
                into = message.setdefault("function_call", {"name": "", "arguments": _Parts()})
                _join_function(into, value)
        elif isinstance(value, str) and key not in _TEXT_KEEP:
            before = message.get(key)
            if isinstance(before, _Parts):
                before.append(value)
            else:
                message[key] = _Parts([before, value] if isinstance(before, str) else [value])
        elif value is not None or key not in message:
            message[key] = value


def _join_calls(calls: list[dict[str, Any]], pieces: list[Any]) -> None:
    """Tool-call fragments onto ``calls``, by their ``index``: the id, type and name from the
    first fragment that has them, the arguments' text joined."""
    for piece in pieces:
        if not isinstance(piece, dict):
            continue
        index = piece.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else len(calls)
        call = next((c for c in calls if c["_index"] == index), None)
        if call is None:
            call = {"_index": index, "function": {"name": "", "arguments": _Parts()}}
            calls.append(call)
        for key, value in piece.items():
            if key == "function" and isinstance(value, dict):
                _join_function(call["function"], value)
            elif key != "index" and value is not None and call.get(key) is None:
                call[key] = value


def _join_function(fn: dict[str, Any], piece: dict[str, Any]) -> None:
    """A function's name from the first piece that has one, its arguments' text joined."""
    if isinstance(piece.get("name"), str) and piece["name"] and not fn["name"]:
        fn["name"] = piece["name"]
    args = piece.get("arguments")
    if isinstance(args, str):
        fn["arguments"].append(args)
    elif isinstance(args, dict):  # a few servers send the arguments as an object
        fn["arguments"].append(orjson.dumps(args).decode())


def _join_logprobs(slot: dict[str, Any], value: Any) -> None:
    if not isinstance(value, dict):
        slot.setdefault("logprobs", value)
        return
    into = slot.get("logprobs")
    if not isinstance(into, dict):
        slot["logprobs"] = into = {}
    for key, part in value.items():
        have = into.get(key)
        if isinstance(part, list) and isinstance(have, list):
            have.extend(part)
        elif part is not None or key not in into:
            into[key] = list(part) if isinstance(part, list) else part


async def fold(
    cfg: ProviderConfig, resp: Response, first_by: float | None, first_timeout: float | None, *, chat: bool
) -> ChunkFold:
    """Read the stream of ``resp`` to its clean end into a fold; its first event by the loop time
    ``first_by`` (the deadline of ``first_timeout`` seconds the caller's request started under).
    Raises ``UpstreamError`` for anything but a finished answer; events after ``[DONE]`` are
    ignored, but the body must still end cleanly."""
    folded = ChunkFold(chat=chat)
    frames = Framer(cfg.max_line_bytes, sse=True)
    decoder = SSEDecoder()
    chunks = resp.chunks()
    total = 0
    seen = False  # an event came (the first token, or the role chunk with it)
    done = False  # [DONE] came
    try:
        async with upstream_errors(cfg):
            while True:
                if seen:
                    data = await anext(chunks, None)
                else:
                    try:
                        async with asyncio.timeout_at(first_by):
                            data = await anext(chunks, None)
                    except TimeoutError:
                        raise no_first_token(cfg, first_timeout) from None
                if data is None:
                    break
                total += len(data)
                if total > cfg.max_response_bytes:
                    raise TooLarge("an answer", cfg.max_response_bytes)
                whole = frames.feed(data)
                frames.check()
                for payload in decoder.feed(whole) if whole else ():
                    if not seen:
                        seen, folded.first_at = True, time.monotonic()
                    done = done or _event(cfg, folded, payload)
            for payload in decoder.feed(frames.rest()) + decoder.close():
                done = done or _event(cfg, folded, payload)
    finally:
        if resp.complete:
            resp.release()
        else:
            resp.close()
    if not folded.finished:
        raise incomplete(cfg.name)
    return folded


def _event(cfg: ProviderConfig, folded: ChunkFold, payload: bytes) -> bool:
    """Fold one event's payload (the caller stops calling after ``[DONE]``); True at ``[DONE]``.
    An error event or an unreadable one raises."""
    payload = payload.strip()
    if not payload:
        return False
    if payload == b"[DONE]":
        return True
    data = json_object(cfg.name, payload, "a stream event")
    if data.get("error"):
        raise UpstreamError(cfg.name, upstream_error_message(data["error"]), code="upstream_error")
    try:
        folded.add(data)
    except (AttributeError, TypeError, KeyError) as exc:  # a chunk of a shape no server sends
        raise UpstreamError(
            cfg.name,
            f"sent a stream event corral cannot read ({type(exc).__name__}).",
            code="upstream_bad_response",
        ) from None
    return False


def note(folded: ChunkFold, outcome: Outcome) -> None:
    """What the answer says of its tokens: the server's counts, else how much text it has."""
    outcome.first_token_at = folded.first_at
    outcome.usage = read_usage(folded.usage)
    if outcome.usage is None:
        outcome.chars = folded.chars()


__all__ = ["ChunkFold", "fold", "forwarded", "note"]
