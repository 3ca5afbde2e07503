"""An Ollama server emulator (aiohttp) that follows Ollama's documented native API.

Serve it with ``ServerThread(emu.app).start()``. Generation is deterministic (see
``ollama_gen``); state (catalog, loaded models, faults, token delay) can be changed from the
test thread at any time through plain attributes.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.emulators import ollama_gen as gen
from tests.emulators import ollama_validate as validate
from tests.emulators.common import (
    PRE_RESPONSE_FAULTS,
    STREAM_FAULTS,
    Fault,
    RecordedRequest,
    Recorder,
    dumps,
    embedding,
    read_json,
    select_fault,
    word_count,
    write_stream,
)

NDJSON = "application/x-ndjson"
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
INFERENCE_PATHS = {"/api/chat", "/api/generate", "/api/embed", "/api/embeddings"}
DEFAULT_NUM_CTX = 4096
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ModelSpec:
    """One model in the emulator's catalog (``/api/tags``)."""

    name: str
    digest: str = ""
    size: int = 2_019_393_189
    family: str = "llama"
    parameter_size: str = "3.2B"
    quantization: str = "Q4_K_M"
    context_length: int = 131072
    embedding_length: int = 8
    capabilities: list[str] = field(default_factory=lambda: ["completion", "tools"])
    modified_at: str = "2025-06-01T12:00:00.000000Z"

    def __post_init__(self) -> None:
        self.name = normalize(self.name)
        if not self.digest:
            self.digest = hashlib.sha256(self.name.encode()).hexdigest()

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization,
        }


def normalize(name: str) -> str:
    """Ollama's default tag: ``llama3.2`` means ``llama3.2:latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def default_models() -> list[ModelSpec]:
    return [
        ModelSpec("llama3.2:latest"),
        ModelSpec(
            "qwen3:0.6b", family="qwen3", parameter_size="751.63M", context_length=40960,
            capabilities=["completion", "tools", "thinking"],
        ),
        ModelSpec(
            "nomic-embed-text:latest", family="nomic-bert", parameter_size="137M", size=274_302_450,
            quantization="F16", context_length=2048, capabilities=["embedding"],
        ),
    ]  # fmt: skip


def allowed_host(host: str) -> bool:
    """Ollama's allowedHostsMiddleware rule for a server bound to loopback."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if host in ("", "localhost") or host == socket.gethostname().lower():
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host.endswith((".localhost", ".local", ".internal"))
    private = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
    return ip.is_loopback or ip.is_unspecified or any(ip in ipaddress.ip_network(n) for n in private)


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def not_found(model: str) -> web.Response:
    return error(404, f'model "{model}" not found, try pulling it first')


def ndjson(obj: Any) -> bytes:
    return (dumps(obj) + "\n").encode()


