"""An Anthropic Messages API emulator (aiohttp): the hosted API as its reference documents it.

``POST /v1/messages`` (whole or streamed as named SSE events), ``POST /v1/messages/count_tokens``,
``GET /v1/models`` and ``GET /v1/models/{id}``. Every request needs ``anthropic-version`` and,
when ``api_key`` is set, the key as ``x-api-key`` (or ``Authorization: Bearer``, which the
current SDK sends). Errors use Anthropic's envelope and statuses (529 for overloaded); a
failure after a stream started is an in-band ``error`` event. Bodies are validated as the API
validates them (``anthropic_validate``); replies are deterministic (``anthropic_gen``).

Serve it with ``ServerThread(emu.app).start()``; the SDK's ``base_url`` is ``server.url``.
Faults (``common.Fault``), ``token_delay`` and ``models`` may be changed from the test thread;
``hold`` (a ``threading.Event``) keeps every answer's first byte back until the test sets it (at
most ``HOLD_SECONDS``): an upstream slow to start, on cue.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.emulators import anthropic_gen as gen
from tests.emulators.anthropic_validate import Refused, check_count, check_create
from tests.emulators.common import (
    PRE_RESPONSE_FAULTS,
    STREAM_FAULTS,
    Fault,
    RecordedRequest,
    Recorder,
    read_json,
    select_fault,
    write_stream,
)

SSE = "text/event-stream; charset=utf-8"
MAX_BODY = 32 * 1024 * 1024  # the Messages API's request size limit
INFERENCE_PATHS = {"/v1/messages", "/v1/messages/count_tokens"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
HOLD_SECONDS = 30.0  # the longest ``hold`` keeps an answer back
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class AnthropicModel:
    id: str
    display_name: str = ""
    created_at: str = "2025-09-29T00:00:00Z"
    thinking: bool = True  # supports extended thinking

    def as_json(self) -> dict[str, Any]:
        name = self.display_name or self.id.replace("-", " ").title()
        return {"type": "model", "id": self.id, "display_name": name, "created_at": self.created_at}


class AnthropicEmulator:
    """Emulated Anthropic API. Attributes the test may change at any time: ``models``
    (id -> AnthropicModel), ``fault`` / ``model_faults`` (id -> Fault), ``token_delay``
    (seconds between streamed events). ``disconnects`` counts answers cut short by the client."""

    def __init__(
        self,
        models: Iterable[str | AnthropicModel] = ("claude-sonnet-4-5", "claude-haiku-4-5"),
        *,
        api_key: str | None = None,
        token_delay: float = 0.0,
    ) -> None:
        specs = [AnthropicModel(m) if isinstance(m, str) else m for m in models]
        self.models: dict[str, AnthropicModel] = {m.id: m for m in specs}
        self.api_key = api_key
        self.token_delay = token_delay
        self.fault: Fault | None = None
        self.model_faults: dict[str, Fault] = {}
        self.disconnects = 0
        self.hold: threading.Event | None = None  # set: answers wait for it before their first byte
        self.statuses: list[tuple[str, int]] = []  # (path, status) of every answer, in order
        self._recorder = Recorder()
        self._ids = itertools.count(1)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._recorder.requests

    @property
    def in_flight(self) -> int:
        return self._recorder.in_flight

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def app(self) -> web.Application:
        middlewares = [
            self._envelope,
            self._size_limit,
            self._recorder.middleware,
            self._auth,
            self._pre_faults,
        ]
        app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_get("/v1/models/{model_id}", self.get_model)
        return app

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_emu{next(self._ids):020d}"

    def error(self, status: int, message: str, type_: str | None = None) -> web.Response:
        request_id = self._next_id("req")
        body = {
            "type": "error",
            "error": {"type": type_ or ERROR_TYPES.get(status, "api_error"), "message": message},
            "request_id": request_id,
        }
        return web.json_response(body, status=status, headers={"request-id": request_id})

    # ------------------------------------------------------------------ middlewares
    @web.middleware
    async def _envelope(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """aiohttp's own 404/405 answers in Anthropic's envelope; every status recorded."""
        resp = await self._enveloped(request, handler)
        self.statuses.append((request.path, resp.status))
        return resp

    async def _enveloped(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return self.error(404, "Not Found")
        except web.HTTPRequestEntityTooLarge:
            return self.error(413, "Request exceeds the maximum allowed number of bytes.")
        except web.HTTPMethodNotAllowed:
            return self.error(405, "Method Not Allowed", "invalid_request_error")

    @web.middleware
    async def _size_limit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if (request.content_length or 0) > MAX_BODY:
            return self.error(413, "Request exceeds the maximum allowed number of bytes.")
        return await handler(request)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.api_key is not None:
            key = request.headers.get("x-api-key")
            bearer = request.headers.get("Authorization", "")
            if key is None and bearer.startswith("Bearer "):
                key = bearer.removeprefix("Bearer ")
            if key is None:
                return self.error(401, "x-api-key header is required")
            if key != self.api_key:
                return self.error(401, "invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if version is None:
            return self.error(400, "anthropic-version: header is required")
        if not _VERSION.match(version):
            return self.error(400, f'anthropic-version: "{version}" is not a valid version')
        return await handler(request)

    def _fault_for(self, request: web.Request, model: Any, kinds: tuple[str, ...]) -> Fault | None:
        name = str(model or "")
        return select_fault(self.fault, self.model_faults, name, request.path, INFERENCE_PATHS, kinds)

    @web.middleware
    async def _pre_faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body, _ = await read_json(request)
        fault = self._fault_for(request, (body or {}).get("model"), PRE_RESPONSE_FAULTS)
        if fault is None or not fault.claim():
            return await handler(request)
        if fault.kind == "hang_before_headers":
            await asyncio.sleep(fault.seconds)
            return await handler(request)
        if fault.kind == "busy":
            resp = self.error(fault.status or 529, fault.message or "Overloaded")
        else:
            resp = self.error(fault.status or 500, fault.message or "Internal server error")
        if fault.retry_after is not None:
            resp.headers["retry-after"] = f"{fault.retry_after:g}"
        return resp

    # ------------------------------------------------------------------ helpers
    async def _valid_body(
        self, request: web.Request, count: bool
    ) -> tuple[dict[str, Any], AnthropicModel] | web.Response:
        body, problem = await read_json(request)
        if body is None:
            return self.error(400, problem or "bad request")
        try:
            (check_count if count else check_create)(body, gen.signature_of)
        except Refused as refused:
            return self.error(refused.status, refused.message, refused.type)
        model = self.models.get(body["model"])
        if model is None:
            return self.error(404, f"model: {body['model']}")
        thinking = (body.get("thinking") or {}).get("type")
        if thinking in ("enabled", "adaptive") and not model.thinking:
            return self.error(
                400, f"`thinking` is not supported by {model.id}; remove it or pick a thinking model"
            )
        return body, model

    async def _nonstream_fault(self, request: web.Request, model: str) -> web.Response | None:
        fault = self._fault_for(request, model, STREAM_FAULTS)
        if fault is None or not fault.claim():
            return None
        if fault.kind == "stall_midstream":
            await asyncio.sleep(fault.seconds)
            return None
        if fault.kind == "drop_midstream" and request.transport is not None:
            request.transport.abort()
        return self.error(500, fault.message or "Internal server error")

    # ------------------------------------------------------------------ endpoints
    async def messages(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._messages(request)
        except (ConnectionError, asyncio.CancelledError):
            self.disconnects += 1
            raise

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        hold = self.hold
        if hold is not None:
            await asyncio.to_thread(hold.wait, HOLD_SECONDS)
        parsed = await self._valid_body(request, count=False)
        if isinstance(parsed, web.Response):
            return parsed
        body, model = parsed
        result = gen.plan(body, model.thinking)
        message_id = self._next_id("msg")
        if not body.get("stream"):
            failed = await self._nonstream_fault(request, model.id)
            if failed is not None:
                return failed
            headers = {"request-id": self._next_id("req")}
            return web.json_response(gen.message(result, model.id, message_id), headers=headers)
        return await write_stream(
            request,
            gen.events(result, model.id, message_id),
            content_type=SSE,
            fault=self._fault_for(request, model.id, STREAM_FAULTS),
            token_delay=self.token_delay,
            error_chunk=lambda message: gen.error_event("overloaded_error", message),
        )

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        parsed = await self._valid_body(request, count=True)
        if isinstance(parsed, web.Response):
            return parsed
        body, _ = parsed
        return web.json_response({"input_tokens": gen.input_tokens(body)})

    async def list_models(self, request: web.Request) -> web.Response:
        data = [m.as_json() for m in list(self.models.values())]
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return self.error(400, "limit: Input should be a valid integer")
        after = request.query.get("after_id")
        if after is not None:
            ids = [m["id"] for m in data]
            data = data[ids.index(after) + 1 :] if after in ids else []
        page = data[: max(1, min(limit, 1000))]
        return web.json_response(
            {
                "data": page,
                "has_more": len(data) > len(page),
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            }
        )

    async def get_model(self, request: web.Request) -> web.Response:
        model = self.models.get(request.match_info["model_id"])
        if model is None:
            return self.error(404, f"model: {request.match_info['model_id']}")
        return web.json_response(model.as_json())
