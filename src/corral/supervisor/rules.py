"""What several workers cannot do correctly without a shared store, checked before they start.

With ``redis_url`` set the workers share limits (and, through corral.cluster, health and
slots). Without it each worker would count on its own, so corral refuses to start N > 1
workers when:

* ``user_limits`` are configured (rpm, tpm, max_parallel or a budget per user), or an enabled
  stored key has limits: each worker would let the full limit through, N-fold;
* a provider's ``max_parallel`` is below the worker count: the slots are split between the
  workers (``corral.gateway.SlotShare``), and fewer slots than workers cannot be split.

A key given limits later, while serving, is refused per request instead (503, naming the same
fix: ``corral.limits.unshared``). A ``max_parallel`` of at least N is split, never exceeded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from corral.config.schema import Config
from corral.store.keys import KeyRecord


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
    limited = [k.name or k.id for k in keys if k.enabled and any(v is not None for v in k.limits.values())]
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
        + ". Set redis_url (or CORRAL_REDIS_URL) so every worker shares limits and slots, or serve "
        "with --workers 1 (server.workers), or raise max_parallel to at least the worker count."
    )
