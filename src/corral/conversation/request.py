"""The conversation model, request side: what a client asks for, whichever API it spoke.

A surface reads a client's body into a ``Request`` (``corral.conversation.<api>.requests.read``)
and an upstream adapter writes a ``Request`` out in its upstream's API (``...requests.write``).
Readers check the client's fields and normalise them, so writers can rely on the model: roles
are the four below (OpenAI's ``developer`` is ``system``), every content is a list of parts,
tool calls carry their arguments as an object and, where the client's API let it be known, their
id; a tool result names the call it answers and, where known, the function.

Sampling holds the options both OpenAI and Ollama have a place for; ``options`` keeps a client's
native Ollama ``options`` object as given (the runner options, ``num_gpu``..., which only an
Ollama upstream can use), and ``native`` the Ollama fields an OpenAI client sent along. Where a
field may come from both, the sampling value wins, as it does when corral translates OpenAI
requests for Ollama.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from corral.conversation.call import Endpoint

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(slots=True, frozen=True)
class Text:
    text: str


@dataclass(slots=True, frozen=True)
class Image:
    """An inline image: its base64 bytes (no ``data:`` prefix) and, when the client said, its type."""

    data: str
    media_type: str | None = None


Part = Text | Image


@dataclass(slots=True)
class ToolCall:
    """A function call the model made, on an assistant turn (or in an answer). ``arguments`` is
    an object, or the JSON text of one as a client sent it (kept as sent for an API that wants
    text)."""

    name: str
    arguments: dict[str, Any] | str
    id: str | None = None
    index: int = 0  # its place among the calls of its turn

    def arguments_json(self) -> str:
        args = self.arguments
        return args if isinstance(args, str) else orjson.dumps(args).decode()

    def arguments_object(self) -> dict[str, Any]:
        """The arguments as an object; ``{}`` when their text is not one."""
        args = self.arguments
        if isinstance(args, dict):
            return args
        try:
            parsed = orjson.loads(args) if args.strip() else {}
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}


@dataclass(slots=True)
class Message:
    role: Role
    content: list[Part]
    reasoning: str = ""  # the model's own thinking, on assistant turns
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None  # a tool result: the call it answers
    tool_name: str | None = None  # a tool result: the function that was called

    def text(self, sep: str = "\n") -> str:
        """The text parts, joined."""
        parts = self.content
        if len(parts) == 1 and isinstance(parts[0], Text):
            return parts[0].text
        return sep.join(p.text for p in parts if isinstance(p, Text))

    def images(self) -> list[Image]:
        return [p for p in self.content if isinstance(p, Image)]


@dataclass(slots=True, frozen=True)
class Tool:
    """A tool the model may call, as its definition came: ``{"type": "function", "function":
    {"name", "description", "parameters"}}`` (OpenAI's and Ollama's shape, passed on unchanged)."""

    definition: Any

    @property
    def function(self) -> dict[str, Any]:
        fn = self.definition.get("function") if isinstance(self.definition, dict) else None
        return fn if isinstance(fn, dict) else {}

    @property
    def name(self) -> str:
        name = self.function.get("name")
        return name if isinstance(name, str) else ""

    @property
    def description(self) -> str | None:
        text = self.function.get("description")
        return text if isinstance(text, str) else None

    @property
    def parameters(self) -> dict[str, Any] | None:
        schema = self.function.get("parameters")
        return schema if isinstance(schema, dict) else None


@dataclass(slots=True, frozen=True)
class ResponseFormat:
    """Plain text, any JSON object, or JSON matching ``schema``."""

    kind: Literal["text", "json", "json_schema"]
    schema: dict[str, Any] | None = None
    name: str | None = None  # the schema's name, when the client gave one
    strict: bool | None = None


@dataclass(slots=True)
class Sampling:
    """Generation settings; None means the upstream's default."""

    max_tokens: int | None = None  # tokens to generate at most (Ollama's num_predict)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    typical_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    repeat_penalty: float | None = None  # a multiplier around 1.1 (vLLM's repetition_penalty)
    repeat_last_n: int | None = None


# How hard to think: False (not at all), True (the upstream's default depth), or a level.
Reasoning = bool | Literal["low", "medium", "high", "max"]


@dataclass(slots=True, frozen=True)
class ToolChoice:
    """A tool choice an upstream must honour: ``required`` (some tool) or the tool ``name``.
    None on a ``Request`` leaves the choice to the model; "none" withholds the tools instead."""

    required: bool = True
    name: str | None = None
    strict: bool = True  # an upstream that cannot force a choice refuses it (else it lets the model choose)


@dataclass(slots=True)
class Request:
    """One request in the model. ``endpoint`` says which fields matter: chat (``messages``),
    completion (``prompt``, ``suffix``, ``raw``, ``system``, ``images``) or embedding (``input``)."""

    endpoint: Endpoint
    stream: bool = False
    messages: list[Message] = field(default_factory=list)
    tools: list[Tool] | None = None  # None: none sent; the tool choice "none" withholds them
    tool_choice: ToolChoice | None = None  # a forced choice (the Messages and Responses surfaces)
    parallel_tool_calls: bool | None = None  # False: at most one call per answer
    prompt: str | None = None
    suffix: str | None = None
    raw: bool | None = None  # a completion: no prompt template
    system: str | None = None  # a completion's system prompt
    images: list[Image] = field(default_factory=list)  # a completion's images
    input: str | list[str] | None = None  # an embedding's text(s)
    dimensions: int | None = None
    truncate: Any = None  # an embedding: Ollama's truncate, as given
    encoding_format: str | None = None  # an embedding answer: "float" or "base64"
    sampling: Sampling = field(default_factory=Sampling)
    format: ResponseFormat | None = None
    reasoning: Reasoning | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    include_usage: bool = False  # a stream: the client asked for its token counts
    options: dict[str, Any] = field(default_factory=dict)  # the client's Ollama options, as given
    num_ctx: int | None = None  # context length the client asked for (over options.num_ctx)
    keep_alive: str | int | float | None = None
    # Ollama's own top-level fields that a client of another API sent along (``think``, ``format``,
    # ``raw``, ``system``, ``images``), as given: an Ollama upstream gets them over the typed ones.
    native: dict[str, Any] = field(default_factory=dict)
