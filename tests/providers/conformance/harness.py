"""The rig of the conformance suite: one provider of a type over an in-memory upstream, behind
the real engine (catalog, fleet, deployment state), called as each surface calls it, with the
answer read the way the edge writes it (a stream up to the chunk that ends it) and parsed into
what the client sees (``Seen``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from corral.config.schema import Config, ProviderConfig, RouterConfig
from corral.conversation.call import Call, Endpoint, ModelInfo, Reply, Surface
from corral.core.engine import Engine
from corral.providers.base import Provider
from corral.providers.demo import DemoProvider
from corral.providers.ollama.provider import OllamaProvider
from corral.providers.openai_compat import OpenAIProvider
from corral.routing.catalog import Catalog, ProviderEntry
from corral.routing.fleet import Fleet
from corral.routing.state import DeploymentState
from tests.providers.conformance import upstreams
from tests.providers.conformance.transport import MemoryPool
from tests.support.gateway import make_config

NAME = "up"
ALIAS = "chatty"  # what clients ask for; the upstream knows the model as "m"
READ_TIMEOUT = 0.2  # seconds the (in-memory) upstream may go quiet mid-answer
FIRST_TOKEN = 0.2  # seconds to the first token


@dataclass
class Rig:
    engine: Engine
    provider: Provider
    pool: MemoryPool | None
    state: DeploymentState
    refreshed: list[str] = field(default_factory=list)

    @property
    def sent(self) -> Any:
        """The body of the last request the upstream received."""
        assert self.pool is not None and self.pool.seen
        return self.pool.seen[-1].body


def config(ptype: str) -> Config:
    base = "http://upstream.test/v1" if ptype == "openai" else "http://upstream.test"
    return make_config(
        f"""
providers:
  - name: {NAME}
    type: {ptype}
    base_url: {base}
    timeout: {READ_TIMEOUT}
    first_token_timeout: {FIRST_TOKEN}
    models: [m]
models:
  - name: {ALIAS}
    target: {NAME}/m
router:
  failover_timeout: {FIRST_TOKEN}
  request_timeout: 2
  eject_after: 1
"""
    )


def build(ptype: str, behaviour: upstreams.Behaviour) -> Rig:
    cfg = config("openai" if ptype == "demo" else ptype)
    pcfg: ProviderConfig = cfg.providers[0]
    pool = None
    provider: Provider
    if ptype == "demo":
        provider = DemoProvider(NAME)
    else:
        handler = upstreams.ollama(behaviour) if ptype == "ollama" else upstreams.openai(behaviour)
        pool = MemoryPool(handler, read_timeout=READ_TIMEOUT, max_body=pcfg.max_response_bytes)
        cls: Callable[..., Provider] = OllamaProvider if ptype == "ollama" else OpenAIProvider
        provider = cls(pcfg, pool=pool)
    router: RouterConfig = cfg.router
    state = DeploymentState(NAME, ptype, 0, True)
    catalog = Catalog([ProviderEntry(NAME, ptype, 0, True)], cfg.models, ())
    catalog.update(NAME, [ModelInfo(id="echo" if ptype == "demo" else "m")])
    engine = Engine(catalog, {NAME: provider}, Fleet([state], router, None), {NAME: FIRST_TOKEN})
    rig = Rig(engine, provider, pool, state)
    engine.on_missing_model = rig.refreshed.append
    return rig


@dataclass
class Seen:
    """What a client sees: the answer's parts, whether it was complete, the in-band error."""

    status: int
    model: str | None = None
    text: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish: str | None = None
    usage: tuple[int, int] | None = None
    complete: bool = False  # the stream said so: data: [DONE], or Ollama's done: true
    error: str | None = None  # an in-band error's message
    error_code: str | None = None
    vectors: list[Any] = field(default_factory=list)
    raw: bytes = b""


def body_for(surface: Surface, endpoint: Endpoint, stream: bool, **extra: Any) -> dict[str, Any]:
    if endpoint is Endpoint.EMBEDDING:
        return {"model": ALIAS, "input": ["hello"], **extra}
    if endpoint is Endpoint.COMPLETION:
        return {"model": ALIAS, "prompt": "Say hello", "stream": stream, **extra}
    return {"model": ALIAS, "messages": [{"role": "user", "content": "Say hello"}], "stream": stream, **extra}


