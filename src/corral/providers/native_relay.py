"""A Messages or Responses answer passed through to a client of the same API: the upstream's bytes,
in whole SSE events as they come, with what corral owes the client on top.

Used by the ``anthropic`` type for ``/v1/messages`` and by an OpenAI-compatible provider that
declares the surface (``surfaces: [messages, responses]``: vLLM >= 0.11.1, Ollama's ``/v1``).

- The model name the client asked for (``passthrough.Renamer``: the ``model`` of Messages'
  ``message_start``, of each Responses event's response object).
- An ``error`` event (or ``response.failed``) before anything reached the client raises, so the
  engine fails over; a later one is noted on the outcome.
- A body that ends (cleanly or not) before the API's last event (``message_stop``;
  ``response.completed`` or ``.incomplete``) ends the client's stream with the API's in-band
  error event: an interrupted answer is never passed on as a whole one.
- The usage: Messages' counts from ``message_start`` and ``message_delta``, Responses' from the
  final event's response; and the text events counted, for an estimate when no usage comes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from corral.conversation.answer import Usage
from corral.conversation.anthropic import answers as messages_answers
from corral.conversation.call import Outcome, Surface
from corral.conversation.responses import answers as responses_answers
from corral.errors import UpstreamError
from corral.httpclient import TransportError
from corral.providers.passthrough import Renamer
from corral.providers.upstream import Framer, error_detail, stream_failure

if TYPE_CHECKING:
    from corral.config.schema import ProviderConfig
    from corral.httpclient import Response


@dataclass(frozen=True, slots=True)
class Dialect:
    """What the relay looks for in one API's events."""

    surface: Surface
    ends: tuple[bytes, ...]  # the events after which the answer is whole
    errors: tuple[bytes, ...]  # the events that report a failure
    delta: bytes  # the event that carries a piece of generated text
    usage: tuple[bytes, ...]  # an event holding token counts contains one of these

    def error_event(self, message: str, events: int) -> bytes:
        """The API's in-band error event, for a stream corral has to end itself."""
        if self.surface is Surface.MESSAGES:
            data: dict[str, Any] = {"type": "error", "error": {"type": "api_error", "message": message}}
        else:
            data = {
                "type": "error",
                "code": "upstream_stream_interrupted",
                "message": message,
                "param": None,
                "sequence_number": events,
            }
        return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"


MESSAGES: Final = Dialect(
    Surface.MESSAGES,
    ends=(b"event: message_stop",),
    errors=(b"event: error",),
    delta=b"event: content_block_delta",
    usage=(b'"usage"',),
)
RESPONSES: Final = Dialect(
    Surface.RESPONSES,
    ends=(b"event: response.completed", b"event: response.incomplete"),
    errors=(b"event: error", b"event: response.failed"),
    delta=b"event: response.output_text.delta",
    usage=(b"event: response.completed", b"event: response.incomplete"),
)
DIALECTS: Final = {Surface.MESSAGES: MESSAGES, Surface.RESPONSES: RESPONSES}


def note_whole(surface: Surface, body: bytes, outcome: Outcome) -> None:
    """The token counts of a whole Messages or Responses answer."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    if isinstance(data, dict):
        read = messages_answers.read_usage if surface is Surface.MESSAGES else responses_answers.read_usage
        outcome.usage = read(data.get("usage"))


def _note_usage(dialect: Dialect, chunk: bytes, outcome: Outcome) -> None:
    """The counts in Messages' ``message_start`` (input) and ``message_delta`` (output, running)
    events, or in a Responses answer's final event."""
    for line in chunk.split(b"\n"):
        if not line.startswith(b"data:") or b'"usage"' not in line:
            continue
        try:
            event: Any = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        inner = event.get("message") if dialect is MESSAGES else event.get("response")
        raw = inner.get("usage") if isinstance(inner, dict) else event.get("usage")
        read = messages_answers.read_usage if dialect is MESSAGES else responses_answers.read_usage
        usage = read(raw)
        if usage is None:
            continue
        known = outcome.usage
        prompt = usage.prompt_tokens or (known.prompt_tokens if known else 0)
        completion = usage.completion_tokens or (known.completion_tokens if known else 0)
        outcome.usage = Usage(prompt, completion)


def _error_detail(dialect: Dialect, chunk: bytes) -> str:
    for marker in dialect.errors:
        at = chunk.find(marker)
        if at >= 0:
            start = chunk.find(b"data:", at)
            line = chunk[start + 5 :].split(b"\n", 1)[0] if start >= 0 else b""
            return error_detail(line.strip())
    return "no details given"


async def relay(
    cfg: ProviderConfig,
    resp: Response,
    outcome: Outcome,
    requested: str,
    dialect: Dialect,
    served: str | None = None,
) -> AsyncIterator[bytes]:
    """The upstream's stream for its client (see the module's docstring); ``served``, the
    upstream's name for the model (nothing to rename when the client asked for it so)."""
    rename = Renamer(requested, served)
    frames = Framer(cfg.max_line_bytes, sse=True)
    sent = ended = False
    events = 0
    try:
        try:
            async for data in resp.chunks():
                chunk = frames.feed(data)
                if chunk:
                    if any(marker in chunk for marker in dialect.errors):
                        if not sent:  # nothing reached the client yet: let the engine fail over
                            detail = _error_detail(dialect, chunk)
                            raise UpstreamError(
                                cfg.name, f"sent an error event: {detail}", code="upstream_error"
                            )
                        outcome.error = f"Upstream '{cfg.name}' sent an error event mid-stream."
                    events += chunk.count(b"event:")
                    outcome.pieces += chunk.count(dialect.delta)
                    if any(marker in chunk for marker in dialect.usage):
                        _note_usage(dialect, chunk, outcome)
                    ended = outcome.error is not None or any(marker in chunk for marker in dialect.ends)
                    outcome.ended = ended  # the answer's last event: the client's stream ends with it
                    sent = True
                    yield rename(chunk)
                    if ended:
                        break  # what may follow it (the body's end marker) is drained on release
                frames.check()
            else:
                rest = frames.rest()  # the body ended inside an event: it goes as it is
                if rest:
                    ended = ended or any(marker in rest for marker in dialect.ends)
                    sent = True
                    yield rename(rest)
        except (TransportError, TimeoutError) as exc:
            if ended:  # the answer was whole: what broke after its last event costs only the connection
                return
            failure = stream_failure(cfg, exc, started=sent)
            if not sent:  # nothing reached the client: fail over instead
                raise failure from None
            outcome.error = failure.message
            outcome.ended = True
            yield dialect.error_event(outcome.error, events)
            return
        if ended:
            return
        if not sent:
            raise UpstreamError(
                cfg.name, "ended the stream without an answer.", code="upstream_stream_interrupted"
            )
        outcome.error = f"Upstream '{cfg.name}' ended the stream early; the answer is incomplete."
        outcome.ended = True
        yield dialect.error_event(outcome.error, events)
    finally:
        if ended:
            resp.release()  # the rest of the body (its end marker) is drained, the connection kept
        else:
            resp.close()  # cut short (client gone, or broken): the connection goes
