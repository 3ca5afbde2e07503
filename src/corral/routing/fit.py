"""Which deployments of a plan can serve a call: capabilities and context fit.

``Fit.select`` takes the engine's plan (the requested pool, then its fallbacks) and leaves out
the targets whose model is known to lack a capability the call needs (``capabilities``) or whose
effective context is smaller than the prompt's estimate (``context``). When nothing is left it
follows the requested model's ``context_window_fallbacks`` (else the router's), and when that
does not help either it refuses the call: a 400 naming the missing capability, or OpenAI's
``context_length_exceeded`` (each surface writes it in its own error envelope). Reasoning asked
as a level (``reasoning.effort``, ``reasoning_effort``, Messages' ``thinking``) is a preference:
a model that thinks is chosen when the plan has one, else the call is served without it (Codex
sends an effort on every request); only Ollama's explicit ``think`` is refused.

Per plan, what its targets' models are known to lack is worked out once per catalog and facts
version; a call is only read for those capabilities, and for its size only when its body is
large, so the common request costs a dict lookup and a comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from corral.config.schema import ModelAlias
from corral.conversation.call import Call, Route, Target
from corral.errors import CorralError, InvalidRequest
from corral.routing.capabilities import (
    KNOWN,
    THINKING,
    WHY,
    Facts,
    ModelFacts,
    drop_reasoning,
    lacking,
    needs_of,
    reasoning_is_hint,
)
from corral.routing.context import CHARS_PER_TOKEN, FLOOR, effective_context, prompt_tokens
from corral.routing.state import DeploymentState

CHECKED = frozenset(WHY)  # the capabilities a call may need
_THINKING_ONLY = frozenset({THINKING})


class CapabilityMissing(InvalidRequest):
    """No deployment in the plan has a capability the call needs."""


class ContextLengthExceeded(InvalidRequest):
    """The prompt is longer than every deployment's context in the plan (and its fallbacks)."""


@dataclass(frozen=True, slots=True)
class _RouteInfo:
    facts: tuple[Facts, ...]  # per target, with the alias's overrides
    context_override: int | None
    ask: frozenset[str]  # capabilities some target is known to lack


