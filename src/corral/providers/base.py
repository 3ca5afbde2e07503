"""The provider contract every upstream type implements.

A provider owns one pooled HTTP client to one upstream and answers calls in two ways:

- ``send``: a call from a surface the upstream speaks (``speaks``) is passed through: the body
  re-encoded with the routed model, the answer's bytes relayed (with the client's model name in
  them, the usage learned, an interrupted stream ended in-band);
- ``converse``: any other call goes through the conversation model: the call is read once by its
  surface (``surfaces.request_of``), written in the upstream's API by the type's adapter, and the
  answer (whole, or a stream read as the model's events) written back by the surface
  (``surfaces.reply_of``).

The engine chooses between the two; no provider looks at the surface. Failures before the first
byte of an answer raise ``corral.errors.UpstreamError`` subclasses naming the provider, so the
engine can fail over; failures later in a stream are sent in-band and noted on
``reply.outcome.error``. ``list_models`` (discovery) and ``probe`` (health) never load a model.
A type is declared in ``config.provider_types.REGISTRY``, which names its implementation.
"""

from __future__ import annotations

from typing import Protocol

from corral.conversation.call import Attempt, Call, ModelInfo, Probe, Reply, Surface


class Provider(Protocol):
    name: str
    type: str
    speaks: frozenset[Surface]  # the client APIs whose calls it passes through

    async def send(self, call: Call, attempt: Attempt) -> Reply:
        """Pass ``call`` (from a surface in ``speaks``) through as ``attempt.model``."""
        ...

    async def converse(self, call: Call, attempt: Attempt) -> Reply:
        """Answer ``call`` (from any other surface) through the conversation model."""
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
