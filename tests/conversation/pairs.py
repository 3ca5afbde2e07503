"""The two APIs translated through the conversation model, as the pairs the tests were first written for.

Each function here is one API's reader composed with the other's writer, the same path a call
takes through the engine when its surface and its upstream speak different APIs (OpenAI client,
Ollama upstream; Ollama client, OpenAI-type upstream). The stream translators feed an upstream's
bytes through the upstream API's reader and the client API's writer, as the adapters do.
"""

from __future__ import annotations

from typing import Any

from corral.conversation.answer import Usage
from corral.conversation.call import Endpoint
from corral.conversation.ollama import answers as ollama_answers
from corral.conversation.ollama import requests as ollama_requests
from corral.conversation.ollama.answers import created_at, done_reason
from corral.conversation.ollama.requests import OllamaDefaults
from corral.conversation.ollama.streams import NDJSONReader, NDJSONWriter
from corral.conversation.openai import answers as openai_answers
from corral.conversation.openai import requests as openai_requests
from corral.conversation.openai.streams import SSEReader, SSEWriter

__all__ = ["OllamaDefaults", "created_at", "done_reason"]

# -- OpenAI client, Ollama upstream: requests ---------------------------------------------------


def chat_request(
    body: dict[str, Any], model: str, *, stream: bool, defaults: OllamaDefaults
) -> dict[str, Any]:
    req = openai_requests.read(Endpoint.CHAT, body)
    req.stream = stream
    return ollama_requests.write(req, model, defaults=defaults)


def generate_request(
    body: dict[str, Any], model: str, *, stream: bool, defaults: OllamaDefaults
) -> dict[str, Any]:
    req = openai_requests.read(Endpoint.COMPLETION, body)
    req.stream = stream
    return ollama_requests.write(req, model, defaults=defaults)


def embed_request(body: dict[str, Any], model: str, *, defaults: OllamaDefaults) -> dict[str, Any]:
    return ollama_requests.write(openai_requests.read(Endpoint.EMBEDDING, body), model, defaults=defaults)


# -- Ollama client, OpenAI upstream: requests ---------------------------------------------------


def chat_to_openai(body: dict[str, Any], model: str, *, stream: bool) -> dict[str, Any]:
    req = ollama_requests.read(Endpoint.CHAT, body)
    req.stream = stream
    return openai_requests.write(req, model)[1]


def generate_endpoint(body: dict[str, Any]) -> Endpoint:
    return openai_requests.endpoint_for(ollama_requests.read(Endpoint.COMPLETION, body))


def generate_to_openai(body: dict[str, Any], model: str, *, stream: bool) -> dict[str, Any]:
    req = ollama_requests.read(Endpoint.COMPLETION, body)
    req.stream = stream
    return openai_requests.write(req, model)[1]


def embed_to_openai(body: dict[str, Any], model: str) -> dict[str, Any]:
    return openai_requests.write(ollama_requests.read(Endpoint.EMBEDDING, body), model)[1]


# -- OpenAI client, Ollama upstream: answers ----------------------------------------------------


def finish_reason(done: str | None, saw_tool_calls: bool) -> str:
    return openai_answers.finish_reason(ollama_answers.finish_reason(done, False), saw_tool_calls)


def chat_response(data: dict[str, Any], *, request_id: str, model: str, created: int) -> dict[str, Any]:
    return openai_answers.write_chat(
        ollama_answers.read(data), request_id=request_id, model=model, created=created
    )


def completion_response(data: dict[str, Any], *, request_id: str, model: str, created: int) -> dict[str, Any]:
    answer = ollama_answers.read(data)
    return openai_answers.write_completion(answer, request_id=request_id, model=model, created=created)


def embedding_response(data: dict[str, Any], *, model: str, encoding_format: str | None) -> dict[str, Any]:
    return openai_answers.write_embeddings(
        ollama_answers.read_embed(data), model=model, encoding_format=encoding_format
    )


class _ToOpenAI:
    """Ollama's NDJSON lines in, an OpenAI client's SSE out."""

    chat = True

    def __init__(self, *, request_id: str, model: str, created: int, include_usage: bool) -> None:
        self._reader = NDJSONReader(chat=self.chat)
        self._writer = SSEWriter(
            chat=self.chat, request_id=request_id, model=model, created=created, include_usage=include_usage
        )

    @property
    def done(self) -> bool:
        return self._writer.done

    @property
    def usage(self) -> dict[str, int] | None:
        usage: Usage | None = self._reader.usage
        if usage is None:
            return None
        return {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }

    def feed(self, line: bytes) -> bytes:
        if self._writer.done:
            return b""
        return b"".join(self._writer.write(e) for e in self._reader.feed(line))

    def finish(self) -> bytes:
        if self._writer.done:
            return b""
        return b"".join(self._writer.write(e) for e in self._reader.end())

    def error(self, message: str, code: str = "upstream_error") -> bytes:
        return self._writer.error(message, code)


class ChatStreamTranslator(_ToOpenAI):
    chat = True


class CompletionStreamTranslator(_ToOpenAI):
    chat = False


# -- Ollama client, OpenAI upstream: answers ----------------------------------------------------


def chat_answer(data: dict[str, Any], *, model: str, started_ns: int) -> dict[str, Any]:
    return ollama_answers.write_chat(openai_answers.read(data), model=model, started_ns=started_ns)


def generate_answer(data: dict[str, Any], *, model: str, started_ns: int) -> dict[str, Any]:
    return ollama_answers.write_generate(openai_answers.read(data), model=model, started_ns=started_ns)


def embed_answer(
    data: dict[str, Any], *, model: str, legacy: bool, started_ns: int | None = None
) -> dict[str, Any]:
    emb = openai_answers.read_embeddings(data)
    return ollama_answers.write_embed(emb, model=model, legacy=legacy, started_ns=started_ns)


class _ToOllama:
    """An OpenAI-type upstream's SSE bytes in, an Ollama client's NDJSON lines out."""

    chat = True

    def __init__(self, *, model: str, started_ns: int) -> None:
        self._reader = SSEReader()
        self._writer = NDJSONWriter(chat=self.chat, model=model, started_ns=started_ns)

    @property
    def done(self) -> bool:
        return self._writer.done

    def feed(self, data: bytes) -> bytes:
        if self._writer.done:
            return b""
        return b"".join(self._writer.write(e) for e in self._reader.feed(data))

    def finish(self) -> bytes:
        """At the clean end of the upstream's body."""
        if self._writer.done:
            return b""
        return b"".join(self._writer.write(e) for e in self._reader.end())

    def error(self, message: str) -> bytes:
        return self._writer.error(message)


class ChatNDJSON(_ToOllama):
    chat = True


class GenerateNDJSON(_ToOllama):
    chat = False
