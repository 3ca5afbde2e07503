"""An OpenAI-compatible upstream's answer passed through to an OpenAI client: its bytes, event by
event as they come, with what corral owes the client on top.

- ``data: [DONE]`` goes out only once the upstream's body has ended cleanly. A connection that
  breaks after it (llama-cpp-python, interrupting a generation, sends the role chunk, ``[DONE]``,
  and drops the connection) ends the client's stream with the in-band error event instead, and
  so does a body that ends without a finish reason: the client is never told an interrupted
  answer is complete. When the body's end is already in, the last events and the end go in one
  write (``Outcome.ended``).
- The usage: corral asks every stream for it (``stream_options.include_usage``, ``forwarded``);
  when the client did not ask, the usage chunk is taken out again, and the ``"usage": null``
  the upstream then adds to the other chunks too. The counts land on ``Outcome.usage``.
- The model name the client asked for (``passthrough.Renamer``), and the events counted, for an
  estimate when no usage comes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from corral.conversation.body import sse_error
from corral.conversation.call import Call, Outcome
from corral.conversation.openai.answers import read_usage
from corral.errors import UpstreamError
from corral.httpclient import TransportError
from corral.providers.passthrough import Renamer
from corral.providers.upstream import Framer, error_detail, stream_failure

if TYPE_CHECKING:
    from corral.config.schema import ProviderConfig
    from corral.httpclient import Response

ERROR_EVENT = b'data: {"error"'
_DONE = b"data: [DONE]"
_COMPACT = (b'"finish_reason":"', b'"usage":{', b',"usage":null', b'"content":""')
_SPACED = (b'"finish_reason": "', b'"usage": {', b', "usage": null', b'"content": ""')


def _spelling(chunk: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """The fields this upstream's JSON spells as it does (compact, or ``json.dumps``' default
    separators, as Python servers such as llama-cpp-python write it), learned from its first
    events: each check then scans a chunk once."""
    head = chunk[:256]
    return _SPACED if b'"object": "' in head or b'"id": "' in head else _COMPACT


def forwarded(call: Call, model: str) -> tuple[bytes, bool]:
    """The body the upstream gets: the client's as corral read it, with the routed model and, for
    a stream, ``include_usage``; and whether corral asked for the usage itself (the client did not)."""
    body = call.body
    if not call.stream:
        return orjson.dumps({**body, "model": model}), False
    options = body.get("stream_options")
    options = options if isinstance(options, dict) else {}
    if options.get("include_usage") is True:
        return orjson.dumps({**body, "model": model}), False
    return orjson.dumps({**body, "model": model, "stream_options": {**options, "include_usage": True}}), True


def error_event_detail(chunk: bytes) -> str:
    """The message of the first error event in ``chunk``."""
    start = chunk.index(ERROR_EVENT) + len(b"data: ")
    end = chunk.find(b"\n", start)
    return error_detail(chunk[start:] if end < 0 else chunk[start:end])


def _usage(chunk: bytes, outcome: Outcome, strip: bool, key: bytes) -> tuple[bytes, int]:
    """Note the usage of the last event in ``chunk`` that has one (a stream carries one, at its
    end); the chunk without that event if it is the usage chunk the client did not ask for (no
    choices), and 1 if it is a usage chunk. Only that event is parsed."""
    at = chunk.rfind(key)
    begin = max(0, chunk.rfind(b"data:", 0, at))
    end = chunk.find(b"\n\n", at)
    end = len(chunk) if end < 0 else end + 2
    try:
        obj: Any = orjson.loads(chunk[chunk.index(b"{", begin) : end])
    except (ValueError, orjson.JSONDecodeError):
        return chunk, 0
    if not isinstance(obj, dict):
        return chunk, 0
    usage = read_usage(obj.get("usage"))
    if usage is not None:
        outcome.usage = usage
    if obj.get("choices"):
        return chunk, 0
    return (chunk[:begin] + chunk[end:] if strip else chunk), 1


async def relay(
    cfg: ProviderConfig,
    resp: Response,
    outcome: Outcome,
    requested: str,
    strip_usage: bool,
    served: str | None = None,
) -> AsyncIterator[bytes]:
    """The upstream's stream for its client (see the module's docstring)."""
    rename = Renamer(requested, served)
    events = Framer(cfg.max_line_bytes, sse=True)
    sent = finished = False
    held = b""  # the upstream's [DONE], until its body has ended cleanly
    pending = b""  # the last events, when the body's end came with them
    counted = 0  # its events, a token each but the role and finish ones
    spelling: tuple[bytes, bytes, bytes, bytes] | None = None
    nulls = strip_usage  # "usage": null to take out (until the first events show there is none)
    try:
        try:
            async for data in resp.chunks():
                chunk = events.feed(data)
                if chunk and not held:  # bytes after [DONE] are dropped
                    if chunk.rfind(ERROR_EVENT) >= 0:  # an error ends a stream: from the end
                        if not sent:  # nothing reached the client yet: let the engine fail over
                            raise UpstreamError(
                                cfg.name,
                                f"sent an error event: {error_event_detail(chunk)}",
                                code="upstream_error",
                            )
                        outcome.error = f"Upstream '{cfg.name}' sent an error event mid-stream."
                    if spelling is None:
                        spelling = _spelling(chunk)
                        if chunk.find(spelling[3], 0, 512) >= 0:  # the role chunk: no token
                            counted -= 1
                        nulls = strip_usage and spelling[2] in chunk
                    counted += chunk.count(b"data:")
                    # the finish, the usage and [DONE] come last: searched from the end
                    if not finished and chunk.rfind(spelling[0]) >= 0:
                        finished = True
                        counted -= 1  # the finish event
                    if finished and chunk.rfind(spelling[1]) >= 0:  # the usage comes after the finish
                        chunk, usage_events = _usage(chunk, outcome, strip_usage, spelling[1])
                        counted -= usage_events
                    if nulls:  # the "usage": null the upstream added once corral asked
                        chunk = chunk.replace(spelling[2], b"")
                    cut = chunk.rfind(_DONE)
                    if cut >= 0:
                        held, chunk = chunk[cut:], chunk[:cut]
                    chunk = rename(chunk)
                    if resp.complete and not events.held:
                        pending = chunk  # the body is over: its end goes out with these events
                        continue  # (the loop ends at the next read: no generator left open)
                    if chunk:
                        sent = True
                        yield chunk
                events.check()
            rest = events.rest()  # the body ended inside an event: it goes as it is
            if rest and not held:
                pending += rename(rest)
        except (TransportError, TimeoutError) as exc:
            failure = stream_failure(cfg, exc, started=sent)
            if not sent:  # nothing reached the client: fail over instead
                raise failure from None
            outcome.pieces = max(0, counted)
            outcome.error = failure.message
            outcome.ended = True
            yield b"\n\n" + sse_error(outcome.error, code=failure.code or "upstream_stream_interrupted")
            return
        outcome.pieces = max(0, counted - (1 if held else 0))  # not the [DONE]
        if outcome.error is not None:
            end = b""  # the upstream's error event went out: no [DONE] after it
        elif finished:
            end = held
        elif not sent and not pending.strip():
            raise UpstreamError(
                cfg.name, "ended the stream without an answer.", code="upstream_stream_interrupted"
            )
        else:
            outcome.error = (
                f"Upstream '{cfg.name}' ended the stream without a finish reason; the answer is incomplete."
            )
            end = sse_error(outcome.error, code="upstream_stream_interrupted")
        out = pending + end
        outcome.ended = True
        if out:
            yield out
    finally:
        resp.close()  # read to its end: a no-op; cut short (client gone): the connection goes
