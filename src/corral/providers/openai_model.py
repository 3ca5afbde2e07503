"""An OpenAI-compatible provider answering a call through the conversation model
(``model_path``): the ``/v1/messages`` and ``/v1/responses`` surfaces, translated to chat
completions for servers that do not serve those APIs themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from corral.conversation.answer import Event
from corral.conversation.call import Attempt, Call, Reply
from corral.conversation.openai import answers as openai_answers
from corral.conversation.openai import requests as openai_requests
from corral.conversation.openai.streams import SSEReader
from corral.errors import UpstreamError
from corral.providers import model_path
from corral.providers.upstream import JSON_BODY, rejected, upstream_errors

if TYPE_CHECKING:
    from corral.httpclient import Response
    from corral.providers.openai_compat import OpenAIProvider


async def send(provider: OpenAIProvider, call: Call, attempt: Attempt, path: str) -> Reply:
    """``call`` as a chat completion to ``path`` (the provider's chat completions URL)."""
    started = model_path.now_ns()
    req = replace(model_path.request_of(call), stream=call.stream)
    _, body = openai_requests.write(req, attempt.model)
    async with upstream_errors(provider.cfg):
        resp = await provider._pool.request("POST", path, orjson.dumps(body), JSON_BODY)
    if resp.status >= 300:
        raise await rejected(provider.cfg, resp)
    if not call.stream:
        try:
            async with upstream_errors(provider.cfg):
                raw = await resp.read()
        finally:
            resp.release()
        return model_path.answered(call, openai_answers.read(_object(provider.name, raw)), started)
    return model_path.streamed(call, provider.name, _events(provider, resp), started)


def _object(provider: str, raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamError(
            provider, "returned a body that is not a JSON object.", code="upstream_bad_response"
        )
    return data


async def _events(provider: OpenAIProvider, resp: Response) -> AsyncIterator[list[Event]]:
    reader = SSEReader()
    try:
        async with upstream_errors(provider.cfg):
            async for batch in model_path.read_stream(resp.chunks(), reader):
                yield batch
    finally:
        if reader.done:
            resp.release()
        else:
            resp.close()
