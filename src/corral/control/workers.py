"""What several workers cannot do correctly without a shared store, checked before they start.

With ``redis_url`` set the workers share limits (and, through corral.cluster, health and
slots). Without it each worker would count on its own, so corral refuses to start N > 1
workers when:

* ``user_limits`` are configured (rpm, tpm, max_parallel or a budget per user), or an enabled
  stored key has limits: each worker would let the full limit through, N-fold;
* a provider's ``max_parallel`` is below the worker count: the slots are split between the
  workers (``corral.gateway.SlotShare``), and fewer slots than workers cannot be split.

What is added while serving is held to the same rules: the admin API (and so the CLI and the
console) refuses, with ``UnsharedWorkers`` (409, naming the fix), a provider whose
``max_parallel`` is below the worker count and a key given limits (``provider_refusal``,
``limits_refusal``). A key that has limits anyway (a database changed by hand) is refused per
request (503, ``corral.limits.unshared``). A ``max_parallel`` of at least N is split, never
exceeded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from corral.config.schema import Config
from corral.errors import InvalidRequest
from corral.store.keys import KeyRecord

COUNTED = ("rpm", "tpm", "max_parallel", "max_budget")  # budget_period alone counts nothing
FIX = "Set redis_url (or CORRAL_REDIS_URL) so every worker shares limits and slots"


class UnsharedWorkers(InvalidRequest):
    """An admin change that several workers without a shared store would get wrong (409)."""

    status = 409

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message, code="needs_shared_store", param=param)


def shared_store(config: Config, env: Mapping[str, str]) -> bool:
    return bool(config.redis_url or env.get("CORRAL_REDIS_URL", "").strip())


def problems(config: Config, workers: int, keys: Iterable[KeyRecord] = ()) -> list[str]:
    """What would be wrong with ``workers`` workers that share nothing (empty: start)."""
    if workers <= 1:
        return []
    found = []
    if config.user_limits:
        users = ", ".join(sorted(config.user_limits)[:3])
        found.append(f"user_limits ({users}) would be counted by each worker apart, {workers}-fold")
    limited = [k.name or k.id for k in keys if k.enabled and counted(k.limits)]
    if limited:
        found.append(
            f"{len(limited)} stored key(s) with limits ({', '.join(sorted(limited)[:3])}) would be "
            f"counted by each worker apart, {workers}-fold"
        )
    for p in config.providers:
        if p.enabled and 0 < p.max_parallel < workers:
            found.append(
                f"provider {p.name}: max_parallel {p.max_parallel} cannot be split between {workers} "
                "workers (each gets a share of the slots)"
            )
    return found


def refusal(found: list[str], workers: int) -> str:
    return (
        f"corral: refusing to start {workers} workers without a shared store: "
        + "; ".join(found)
        + f". {FIX}, or serve "
        "with --workers 1 (server.workers), or raise max_parallel to at least the worker count."
    )


def counted(limits: Mapping[str, Any]) -> list[str]:
    """The limits in ``limits`` that a limiter counts (rpm, tpm, max_parallel, max_budget)."""
    return [name for name in COUNTED if limits.get(name) is not None]


def provider_refusal(name: str, max_parallel: int, workers: int) -> UnsharedWorkers | None:
    """Why ``workers`` workers that share nothing cannot serve this provider (None: they can)."""
    if workers <= 1 or not 0 < max_parallel < workers:
        return None
    return UnsharedWorkers(
        f"Provider '{name}': max_parallel {max_parallel} is below the {workers} workers this gateway "
        f"runs without Redis. The slots are split between the workers, and {max_parallel} cannot be "
        f"split {workers} ways: each worker would allow 1 ({workers} in all). {FIX}, or raise "
        f"max_parallel to at least {workers}, or serve with --workers 1.",
        param="max_parallel",
    )


def limits_refusal(limits: Mapping[str, Any], workers: int) -> UnsharedWorkers | None:
    """Why an enabled key with ``limits`` cannot be counted by ``workers`` workers apart."""
    names = counted(limits)
    if workers <= 1 or not names:
        return None
    return UnsharedWorkers(
        f"This gateway runs {workers} worker processes without Redis, and each counts limits on its "
        f"own: {', '.join(names)} would be let through {workers} times over. {FIX} (then the "
        "limits are counted once, by all of them), or keep this key without limits, or serve with "
        "--workers 1.",
        param=names[0],
    )
