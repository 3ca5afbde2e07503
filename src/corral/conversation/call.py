"""What flows through the engine: a ``Call`` in, a ``Reply`` out.

A ``Call`` is one client request, parsed once at the edge, in its surface's API: ``body`` as
parsed, ``raw`` as received. An upstream that speaks that API gets it passed through (the body
re-encoded, the answer's bytes relayed); any other gets the call read into the conversation
model, once (``request``). A ``Reply`` is the answer in the client's API: a whole body or an
async iterator of ready-to-write bytes, with what was learned on the way (``Outcome``) and who
answered (``Served``).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.conversation.answer import Usage
    from corral.conversation.request import Request


class Endpoint(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: identity, in C (Enum's own hash is Python)

    CHAT = "chat"
    COMPLETION = "completion"  # OpenAI /v1/completions, Ollama /api/generate
    EMBEDDING = "embedding"  # OpenAI /v1/embeddings, Ollama /api/embed
    LEGACY_EMBEDDING = "legacy_embedding"  # Ollama /api/embeddings


class Surface(enum.Enum):
    """Which API the client speaks: replies are written in that API's shape."""

    __hash__ = object.__hash__  # members are singletons: identity, in C (Enum's own hash is Python)

    OPENAI = "openai"
    OLLAMA = "ollama"
    MESSAGES = "anthropic_messages"  # Anthropic's /v1/messages (Claude Code)
    RESPONSES = "openai_responses"  # OpenAI's /v1/responses, stateless (Codex)


@dataclass(slots=True)
class Call:
    endpoint: Endpoint
    body: dict[str, Any]
    raw: bytes
    model: str
    stream: bool
    request_id: str  # corral's own, unique
    surface: Surface = Surface.OPENAI
    client_request_id: str | None = None  # the client's X-Request-Id, for correlation only
    request: Request | None = None  # the call in the conversation model, once read (``surfaces.request_of``)
    session: str | None = None  # the conversation's key from a session header (routing.affinity)
    prompt_estimate: int | None = None  # a large body's estimated prompt tokens, once worked out


@dataclass(slots=True, frozen=True)
class Target:
    """One place a model can be served: a provider, the model's name there, and its rank in a pool."""

    provider: str
    model: str
    priority: int = 0
    weight: float = 1.0

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(slots=True, frozen=True)
class Route:
    """What a requested name resolves to: a pool of targets and how to choose among them."""

    name: str
    targets: tuple[Target, ...]
    strategy: str | None = None
    num_ctx: int | None = None
    fallbacks: tuple[str, ...] = ()
    explicit_only: bool = False
    is_alias: bool = False
    hedge_after: float | str | None = None  # start the next candidate after this (s, or "p95")


@dataclass(slots=True, frozen=True)
class Attempt:
    """How to send one call to one deployment."""

    model: str  # the upstream's own name for the model
    first_byte_timeout: float | None = None  # seconds to the first token (streams, Ollama) or headers
    num_ctx: int | None = None  # pinned context length, overriding the client's
    # another deployment could still be tried after this one: a whole answer from an upstream
    # that can send one (OpenAI-type) is then streamed and folded, so the first-token deadline
    # can fail it over; with nowhere to go it is asked for whole (cheaper, and never cut short)
    elsewhere: bool = True


@dataclass(slots=True)
class Outcome:
    """What is learned while a reply is streamed: filled in by the provider, read afterwards."""

    error: str | None = None  # set when the stream ended in an in-band error
    usage: Usage | None = None  # the upstream's token counts, when it gave them
    pieces: int = 0  # pieces of generated text relayed (one per token, as upstreams stream them)
    chars: int = 0  # their characters, where corral read them (the model path)
    first_byte_at: float | None = None  # monotonic time the first byte went to the client
    # monotonic time the upstream's first token came, for a whole answer corral streamed and
    # folded (a stream's is timed by the engine): teaches the adaptive first-token deadline
    first_token_at: float | None = None
    # Set by the provider just before it yields a stream's last chunk, so the writer can send
    # that chunk and the end marker in one write instead of two.
    ended: bool = False


@dataclass(slots=True, frozen=True)
class Served:
    """Who answered a call, set by the engine: what accounting records and what the HTTP layer
    tells the client (the ``x-corral-*`` headers)."""

    provider: str
    model: str  # the upstream's own name for the model
    attempts: int  # attempts made, this one included
    fallback: str | None = None  # the fallback pool that answered, when not the requested one


@dataclass(slots=True)
class Reply:
    """A provider's answer, already in the client's (OpenAI) shape.

    Exactly one of ``body`` or ``chunks`` is set. ``chunks`` yields bytes to write as they
    are; providers turn upstream failures after the first chunk into an in-band error event
    rather than raising.
    """

    status: int = 200
    body: bytes | None = None
    chunks: AsyncIterator[bytes] | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    outcome: Outcome = field(default_factory=Outcome)
    served: Served | None = None  # set by the engine once an attempt answered


@dataclass(slots=True, frozen=True)
class ModelInfo:
    """A model discovered on (or declared for) a provider."""

    id: str
    created: int = 0
    owned_by: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Probe:
    """The result of one active health check. It never loads a model."""

    ok: bool
    latency_ms: float | None = None
    error: str | None = None
    misconfigured: bool = False
    loaded: dict[str, int | None] | None = None  # Ollama: model -> context length, from /api/ps
    running: tuple[dict[str, Any], ...] | None = None  # Ollama: the /api/ps entries as they came
    version: str | None = None  # Ollama: from /api/version
