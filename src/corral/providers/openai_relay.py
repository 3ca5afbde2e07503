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
_DONE = (b"data: [DONE]", b"data:[DONE]")
_FINISHED = (b'"finish_reason":"', b'"finish_reason": "')
_USAGE = (b'"usage":{', b'"usage": {')
_NULL_USAGE = (b',"usage":null', b', "usage": null')


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


def _done_at(chunk: bytes) -> int:
    for marker in _DONE:
        at = chunk.find(marker)
        if at >= 0:
            return at
    return -1


def _usage(chunk: bytes, outcome: Outcome, strip: bool) -> tuple[bytes, int]:
    """Note the usage in ``chunk``; without the usage events the client did not ask for (and how
    many were taken out)."""
    kept: list[bytes] = []
    dropped = 0
    for event in chunk.split(b"\n\n"):
        if any(key in event for key in _USAGE):
            try:
                obj: Any = orjson.loads(event[event.index(b"{") :])
            except (ValueError, orjson.JSONDecodeError):
                kept.append(event)
                continue
            usage = read_usage(obj.get("usage")) if isinstance(obj, dict) else None
            if usage is not None:
                outcome.usage = usage
            if strip and isinstance(obj, dict) and not obj.get("choices"):
                dropped += 1
                continue
        kept.append(event)
    return b"\n\n".join(kept), dropped


async def relay(
    cfg: ProviderConfig, resp: Response, outcome: Outcome, requested: str, strip_usage: bool
) -> AsyncIterator[bytes]:
    """The upstream's stream for its client (see the module's docstring)."""
    rename = Renamer(requested)
    events = Framer(cfg.max_line_bytes, sse=True)
    sent = finished = False
    held = b""  # the upstream's [DONE], until its body has ended cleanly
    pending = b""  # the last events, when the body's end came with them
    counted = 0
    try:
        try:
            async for data in resp.chunks():
                chunk = events.feed(data)
                if chunk and not held:  # bytes after [DONE] are dropped
                    if ERROR_EVENT in chunk:
                        if not sent:  # nothing reached the client yet: let the engine fail over
                            raise UpstreamError(
                                cfg.name,
                                f"sent an error event: {error_event_detail(chunk)}",
                                code="upstream_error",
                            )
                        outcome.error = f"Upstream '{cfg.name}' sent an error event mid-stream."
                    counted += chunk.count(b"data:")
                    if not finished and (_FINISHED[0] in chunk or _FINISHED[1] in chunk):
                        finished = True
                    if _USAGE[0] in chunk or _USAGE[1] in chunk:
                        chunk, dropped = _usage(chunk, outcome, strip_usage)
                        counted -= dropped
                    elif strip_usage:
                        for null in _NULL_USAGE:
                            if null in chunk:
                                chunk = chunk.replace(null, b"")
                    cut = _done_at(chunk)
                    if cut >= 0:
                        held, chunk = chunk[cut:], chunk[:cut]
                    chunk = rename(chunk)
                    if resp.complete and not events.held:
                        pending = chunk  # the body is over: its end goes out with these events
                        break
                    if chunk:
                        sent = True
                        yield chunk
                events.check()
            else:
                rest = events.rest()  # the body ended inside an event: it goes as it is
                pending = b"" if held else rename(rest)
        except (TransportError, TimeoutError) as exc:
            failure = stream_failure(cfg, exc, started=sent)
            if not sent:  # nothing reached the client: fail over instead
                raise failure from None
            outcome.error = failure.message
            outcome.ended = True
            yield b"\n\n" + sse_error(outcome.error, code=failure.code or "upstream_stream_interrupted")
            return
        outcome.pieces = max(0, counted - 2 - (1 if held else 0))  # not the role and finish events
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
