"""POST /admin/playground/chat: an OpenAI chat-completions call made from the control plane,
for the caller (a key, or the console's session), through the data plane's own handler.

The request runs ``OpenAIRoutes.serve`` (the same checks, engine, limits and usage record as
``/v1/chat/completions``) over a ``ControlExchange``. The answer carries the usual
``x-corral-provider``, ``-model``, ``-attempts`` and ``-fallback`` headers; a stream ends, after
``data: [DONE]``, with one ``event: corral`` whose data says what the call cost (tokens, and
whether they were estimated; USD; time to first byte and in total). A whole (non-stream)
answer carries the same object in the ``x-corral-usage`` header. That event is corral's alone:
an upstream's stream (relayed as it came from an OpenAI-type upstream) loses its own named
events on the way, and corral's event starts on a fresh line, whatever the upstream's last
bytes were, so an upstream cannot forge what the console shows as provider and cost.

``/console/api/chat`` (``corral.console``) is the same handler for a user-scope session: there
the caller needs any valid key, here admin scope like every route under /admin.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from aiohttp import web

from corral.accounting.tokens import tokens_of
from corral.console.exchange import ControlExchange
from corral.core.call import Endpoint, Reply
from corral.http.auth import Authenticator
from corral.http.openai_routes import OpenAIRoutes
from corral.http.parts import Parts
from corral.keys.principal import Principal

USAGE_HEADER = "x-corral-usage"
_EVENT = b"event"


def usage_event(data: Mapping[str, Any]) -> bytes:
    """corral's own event, after a blank line: whatever came before, it begins a new event."""
    return b"\n\nevent: corral\ndata: " + orjson.dumps(data) + b"\n\n"


async def without_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """An SSE stream without its named events: a block (lines up to a blank one) with an
    ``event`` field loses that line and every line after it in the block; every other byte goes
    on as it came, chunk by chunk. Lines are split at LF, as the console splits them; at most
    the first 6 bytes of a line are held, until they tell what it is."""
    held = b""  # the start of the current line, not judged yet
    keep: bool | None = None  # the current line's fate, once judged
    dropping = False  # inside a block whose event line was dropped
    async for chunk in chunks:
        out = bytearray()
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            stop = len(chunk) if end < 0 else end + 1
            piece, start = chunk[start:stop], stop
            if keep is None:
                held += piece
                kind = _kind(held, end >= 0)
                if kind is None:
                    continue
                dropping = kind == "event" or (dropping and kind != "blank")
                keep = not dropping
                piece, held = held, b""
            if keep:
                out += piece
            if end >= 0:
                keep = None
        if out:
            yield bytes(out)
    if held and not dropping and _kind(held, True) != "event":
        yield held


def _kind(start: bytes, ended: bool) -> str | None:
    """What a line beginning with ``start`` is: "blank", "event" (an ``event`` field), "other";
    None while too little of it is known (``ended``: nothing more of it will come)."""
    if start.startswith((b"\n", b"\r\n")) or (ended and start == b"\r"):
        return "blank"
    if start == b"\r":
        return None
    if not _EVENT.startswith(start[:5]):
        return "other"
    if len(start) <= len(_EVENT):
        return None if not ended else "event" if start.rstrip(b"\r\n") == _EVENT else "other"
    return "event" if start[5:6] in (b":", b"\r", b"\n") else "other"


class PlaygroundRoutes:
    def __init__(self, parts: Parts, auth: Authenticator, max_request_bytes: int) -> None:
        self._parts = parts
        self._auth = auth
        self._openai = OpenAIRoutes(parts, auth, max_request_bytes)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """Admin scope (the /admin route)."""
        return await self.run(request, self._auth.admin(request))

    async def chat_as_caller(self, request: web.Request) -> web.StreamResponse:
        """Any valid key or session (the console's own route)."""
        return await self.run(request, self._auth.check(request))

    async def run(self, request: web.Request, who: Principal) -> web.StreamResponse:
        started = time.monotonic()

        def report(reply: Reply) -> bytes:
            info = self.usage(reply, started)
            if reply.chunks is None:
                reply.headers[USAGE_HEADER] = orjson.dumps(info).decode()
            return usage_event(info)

        ex = ControlExchange(request, who, report, without_events)
        await self._openai.serve(ex, Endpoint.CHAT)
        return ex.answer()

    def usage(self, reply: Reply, started: float) -> dict[str, Any]:
        """What the call cost, computed as its usage record computes it."""
        served = reply.served
        first = reply.outcome.first_byte_at
        now = time.monotonic()
        counts = tokens_of(reply.outcome)
        prompt, completion = counts or (0, 0)
        cost = None
        acct = self._parts.accountant
        if acct is not None and served is not None:
            state = self._parts.gateway.fleet.states.get(served.provider)
            ptype = state.type if state else None
            cost = acct.prices.cost(served.model, ptype, prompt, completion, served.provider)
        return {
            "provider": served.provider if served else None,
            "model": served.model if served else None,
            "attempts": served.attempts if served else 0,
            "fallback": served.fallback if served else None,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "estimated": counts is None,
            "cost_usd": cost,
            "ttft_ms": round(((first or now) - started) * 1000, 1),
            "latency_ms": round((now - started) * 1000, 1),
        }