async def call(
    rig: Rig, surface: Surface, endpoint: Endpoint, *, stream: bool, model: str = ALIAS, **extra: Any
) -> tuple[Reply, Seen]:
    body = body_for(surface, endpoint, stream, **extra)
    body["model"] = model
    raw = orjson.dumps(body)
    c = Call(endpoint, body, raw, model, stream and endpoint is not Endpoint.EMBEDDING, "req-1", surface)
    reply = await rig.engine.handle(c)
    data = await read(reply)
    return reply, parse(surface, endpoint, c.stream, reply.status, data)


async def read(reply: Reply) -> bytes:
    """The answer's bytes, read as ``EdgeExchange.write`` does: a stream up to its last chunk."""
    if reply.chunks is None:
        return reply.body or b""
    out = []
    try:
        async for data in reply.chunks:
            out.append(data)
            if reply.outcome.ended:
                break
    finally:
        await reply.chunks.aclose()  # type: ignore[attr-defined]
    return b"".join(out)


def parse(surface: Surface, endpoint: Endpoint, stream: bool, status: int, data: bytes) -> Seen:
    seen = Seen(status, raw=data)
    if surface is Surface.OPENAI:
        if stream:
            _openai_stream(seen, data)
        else:
            _openai_whole(seen, orjson.loads(data), endpoint)
    elif stream:
        for line in data.splitlines():
            if line.strip():
                _ollama_line(seen, orjson.loads(line))
    else:
        obj = orjson.loads(data)
        if endpoint in (Endpoint.EMBEDDING, Endpoint.LEGACY_EMBEDDING):
            seen.vectors = obj.get("embeddings") or [obj.get("embedding")]
        else:
            _ollama_line(seen, obj)
    return seen


def _openai_stream(seen: Seen, data: bytes) -> None:
    for event in data.split(b"\n\n"):
        event = event.strip()
        if not event:
            continue
        assert event.startswith(b"data: "), event
        payload = event[6:]
        if payload == b"[DONE]":
            seen.complete = True
            continue
        assert not seen.complete, "an event after data: [DONE]"
        obj = orjson.loads(payload)
        if "error" in obj:
            seen.error, seen.error_code = obj["error"]["message"], obj["error"].get("code")
            continue
        seen.model = obj.get("model", seen.model)
        if obj.get("usage"):
            seen.usage = (obj["usage"]["prompt_tokens"], obj["usage"]["completion_tokens"])
        for choice in obj.get("choices") or []:
            delta = choice.get("delta") or {}
            seen.text += delta.get("content") or choice.get("text") or ""
            seen.reasoning += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or []:
                seen.tool_calls.append(call)
            seen.finish = choice.get("finish_reason") or seen.finish


def _openai_whole(seen: Seen, obj: dict[str, Any], endpoint: Endpoint) -> None:
    if "error" in obj:
        seen.error, seen.error_code = obj["error"]["message"], obj["error"].get("code")
        return
    seen.model = obj.get("model")
    seen.complete = True
    if endpoint is Endpoint.EMBEDDING:
        seen.vectors = [item["embedding"] for item in obj["data"]]
        return
    choice = obj["choices"][0]
    message = choice.get("message") or {}
    seen.text = message.get("content") or choice.get("text") or ""
    seen.reasoning = message.get("reasoning_content") or ""
    seen.tool_calls = message.get("tool_calls") or []
    seen.finish = choice.get("finish_reason")
    if obj.get("usage"):
        seen.usage = (obj["usage"]["prompt_tokens"], obj["usage"]["completion_tokens"])


def _ollama_line(seen: Seen, obj: dict[str, Any]) -> None:
    assert not seen.complete, "a line after the done: true one"
    if "error" in obj:
        seen.error = obj["error"]
        return
    seen.model = obj.get("model", seen.model)
    message = obj.get("message") or {}
    seen.text += message.get("content") or obj.get("response") or ""
    seen.reasoning += message.get("thinking") or obj.get("thinking") or ""
    seen.tool_calls += message.get("tool_calls") or []
    if obj.get("done") is True:
        seen.complete = True
        seen.finish = obj.get("done_reason")
        seen.usage = (obj.get("prompt_eval_count", 0), obj.get("eval_count", 0))
