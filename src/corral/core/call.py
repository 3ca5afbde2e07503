"""What flows through the engine: a ``Call`` in, a ``Reply`` out.

A ``Call`` is one client request, parsed once at the edge. The engine and providers read
fields from ``body`` and may forward ``raw`` untouched. A ``Reply`` is either a complete
JSON body or an async iterator of ready-to-write bytes (SSE for the OpenAI surface).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


class Endpoint(enum.Enum):
    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"


@dataclass(slots=True)
class Call:
    endpoint: Endpoint
    body: dict[str, Any]
    raw: bytes
    model: str
    stream: bool
    request_id: str


@dataclass(slots=True)
class Target:
    """One place a model can be served: a provider and the model's name there."""

    provider: str
    model: str


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


@dataclass(slots=True, frozen=True)
class ModelInfo:
    """A model discovered on (or declared for) a provider."""

    id: str
    created: int = 0
    owned_by: str = ""
    details: dict[str, Any] = field(default_factory=dict)