class Fit:
    def __init__(
        self,
        facts: ModelFacts,
        states: Mapping[str, DeploymentState],
        aliases: Mapping[str, ModelAlias],
        provider_ctx: Mapping[str, int],
        context_window_fallbacks: tuple[str, ...] = (),
    ) -> None:
        self.facts = facts
        self._states = states
        self._aliases = aliases
        self._provider_ctx = provider_ctx
        self._fallbacks = context_window_fallbacks
        self._info: dict[str, _RouteInfo] = {}
        # id(plan) -> (the plan, its version, its routes' info, what they lack): kept with the plan
        self._plans: dict[int, tuple[Sequence[Route], tuple[int, int], list[_RouteInfo], frozenset[str]]] = {}
        self._version = (-1, -1)

    def _route_info(self, route: Route, catalog_version: int) -> _RouteInfo:
        version = (catalog_version, self.facts.version)
        if version != self._version:
            self._info.clear()
            self._version = version
        info = self._info.get(route.name)
        if info is None:
            alias = self._aliases.get(route.name) if route.is_alias else None
            caps = frozenset(alias.capabilities) if alias and alias.capabilities is not None else None
            facts = []
            for t in route.targets:
                f = self.facts.of(t.provider, t.model)
                facts.append(Facts(caps, f.context_length) if caps is not None else f)
            ask: frozenset[str] = frozenset()
            for f in facts:
                if f.capabilities is not None:
                    ask |= CHECKED - f.capabilities
            info = _RouteInfo(tuple(facts), alias.context_length if alias else None, ask & KNOWN)
            if len(self._info) < 10_000:
                self._info[route.name] = info
        return info

    def _plan_info(
        self, routes: Sequence[Route], catalog_version: int
    ) -> tuple[list[_RouteInfo], frozenset[str]]:
        """Per plan (the engine's cached list, by identity): its routes' facts and what they lack."""
        version = (catalog_version, self.facts.version)
        cached = self._plans.get(id(routes))
        if cached is not None and cached[0] is routes and cached[1] == version:
            return cached[2], cached[3]
        infos = [self._route_info(r, catalog_version) for r in routes]
        ask: frozenset[str] = frozenset().union(*(i.ask for i in infos))
        if len(self._plans) >= 10_000:
            self._plans.clear()
        self._plans[id(routes)] = (routes, version, infos, ask)
        return infos, ask

    def learn_refusal(self, target: Target, capability: str) -> None:
        """An upstream refused ``capability`` for ``target`` (``UpstreamRejected.capability``):
        remembered, so the next call is routed by it."""
        self.facts.refused(target.provider, target.model, capability)

    def select(
        self,
        call: Call,
        routes: Sequence[Route],
        catalog_version: int,
        num_ctx: Callable[[Route], int | None],
        plan_of: Callable[[str], Sequence[Route]],
    ) -> Sequence[Route]:
        """The plan with the targets that can serve ``call``. Raises CapabilityMissing or
        ContextLengthExceeded when none can."""
        infos, ask = self._plan_info(routes, catalog_version)
        need = needs_of(call, ask) if ask else ask
        tokens = prompt_tokens(call) if len(call.raw) > FLOOR * CHARS_PER_TOKEN else None
        if not need and tokens is None:
            return routes  # the common case
        kept, lacks, small = self._filter(routes, infos, need, tokens, num_ctx)
        if kept:
            return kept
        if lacks == _THINKING_ONLY and reasoning_is_hint(call):
            kept, _, small = self._filter(routes, infos, need - _THINKING_ONLY, tokens, num_ctx)
            if kept:
                drop_reasoning(call)
                return kept
        if small and tokens is not None:
            alias = self._aliases.get(routes[0].name)
            chain = (alias.context_window_fallbacks if alias else ()) or self._fallbacks
            for name in chain:
                try:
                    more = list(plan_of(name))
                except CorralError:  # a fallback that serves nothing now is skipped
                    continue
                more_infos = [self._route_info(r, catalog_version) for r in more]
                found, _, _ = self._filter(more, more_infos, need, tokens, num_ctx)
                if found:
                    return found
            raise _too_long(routes[0].name, tokens, max(small), bool(chain))
        missing = sorted(lacks)
        raise CapabilityMissing(
            f"No deployment of '{routes[0].name}' (or its fallbacks) supports "
            f"{' and '.join(WHY[c] for c in missing)}. Ask for a model that does (GET /v1/models; "
            "the console's Models page lists capabilities), or leave that part out of the request.",
            code="model_capability_missing",
            param=missing[0],
        )

    def _filter(
        self,
        routes: Sequence[Route],
        infos: Sequence[_RouteInfo],
        need: frozenset[str],
        tokens: int | None,
        num_ctx: Callable[[Route], int | None],
    ) -> tuple[list[Route], set[str], list[int]]:
        kept: list[Route] = []
        lacks: set[str] = set()
        small: list[int] = []
        for route, info in zip(routes, infos, strict=True):
            pinned = num_ctx(route)
            keep: list[Target] = []
            for target, facts in zip(route.targets, info.facts, strict=True):
                lack = lacking(facts, need)
                if lack:
                    lacks |= lack
                    continue
                if tokens is not None:
                    ctx = effective_context(
                        target,
                        self._states.get(target.provider),
                        self.facts,
                        pinned,
                        self._provider_ctx,
                        info.context_override or facts.context_length,
                    )
                    if ctx is not None and tokens > ctx:
                        small.append(ctx)
                        continue
                keep.append(target)
            if len(keep) == len(route.targets):
                kept.append(route)
            elif keep:
                kept.append(replace(route, targets=tuple(keep)))
        return kept, lacks, small


def _too_long(model: str, tokens: int, largest: int, chained: bool) -> ContextLengthExceeded:
    tried = " or its context_window_fallbacks" if chained else ""
    return ContextLengthExceeded(
        f"This model's maximum context length is {largest} tokens. However, your messages resulted "
        f"in about {tokens} tokens (estimated). No deployment of '{model}'{tried} takes that much: "
        "shorten the conversation, ask for a model with a longer context, or configure "
        "context_window_fallbacks.",
        code="context_length_exceeded",
        param="messages",
    )