class OllamaEmulator:
    """Emulated Ollama instance. Attributes the test may change at any time:

    ``models`` (name -> ModelSpec), ``loaded`` (name -> allocated context length, /api/ps),
    ``fault`` / ``model_faults`` (name -> Fault), ``token_delay`` (s between streamed chunks),
    ``load_seconds`` (delay when a request loads a model that is not in ``loaded``),
    ``first_token_delay`` (s between a stream's headers and its first chunk; a client leaving
    meanwhile counts in ``disconnects`` at once).
    ``disconnects`` counts generations whose client (corral) went away before the answer ended.
    ``prompt_token_delay`` (s per prompt token) models the KV cache: a generation first waits that
    long for each token of its prompt that is not a prefix already cached here (the longest match
    among the ``kv_slots`` prompts evaluated last, as Ollama's runner slots keep them);
    ``prompt_evals`` lists the tokens each generation evaluated.
    Inference requests are validated as Ollama validates them (``ollama_validate``); ``strict``
    (the default) also refuses fields and options that Ollama would ignore without a word.
    """

    def __init__(
        self,
        models: Iterable[ModelSpec | dict[str, Any]] | None = None,
        *,
        api_key: str | None = None,
        version: str = "0.12.10",
        check_host: bool = True,
        registry: Iterable[ModelSpec | dict[str, Any]] | None = None,
        load_seconds: float = 0.0,
        token_delay: float = 0.0,
        strict: bool = True,
        prompt_token_delay: float = 0.0,
        kv_slots: int = 4,
    ) -> None:
        specs = default_models() if models is None else [_spec(m) for m in models]
        self.models: dict[str, ModelSpec] = {m.name: m for m in specs}
        self.registry: dict[str, ModelSpec] | None = (
            None if registry is None else {s.name: s for s in map(_spec, registry)}
        )
        self.loaded: dict[str, int] = {}
        self.api_key = api_key
        self.version = version
        self.check_host = check_host
        self.load_seconds = load_seconds
        self.token_delay = token_delay
        self.first_token_delay = 0.0
        self.fault: Fault | None = None
        self.model_faults: dict[str, Fault] = {}
        self.disconnects = 0
        self.generating = 0  # chats and generations being answered now (probes and listings not counted)
        self.max_generating = 0  # the most at once (reset it to 0 to measure a new run)
        self.strict = strict  # also refuse what Ollama would silently ignore (see ollama_validate)
        self.prompt_token_delay = prompt_token_delay
        self.kv_slots = kv_slots
        self._kv: list[tuple[str, list[str]]] = []  # (model, prompt tokens), most recent last
        self.prompt_evals: list[int] = []
        self._recorder = Recorder()

    # ------------------------------------------------------------------ observation
    @property
    def requests(self) -> list[RecordedRequest]:
        return self._recorder.requests

    @property
    def in_flight(self) -> int:
        return self._recorder.in_flight

    @property
    def max_in_flight(self) -> int:
        return self._recorder.max_in_flight

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    # ------------------------------------------------------------------ app
    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._recorder.middleware, self._host_check, self._auth, self._pre_faults]
        )
        r = app.router
        r.add_get("/", self.root)
        r.add_get("/api/version", self.api_version)
        r.add_get("/api/tags", self.tags)
        r.add_get("/api/ps", self.ps)
        r.add_post("/api/show", self.show)
        r.add_post("/api/chat", self.chat)
        r.add_post("/api/generate", self.generate)
        r.add_post("/api/embed", self.embed)
        r.add_post("/api/embeddings", self.embeddings)
        r.add_post("/api/pull", self.pull)
        r.add_post("/api/copy", self.copy)
        r.add_delete("/api/delete", self.delete)
        return app

    # ------------------------------------------------------------------ middlewares
    @web.middleware
    async def _host_check(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.check_host and not allowed_host(request.headers.get("Host", "")):
            return web.Response(status=403)
        return await handler(request)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        authorized = request.headers.get("Authorization") == f"Bearer {self.api_key}"
        if self.api_key and request.path.startswith("/api/") and not authorized:
            return error(401, "unauthorized")
        return await handler(request)

    def _fault_for(self, request: web.Request, model: Any, kinds: tuple[str, ...]) -> Fault | None:
        per_model = {normalize(k): v for k, v in list(self.model_faults.items())}
        name = normalize(str(model or "x"))
        return select_fault(self.fault, per_model, name, request.path, INFERENCE_PATHS, kinds)

    @web.middleware
    async def _pre_faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body, _ = await read_json(request)
        fault = self._fault_for(request, (body or {}).get("model"), PRE_RESPONSE_FAULTS)
        if fault is not None and fault.claim():
            if fault.kind == "hang_before_headers":
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "busy":
                return self._fault_response(fault, fault.status or 503, fault.message or BUSY_MESSAGE)
            else:
                message = fault.message or "internal error"
                return self._fault_response(fault, fault.status or 500, message)
        return await handler(request)

    @staticmethod
    def _fault_response(fault: Fault, status: int, message: str) -> web.Response:
        resp = error(status, message)
        if fault.retry_after is not None:
            resp.headers["Retry-After"] = f"{fault.retry_after:g}"
        return resp

    # ------------------------------------------------------------------ helpers
    async def _body_and_model(self, request: web.Request) -> tuple[dict[str, Any], ModelSpec] | web.Response:
        body, problem = await read_json(request)
        if body is None:
            return error(400, problem or "bad request")
        try:
            validate.check_request(request.path, body, strict=self.strict)
        except validate.Refused as refused:
            return error(refused.status, refused.message)
        name = body.get("model") or body.get("name")
        if not name:
            return error(400, "model is required")
        spec = self.models.get(normalize(str(name)))
        if spec is None:
            return not_found(str(name))
        try:
            if request.path == "/api/embed":
                validate.check_input(body)
            validate.check_options(body, strict=self.strict)
        except validate.Refused as refused:
            return error(refused.status, refused.message)
        return body, spec

    async def _ensure_loaded(self, spec: ModelSpec, body: dict[str, Any]) -> int:
        """Load the model if needed (``load_seconds``); returns load_duration in ns."""
        options = body.get("options") or {}
        num_ctx = int(options.get("num_ctx") or min(DEFAULT_NUM_CTX, spec.context_length))
        if self.loaded.get(spec.name) == num_ctx:
            return 1_000_000
        started = time.monotonic()
        if self.load_seconds:
            await asyncio.sleep(self.load_seconds)
        self.loaded[spec.name] = num_ctx
        return max(1_000_000, int((time.monotonic() - started) * 1e9))

    def _after_request(self, spec: ModelSpec, body: dict[str, Any]) -> None:
        keep_alive = body.get("keep_alive")
        if keep_alive in (0, "0", "0s", "0m"):
            self.loaded.pop(spec.name, None)

    async def _nonstream_fault(self, request: web.Request, model: Any) -> web.Response | None:
        """A mid-stream fault on a non-streamed request: 500, a stall, or a dropped socket."""
        fault = self._fault_for(request, model, STREAM_FAULTS)
        if fault is None or not fault.claim():
            return None
        if fault.kind == "stall_midstream":
            await asyncio.sleep(fault.seconds)
            return None
        if fault.kind == "drop_midstream" and request.transport is not None:
            request.transport.abort()
        return error(500, fault.message or "an error was encountered while running the model")

    async def _stream(
        self, request: web.Request, objects: Iterator[dict[str, Any]], model: Any = None
    ) -> web.StreamResponse:
        return await write_stream(
            request,
            (ndjson(o) for o in objects),
            content_type=NDJSON,
            fault=self._fault_for(request, model, STREAM_FAULTS),
            token_delay=self.token_delay,
            first_token_delay=self.first_token_delay,
            error_chunk=lambda message: ndjson({"error": message}),
        )

    # ------------------------------------------------------------------ simple endpoints
    async def root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def api_version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": self.version})

    async def tags(self, request: web.Request) -> web.Response:
        entries = [
            {
                "name": m.name,
                "model": m.name,
                "modified_at": m.modified_at,
                "size": m.size,
                "digest": m.digest,
                "details": m.details(),
                "capabilities": list(m.capabilities),
            }
            for m in list(self.models.values())
        ]
        return web.json_response({"models": entries})

    async def ps(self, request: web.Request) -> web.Response:
        expires = (datetime.now(UTC) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
        entries = []
        for name, ctx in list(self.loaded.items()):
            m = self.models.get(name) or ModelSpec(name)
            entries.append(
                {
                    "name": m.name,
                    "model": m.name,
                    "size": m.size,
                    "digest": m.digest,
                    "details": m.details(),
                    "expires_at": expires,
                    "size_vram": m.size,
                    "context_length": ctx,
                }
            )
        return web.json_response({"models": entries})

    async def show(self, request: web.Request) -> web.Response:
        body, problem = await read_json(request)
        if body is None:
            return error(400, problem or "bad request")
        name = str(body.get("model") or body.get("name") or "")
        spec = self.models.get(normalize(name)) if name else None
        if spec is None:
            return error(404, f"model '{name}' not found")
        arch = spec.family
        return web.json_response(
            {
                "license": "",
                "modelfile": f"# Modelfile generated by the emulator\nFROM {spec.name}\n",
                "parameters": 'stop                           "<|eot_id|>"',
                "template": "{{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}",
                "details": spec.details(),
                "model_info": {
                    "general.architecture": arch,
                    "general.parameter_count": 3_212_749_888,
                    f"{arch}.context_length": spec.context_length,
                    f"{arch}.embedding_length": spec.embedding_length,
                },
                "capabilities": list(spec.capabilities),
                "modified_at": spec.modified_at,
            }
        )

    # ------------------------------------------------------------------ generation
    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._watched(self._generation(request, "chat"))

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._watched(self._generation(request, "generate"))

    async def _watched(self, answer: Awaitable[web.StreamResponse]) -> web.StreamResponse:
        """Count an answer cut short because the client closed the connection, and the answers
        being written at once (``generating``, ``max_generating``)."""
        self.generating += 1
        self.max_generating = max(self.max_generating, self.generating)
        try:
            return await answer
        except (ConnectionError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        finally:
            self.generating -= 1

    async def _generation(self, request: web.Request, kind: str) -> web.StreamResponse:
        parsed = await self._body_and_model(request)
        if isinstance(parsed, web.Response):
            return parsed
        body, spec = parsed
        model = str(body.get("model") or body.get("name"))
        problem = self._capability_problem(spec, body, kind)
        if problem:
            return error(400, problem)
        started = time.monotonic()
        empty = not body.get("messages") if kind == "chat" else not body.get("prompt")
        if empty:
            if body.get("keep_alive") in (0, "0", "0s"):
                self.loaded.pop(spec.name, None)
                return web.json_response(gen.load_response(model, kind, "unload"))
            await self._ensure_loaded(spec, body)
            return web.json_response(gen.load_response(model, kind, "load"))
        load_ns = await self._ensure_loaded(spec, body)
        await self._evaluate_prompt(spec.name, body, kind)
        plan = gen.plan_chat(body) if kind == "chat" else gen.plan_generate(body)
        try:
            if body.get("stream", True) is False:
                failed = await self._nonstream_fault(request, spec.name)
                if failed is not None:
                    return failed
                single = gen.chat_single if kind == "chat" else gen.generate_single
                return web.json_response(single(model, plan, started, load_ns))
            chunks = gen.chat_chunks if kind == "chat" else gen.generate_chunks
            return await self._stream(request, chunks(model, plan, started, load_ns, self.token_delay), model)
        finally:
            self._after_request(spec, body)

    async def _evaluate_prompt(self, model: str, body: dict[str, Any], kind: str) -> None:
        """The KV cache model: wait for the prompt tokens not cached here, then cache the prompt."""
        if kind == "chat":
            tokens = [
                w
                for m in body.get("messages") or []
                for w in (f"<{m.get('role')}>", *str(m.get("content") or "").split())
            ]
        else:
            tokens = [*str(body.get("system") or "").split(), *str(body.get("prompt") or "").split()]
        cached = 0
        for name, seq in self._kv:
            if name != model:
                continue
            n = 0
            for a, b in zip(seq, tokens, strict=False):
                if a != b:
                    break
                n += 1
            cached = max(cached, n)
        fresh = len(tokens) - cached
        self.prompt_evals.append(fresh)
        if self.prompt_token_delay and fresh:
            await asyncio.sleep(fresh * self.prompt_token_delay)
        self._kv = (
            [e for e in self._kv if e[1] != tokens][-(self.kv_slots - 1) :] if self.kv_slots > 1 else []
        )
        self._kv.append((model, tokens))

    @staticmethod
    def _capability_problem(spec: ModelSpec, body: dict[str, Any], kind: str) -> str | None:
        if "completion" not in spec.capabilities:
            return f'"{spec.name}" does not support {kind}'
        if body.get("tools") and "tools" not in spec.capabilities:
            return f'"{spec.name}" does not support tools'
        if body.get("think") and body.get("think") != "none" and "thinking" not in spec.capabilities:
            return f'"{spec.name}" does not support thinking'
        return None

    # ------------------------------------------------------------------ embeddings
    async def embed(self, request: web.Request) -> web.StreamResponse:
        parsed = await self._body_and_model(request)
        if isinstance(parsed, web.Response):
            return parsed
        body, spec = parsed
        started = time.monotonic()
        failed = await self._nonstream_fault(request, spec.name)
        if failed is not None:
            return failed
        raw = body.get("input", [])
        inputs = [raw] if isinstance(raw, str) else [str(x) for x in raw]
        dims = int(body.get("dimensions") or spec.embedding_length)
        load_ns = await self._ensure_loaded(spec, body)
        words = sum(word_count(t) for t in inputs)
        return web.json_response(
            {
                "model": body.get("model") or spec.name,
                "embeddings": [embedding(t, dims) for t in inputs],
                "total_duration": max(int((time.monotonic() - started) * 1e9), load_ns + words * 1_000_000),
                "load_duration": load_ns,
                "prompt_eval_count": words,
            }
        )

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        parsed = await self._body_and_model(request)
        if isinstance(parsed, web.Response):
            return parsed
        body, spec = parsed
        failed = await self._nonstream_fault(request, spec.name)
        if failed is not None:
            return failed
        prompt = str(body.get("prompt") or "")
        await self._ensure_loaded(spec, body)
        return web.json_response({"embedding": embedding(prompt, spec.embedding_length) if prompt else []})

    # ------------------------------------------------------------------ model management
    async def pull(self, request: web.Request) -> web.StreamResponse:
        body, problem = await read_json(request)
        if body is None:
            return error(400, problem or "bad request")
        name = normalize(str(body.get("model") or body.get("name") or ""))
        spec = ModelSpec(name) if self.registry is None else self.registry.get(name)
        if spec is None:
            if body.get("stream", True) is False:
                return error(500, "pull model manifest: file does not exist")
            lines = iter(
                [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
            )
            return await self._stream(request, lines)
        if body.get("stream", True) is False:
            self.models[name] = replace(spec)
            return web.json_response({"status": "success"})
        return await self._stream(request, self._pull_progress(spec))

    def _pull_progress(self, spec: ModelSpec) -> Iterator[dict[str, Any]]:
        yield {"status": "pulling manifest"}
        digest = f"sha256:{spec.digest}"
        for quarter in range(5):
            completed = spec.size * quarter // 4
            yield {"status": f"pulling {spec.digest[:12]}", "digest": digest, "total": spec.size,
                   "completed": completed}  # fmt: skip
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        self.models[spec.name] = replace(spec)
        yield {"status": "success"}

    async def copy(self, request: web.Request) -> web.Response:
        body, problem = await read_json(request)
        if body is None:
            return error(400, problem or "bad request")
        source = str(body.get("source") or "")
        spec = self.models.get(normalize(source))
        if spec is None or not body.get("destination"):
            return error(404, f'model "{source}" not found')
        destination = normalize(str(body["destination"]))
        self.models[destination] = replace(spec, name=destination)
        return web.Response(status=200)

    async def delete(self, request: web.Request) -> web.Response:
        body, problem = await read_json(request)
        if body is None:
            return error(400, problem or "bad request")
        name = str(body.get("model") or body.get("name") or "")
        if self.models.pop(normalize(name), None) is None:
            return error(404, f"model '{name}' not found")
        self.loaded.pop(normalize(name), None)
        return web.Response(status=200)


def _spec(value: ModelSpec | dict[str, Any]) -> ModelSpec:
    return value if isinstance(value, ModelSpec) else ModelSpec(**value)
