"""What each deployment's models can do and how much context they take, and what a call needs.

Facts come from, most trusted first: the config (an alias's ``capabilities:`` and
``context_length:``, or ``router.capabilities`` / ``router.context_length`` by ``provider/model``
or bare model name); what the upstream said (Ollama's ``/api/tags`` capabilities and
``/api/show``, asked in the background by ``core.discovery``, cached by digest; an OpenAI-type
server's ``/v1/models`` metadata such as vLLM's ``max_model_len``); else unknown.

Capabilities are Ollama's names: ``completion``, ``tools``, ``vision``, ``embedding``,
``thinking`` (and ``insert``...). A call needs ``embedding`` (embeddings) or ``completion`` (chat
and completions), ``tools`` when it sends tools, ``vision`` when it sends images, ``thinking``
when it asks for reasoning. A deployment whose capabilities are known and lack one is left out;
one whose capabilities are not known yet is kept (fail open on unknown, closed on known-missing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from corral.conversation.call import Call, Endpoint, Surface

COMPLETION, TOOLS, VISION, EMBEDDING, THINKING = "completion", "tools", "vision", "embedding", "thinking"
KNOWN = frozenset({COMPLETION, TOOLS, VISION, EMBEDDING, THINKING, "insert", "image", "audio"})
WHY = {
    COMPLETION: "chat or text completion",
    TOOLS: "tool calling (the request sends tools)",
    VISION: "images (the request sends images)",
    EMBEDDING: "embeddings",
    THINKING: "thinking (the request asks for reasoning)",
}
MAX_FACTS = 100_000  # (provider, model) pairs remembered


@dataclass(frozen=True, slots=True)
class Facts:
    capabilities: frozenset[str] | None = None  # None: not known
    context_length: int | None = None  # the model's maximum, when known


UNKNOWN = Facts()


def _names(model: str) -> tuple[str, ...]:
    """Names a model answers to: Ollama's 'llama3.2:latest' is also 'llama3.2'."""
    if model.endswith(":latest"):
        return (model, model.removesuffix(":latest"))
    if ":" not in model.rsplit("/", 1)[-1]:
        return (model, f"{model}:latest")
    return (model,)


class ModelFacts:
    """Learned and configured facts per (provider, model). ``version`` changes with them."""

    def __init__(
        self,
        capabilities: Mapping[str, Iterable[str]] | None = None,
        context_lengths: Mapping[str, int] | None = None,
    ) -> None:
        self._learned: dict[tuple[str, str], Facts] = {}
        self._caps: dict[str, frozenset[str]] = {}
        self._ctx: dict[str, int] = {}
        self.version = 0
        self.configure(capabilities or {}, context_lengths or {})

    def configure(
        self, capabilities: Mapping[str, Iterable[str]], context_lengths: Mapping[str, int]
    ) -> None:
        """The config's overrides (a reconfiguration keeps what was learned)."""
        self._caps = {k: frozenset(v) for k, v in capabilities.items()}
        self._ctx = dict(context_lengths)
        self.version += 1

    def learn(
        self, provider: str, model: str, capabilities: Iterable[str] | None, context: int | None
    ) -> None:
        old = self._learned.get((provider, model), UNKNOWN)
        caps = frozenset(capabilities) if capabilities is not None else old.capabilities
        facts = Facts(caps, context if context is not None else old.context_length)
        if facts == old:
            return
        if len(self._learned) >= MAX_FACTS:
            self._learned.pop(next(iter(self._learned)))
        for name in _names(model):
            self._learned[(provider, name)] = facts
        self.version += 1

    def refused(self, provider: str, model: str, capability: str) -> bool:
        """The upstream refused ``capability`` for ``model``: remembered, so the next call that
        needs it is routed elsewhere (or refused with the capability named). What else the
        model can do stays as known; when nothing is known, everything else is assumed (fail
        open). Whether anything changed."""
        known = self.of(provider, model).capabilities
        if known is not None and capability not in known:
            return False
        base = known if known is not None else KNOWN
        self.learn(provider, model, base - {capability}, None)
        return True

    def learned_of(self, provider: str) -> dict[str, Facts]:
        """What was learned of ``provider``'s models (corral.cluster shares it with the workers
        that do not discover)."""
        return {model: facts for (p, model), facts in self._learned.items() if p == provider}

    def known(self, provider: str, model: str) -> bool:
        return (provider, model) in self._learned

    def of(self, provider: str, model: str) -> Facts:
        learned = self._learned.get((provider, model), UNKNOWN)
        label = f"{provider}/{model}"
        caps = self._caps.get(label, self._caps.get(model, learned.capabilities))
        ctx = self._ctx.get(label, self._ctx.get(model, learned.context_length))
        return Facts(caps, ctx)


