"""An OpenAI-compatible server emulator (aiohttp): chat completions, completions, embeddings, models,
with ``responses=True`` the stateless Responses API (``openai_responses``) and with
``messages=True`` the Anthropic Messages API at ``/v1/messages`` (``anthropic_gen``), both of
which vLLM >= 0.11.1 and Ollama's ``/v1`` serve.

``hold`` (a ``threading.Event``), when set on the emulator, keeps every answer's first byte back
until the test sets the event (at most ``HOLD_SECONDS``): an upstream slow to start, on cue.

Serve it with ``ServerThread(emu.app).start()``; the OpenAI base URL is ``server.url + emu.api_root``.
Replies are deterministic (see ``openai_gen``); faults and delays are plain attributes that the
test thread may change at any time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.emulators import anthropic_gen, openai_responses
from tests.emulators.anthropic_validate import Refused, check_create
from tests.emulators.common import (
    PRE_RESPONSE_FAULTS,
    STREAM_FAULTS,
    Fault,
    RecordedRequest,
    Recorder,
    dumps,
    embedding,
    embedding_base64,
    read_json,
    select_fault,
    word_count,
    write_stream,
)
from tests.emulators.openai_gen import Renderer, plan_chat, plan_completion

SSE = "text/event-stream"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EMBEDDING_DIMENSIONS = 8
HOLD_SECONDS = 30.0  # the longest ``hold`` keeps an answer back


@dataclass
class OpenAIModel:
    id: str
    owned_by: str = "organization-owner"
    created: int = 1_700_000_000
    reasoning: bool = False  # answers reasoning.effort on /v1/responses with a reasoning item

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": self.owned_by}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error(status: int, message: str, type_: str, code: str | None = None) -> web.Response:
    return web.json_response(error_body(message, type_, code), status=status)


def sse(obj: Any) -> bytes:
    return f"data: {dumps(obj)}\n\n".encode()


class OpenAIEmulator:
    """Emulated OpenAI-compatible server. Attributes the test may change at any time:

    ``models`` (id -> OpenAIModel), ``fault`` / ``model_faults`` (id -> Fault),
    ``token_delay`` (seconds between streamed events).
    """

    def __init__(
        self,
        models: Iterable[str | OpenAIModel] = ("gpt-4o-mini", "text-embedding-3-small"),
        *,
        api_key: str | None = None,
        path_prefix: str = "",
        served_by: str = "openai-emulator",
        token_delay: float = 0.0,
        responses: bool = False,
        responses_strict: bool = False,
        messages: bool = False,
    ) -> None:
        specs = [OpenAIModel(m) if isinstance(m, str) else m for m in models]
        self.models: dict[str, OpenAIModel] = {m.id: m for m in specs}
        self.api_key = api_key
        self.api_root = path_prefix.rstrip("/") + "/v1"
        self.served_by = served_by
        self.token_delay = token_delay
        self.fault: Fault | None = None
        self.model_faults: dict[str, Fault] = {}
        self._recorder = Recorder()
        self.serves_responses = responses
        self.responses_strict = responses_strict  # refuse unknown Responses parameters (hosted API)
        self.serves_messages = messages
        self.hold: threading.Event | None = None  # set: answers wait for it before their first byte
        endpoints = ("chat/completions", "completions", "embeddings", "responses", "messages")
        self._inference_paths = {f"{self.api_root}/{p}" for p in endpoints}

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._recorder.requests

    @property
    def in_flight(self) -> int:
        return self._recorder.in_flight

    @property
    def max_in_flight(self) -> int:
        return self._recorder.max_in_flight

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        """Requests to ``endpoint`` given relative to the API root, e.g. ``"/chat/completions"``."""
        return [r for r in self.requests if r.path == self.api_root + endpoint]

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._recorder.middleware, self._auth, self._held, self._pre_faults]
        )
        root = self.api_root
        app.router.add_post(f"{root}/chat/completions", self.chat_completions)
        app.router.add_post(f"{root}/completions", self.completions)
        app.router.add_post(f"{root}/embeddings", self.embeddings)
        app.router.add_get(f"{root}/models", self.list_models)
        app.router.add_get(f"{root}/models/{{model_id:.+}}", self.get_model)
        if self.serves_responses:
            app.router.add_post(f"{root}/responses", self.responses)
        if self.serves_messages:
            app.router.add_post(f"{root}/messages", self.messages)
        return app

    # ------------------------------------------------------------------ middlewares
    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.api_key is None:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization header."
            )
            return error(401, message, "invalid_request_error", None)
        if header != f"Bearer {self.api_key}":
            shown = header.removeprefix("Bearer ")[:6]
            return error(
                401, f"Incorrect API key provided: {shown}****.", "invalid_request_error", "invalid_api_key"
            )
        return await handler(request)

    @web.middleware
    async def _pre_faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body, _ = await read_json(request)
        fault = self._fault_for(request, (body or {}).get("model"), PRE_RESPONSE_FAULTS)
        if fault is None or not fault.claim():
            return await handler(request)
        if fault.kind == "hang_before_headers":
            await asyncio.sleep(fault.seconds)
            return await handler(request)
        status = fault.status or (429 if fault.kind == "busy" else 500)
        if fault.kind == "busy" and status == 429:
            body_ = error_body(
                fault.message or "Rate limit reached for requests", "requests", "rate_limit_exceeded"
            )
        elif fault.kind == "busy":
            body_ = error_body(
                fault.message or "The server is overloaded, please try again later.", "server_error"
            )
        else:
            type_ = "server_error" if status >= 500 else "invalid_request_error"
            body_ = error_body(
                fault.message or "The server had an error while processing your request.", type_
            )
        resp = web.json_response(body_, status=status)
        if fault.retry_after is not None:
            resp.headers["Retry-After"] = f"{fault.retry_after:g}"
        return resp

    # ------------------------------------------------------------------ helpers
    def _fault_for(self, request: web.Request, model: Any, kinds: tuple[str, ...]) -> Fault | None:
        name = str(model or "")
        return select_fault(self.fault, self.model_faults, name, request.path, self._inference_paths, kinds)

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        body, problem = await read_json(request)
        if body is None:
            return error(400, problem or "bad request", "invalid_request_error")
        model = body.get("model")
        if not model:
            return error(400, "you must provide a model parameter", "invalid_request_error")
        if model not in self.models:
            message = f"The model `{model}` does not exist or you do not have access to it."
            return error(404, message, "invalid_request_error", "model_not_found")
        return body

    async def _nonstream_fault(self, request: web.Request, model: Any) -> web.Response | None:
        fault = self._fault_for(request, model, STREAM_FAULTS)
        if fault is None or not fault.claim():
            return None
        if fault.kind == "stall_midstream":
            await asyncio.sleep(fault.seconds)
            return None
        if fault.kind == "drop_midstream" and request.transport is not None:
            request.transport.abort()
        return error(
            500, fault.message or "The server had an error while processing your request.", "server_error"
        )

    @web.middleware
    async def _held(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """While the test holds answers back (``hold``), wait, at most ``HOLD_SECONDS``; the
        faults come after."""
        hold = self.hold
        if hold is not None and request.path in self._inference_paths:
            await asyncio.to_thread(hold.wait, HOLD_SECONDS)
        return await handler(request)

    async def _generation(self, request: web.Request, kind: str) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        result = plan_chat(body) if kind == "chat" else plan_completion(body)
        renderer = Renderer(str(body["model"]), self.served_by, kind)
        if not body.get("stream"):
            failed = await self._nonstream_fault(request, body["model"])
            return failed or web.json_response(renderer.single(result))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await write_stream(
            request,
            (sse(chunk) for chunk in renderer.chunks(result, include_usage)),
            content_type=SSE,
            fault=self._fault_for(request, body["model"], STREAM_FAULTS),
            token_delay=self.token_delay,
            error_chunk=lambda message: sse(error_body(message, "server_error")),
            trailer=b"data: [DONE]\n\n",
        )

    # ------------------------------------------------------------------ endpoints
    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generation(request, "chat")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generation(request, "text")

    async def responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        reasons = self.models[body["model"]].reasoning
        try:
            openai_responses.check(body, reasons, self.responses_strict)
        except openai_responses.Invalid as bad:
            return web.json_response(
                error_body(bad.message, "invalid_request_error", bad.code, bad.param), status=400
            )
        response_id = f"resp_emu{time.monotonic_ns() % 10**12:012d}"
        renderer = openai_responses.Renderer(body, openai_responses.plan(body, reasons), response_id)
        if not body.get("stream"):
            failed = await self._nonstream_fault(request, body["model"])
            return failed or web.json_response(renderer.whole())
        return await write_stream(
            request,
            renderer.events(),
            content_type=SSE,
            fault=self._fault_for(request, body["model"], STREAM_FAULTS),
            token_delay=self.token_delay,
            error_chunk=renderer.failed,
        )

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """The Messages API as vLLM serves it: validated as Anthropic validates, no
        ``anthropic-version`` needed, errors in Anthropic's envelope."""
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        try:
            check_create(body, anthropic_gen.signature_of)
        except Refused as refused:
            data = {"type": "error", "error": {"type": refused.type, "message": refused.message}}
            return web.json_response(data, status=refused.status)
        result = anthropic_gen.plan(body, self.models[body["model"]].reasoning)
        message_id = f"msg_emu{time.monotonic_ns() % 10**12:012d}"
        if not body.get("stream"):
            failed = await self._nonstream_fault(request, body["model"])
            return failed or web.json_response(anthropic_gen.message(result, body["model"], message_id))
        return await write_stream(
            request,
            anthropic_gen.events(result, body["model"], message_id),
            content_type=SSE,
            fault=self._fault_for(request, body["model"], STREAM_FAULTS),
            token_delay=self.token_delay,
            error_chunk=lambda message: anthropic_gen.error_event("overloaded_error", message),
        )

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        failed = await self._nonstream_fault(request, body["model"])
        if failed is not None:
            return failed
        raw = body.get("input")
        if raw is None or raw == [] or raw == "":
            return error(400, "'input' is a required property", "invalid_request_error")
        inputs = [raw] if isinstance(raw, str) else raw
        if inputs and isinstance(inputs[0], int):
            inputs = [inputs]  # one token array
        texts = [t if isinstance(t, str) else " ".join(map(str, t)) for t in inputs]
        dims = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
        base64_ = body.get("encoding_format") == "base64"
        data = [
            {"object": "embedding", "index": i,
             "embedding": embedding_base64(embedding(t, dims)) if base64_ else embedding(t, dims)}
            for i, t in enumerate(texts)
        ]  # fmt: skip
        prompt_tokens = sum(word_count(t) for t in texts)
        return web.json_response(
            {"object": "list", "data": data, "model": body["model"],
             "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}
        )  # fmt: skip

    async def list_models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [m.as_json() for m in list(self.models.values())]}
        )

    async def get_model(self, request: web.Request) -> web.Response:
        model_id = request.match_info["model_id"]
        model = self.models.get(model_id)
        if model is None:
            message = f"The model '{model_id}' does not exist"
            return error(404, message, "invalid_request_error", "model_not_found")
        return web.json_response(model.as_json())
