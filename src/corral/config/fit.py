"""The config of routing by what a request needs: session affinity, capability and context
overrides, ``context_window_fallbacks`` (LiteLLM's name). Read by ``config.routing`` for a model
alias (``affinity``, ``capabilities``, ``context_length``, ``context_window_fallbacks``) and for
``router:`` (``affinity: {enabled, size, ttl, wait, spill_below}``, the same fallbacks for every model, and
``capabilities`` / ``context_length`` maps by ``provider/model`` or bare model name)."""

from __future__ import annotations

from typing import Any

from corral.config.fields import Fields
from corral.config.schema import AffinityConfig

ALIAS_KEYS = {"affinity", "capabilities", "context_length", "context_window_fallbacks"}
ROUTER_KEYS = {"affinity", "capabilities", "context_length", "context_window_fallbacks"}
CAPABILITIES = ("completion", "tools", "vision", "embedding", "thinking", "insert", "image", "audio")
_AFFINITY_KEYS = {"enabled", "size", "ttl", "wait", "spill_below"}


def _capabilities(f: Fields, value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise f.error(f"must be a list of capabilities ({', '.join(CAPABILITIES)}).", key)
    unknown = [c for c in value if c not in CAPABILITIES]
    if unknown:
        raise f.error(f"unknown capability {unknown[0]!r}; use {', '.join(CAPABILITIES)}.", key)
    return tuple(value)


def _spill_below(f: Fields, default: int) -> int:
    value = f.raw("spill_below")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise f.error(
            f"must be a whole number of estimated prompt tokens, 0 or more, got {value!r}: set it "
            f"to 0 to always wait for a full pinned deployment, or to a size such as {default} (the "
            "default) below which a prompt takes a free warm deployment at once instead.",
            "spill_below",
        )
    return value


def alias_fields(f: Fields) -> dict[str, Any]:
    """The ModelAlias fields of this module, from an alias's mapping."""
    affinity = f.raw("affinity")
    if affinity is not None and not isinstance(affinity, bool):
        raise f.error("must be true or false.", "affinity")
    caps = f.raw("capabilities")
    return {
        "affinity": affinity,
        "capabilities": None if caps is None else _capabilities(f, caps, "capabilities"),
        "context_length": f.integer("context_length", None, minimum=1),
        "context_window_fallbacks": tuple(f.strings("context_window_fallbacks") or ()),
    }


def router_fields(f: Fields) -> dict[str, Any]:
    """The RouterConfig fields of this module, from ``router:``."""
    d = AffinityConfig()
    raw = f.raw("affinity")
    if isinstance(raw, bool):
        raw = {"enabled": raw}
    if raw is not None and not isinstance(raw, dict):
        raise f.error("must be true, false or a mapping {enabled, size, ttl, wait, spill_below}.", "affinity")
    sub = f.child(raw or {}, "affinity")
    sub.reject_unknown(_AFFINITY_KEYS)
    affinity = AffinityConfig(
        enabled=sub.boolean("enabled", d.enabled),
        size=sub.integer("size", d.size, minimum=1) or d.size,
        ttl=sub.duration("ttl", d.ttl),
        wait=sub.duration("wait", d.wait),
        spill_below=_spill_below(sub, d.spill_below),
    )
    caps_raw = f.raw("capabilities") or {}
    ctx_raw = f.raw("context_length") or {}
    if not isinstance(caps_raw, dict):
        raise f.error("must map provider/model (or a model name) to a list of capabilities.", "capabilities")
    if not isinstance(ctx_raw, dict):
        raise f.error("must map provider/model (or a model name) to a context length.", "context_length")
    caps_f, ctx_f = f.child(caps_raw, "capabilities"), f.child(ctx_raw, "context_length")
    return {
        "affinity": affinity,
        "context_window_fallbacks": tuple(f.strings("context_window_fallbacks") or ()),
        "capabilities": {str(k): _capabilities(caps_f, v, str(k)) for k, v in caps_raw.items()},
        "context_length": {str(k): ctx_f.integer(str(k), 0, minimum=1) or 0 for k in ctx_raw},
    }