def _thinking(call: Call) -> bool:
    body = call.body
    """As the surfaces' readers take it: Messages' ``adaptive`` leaves it to the model (not
    needed), an effort of ``none`` is no thinking, any other effort (``minimal`` too) is."""
    if call.surface is Surface.MESSAGES:
        thinking = body.get("thinking")
        return isinstance(thinking, dict) and thinking.get("type") == "enabled"
    if call.surface is Surface.OPENAI or call.surface is Surface.OLLAMA:
        think = body.get("think")
        if think is not None:
            return think is not False and think != "none"
        effort = body.get("reasoning_effort")
        if effort is not None:
            return bool(effort != "none")
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    return effort is not None and effort != "none"


def reasoning_is_hint(call: Call) -> bool:
    """Whether the call's ask for reasoning is a level an agent sends by default (Codex's
    ``reasoning.effort``, OpenAI's ``reasoning_effort``, Claude Code's ``thinking``): served
    without it by a model that cannot think. Ollama's own ``think`` is an explicit ask."""
    return call.surface is not Surface.OLLAMA and "think" not in call.body


def drop_reasoning(call: Call) -> None:
    """The call without its ask for reasoning (for a model known not to think: Ollama and
    OpenAI refuse the parameter there)."""
    body = call.body
    for name in ("reasoning", "reasoning_effort", "thinking"):
        body.pop(name, None)
    if call.request is not None:
        call.request.reasoning = None


def _has_images(value: Any) -> bool:
    """Whether a parsed body has an image anywhere in its messages or input (parts or Ollama's
    ``images``)."""
    if isinstance(value, dict):
        images = value.get("images")
        if isinstance(images, list) and images:
            return True
        kind = value.get("type")
        if kind in ("image_url", "image", "input_image"):
            return True
        return any(_has_images(v) for k, v in value.items() if k in ("content", "messages", "input"))
    if isinstance(value, list):
        return any(_has_images(v) for v in value)
    return False


NOTHING: frozenset[str] = frozenset()
_EMBEDDING = frozenset({EMBEDDING})


def needs_of(call: Call, ask: frozenset[str]) -> frozenset[str]:
    """The capabilities in ``ask`` that ``call`` needs (only those are worth reading it for)."""
    if call.endpoint is Endpoint.EMBEDDING or call.endpoint is Endpoint.LEGACY_EMBEDDING:
        return _EMBEDDING if EMBEDDING in ask else NOTHING
    need: list[str] = [COMPLETION] if COMPLETION in ask else []
    body = call.body
    if TOOLS in ask:
        tools = body.get("tools")
        if isinstance(tools, list) and tools and body.get("tool_choice") != "none":
            need.append(TOOLS)
    if THINKING in ask and _thinking(call):
        need.append(THINKING)
    if VISION in ask and b"image" in call.raw and _has_images(body):
        need.append(VISION)
    return frozenset(need) if need else NOTHING


def lacking(facts: Facts, need: frozenset[str]) -> frozenset[str]:
    """What of ``need`` a model with ``facts`` is known not to have (empty: may serve)."""
    caps = facts.capabilities
    if caps is None or not need:
        return frozenset()
    return need - caps
