"""Serve a native Ollama call from a provider that speaks OpenAI (OpenAI-type upstreams, demo).

``to_openai`` turns the native call into an OpenAI call for the upstream's own model name;
``to_native`` turns the OpenAI-shaped reply (a body or an SSE stream) back into Ollama's
shape (a body or an NDJSON stream). The outcome object is shared, so a stream that fails
mid-way is still recorded as failed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson

from corral.core.call import Call, Endpoint, Reply, Surface
from corral.providers.openai_native import answers, requests

NDJSON = "application/x-ndjson"


def to_openai(call: Call, model: str) -> Call:
    body = call.body
    if call.endpoint is Endpoint.CHAT:
        endpoint, out = Endpoint.CHAT, requests.chat_to_openai(body, model, stream=call.stream)
    elif call.endpoint is Endpoint.COMPLETION:
        endpoint = requests.generate_endpoint(body)
        out = requests.generate_to_openai(body, model, stream=call.stream)
    else:
        endpoint, out = Endpoint.EMBEDDING, requests.embed_to_openai(body, model)
    stream = call.stream and endpoint is not Endpoint.EMBEDDING
    return Call(
        endpoint=endpoint,
        body=out,
        raw=orjson.dumps(out),
        model=model,
        stream=stream,
        request_id=call.request_id,
        surface=Surface.OPENAI,
    )


def to_native(reply: Reply, call: Call, started_ns: int) -> Reply:
    chat = call.endpoint is Endpoint.CHAT
    if reply.chunks is not None:
        cls = answers.ChatNDJSON if chat else answers.GenerateNDJSON
        translator = cls(model=call.model, started_ns=started_ns)
        native = Reply(status=reply.status, content_type=NDJSON, headers=reply.headers, outcome=reply.outcome)
        native.chunks = _ndjson(reply, translator)
        return native
    data = orjson.loads(reply.body or b"{}")
    if call.endpoint in (Endpoint.EMBEDDING, Endpoint.LEGACY_EMBEDDING):
        out = answers.embed_answer(
            data, model=call.model, legacy=call.endpoint is Endpoint.LEGACY_EMBEDDING, started_ns=started_ns
        )
    elif chat:
        out = answers.chat_answer(data, model=call.model, started_ns=started_ns)
    else:
        out = answers.generate_answer(data, model=call.model, started_ns=started_ns)
    return Reply(status=reply.status, body=orjson.dumps(out), headers=reply.headers, outcome=reply.outcome)


async def _ndjson(
    reply: Reply, translator: answers.ChatNDJSON | answers.GenerateNDJSON
) -> AsyncIterator[bytes]:
    assert reply.chunks is not None
    chunks = reply.chunks
    try:
        async for data in chunks:
            out = translator.feed(data)
            if out:
                if out.startswith(b'{"error"') and reply.outcome.error is None:
                    reply.outcome.error = "The upstream reported an error mid-stream."
                yield out
        tail = translator.finish()
        if tail.startswith(b'{"error"') and reply.outcome.error is None:
            reply.outcome.error = "The upstream's stream ended before its final chunk."
        if tail:
            yield tail
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


def now_ns() -> int:
    return time.monotonic_ns()
