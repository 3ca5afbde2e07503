"""The provider contract every upstream type implements.

A provider owns one pooled HTTP client to one upstream. It turns a ``Call`` (OpenAI-shaped
request) into an upstream request and the upstream's answer into a ``Reply`` in OpenAI shape.
Failures before the first byte of an answer are raised as ``corral.errors.UpstreamError``
subclasses naming the provider, so the engine can fail over; failures later in a stream are
sent in-band and noted in ``reply.outcome.error``.
"""

from __future__ import annotations

from typing import Protocol

from corral.core.call import Attempt, Call, ModelInfo, Probe, Reply


class Provider(Protocol):
    name: str
    type: str

    async def send(self, call: Call, attempt: Attempt) -> Reply:
        """Send ``call`` upstream as ``attempt.model`` (the upstream's own name for it)."""
        ...

    async def list_models(self) -> list[ModelInfo]:
        """Discover the models the upstream serves. Must not load a model."""
        ...

    async def probe(self) -> Probe:
        """One cheap active health check. Must not load a model."""
        ...

    async def close(self) -> None:
        """Release the connection pool."""
        ...
