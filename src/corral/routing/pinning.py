"""When a call with a pin does not start on its pinned deployment.

Session affinity (routing/affinity.py) puts the pinned deployment first, with a bounded wait for
its slot. This module owns the two ways a call leaves it at once:

* ``loads_again``: the pinned deployment no longer holds the model as asked (a reload would drop
  its KV cache with it) while the strategy's first choice does; the strategy's pick serves.
* ``spill_to``: the pinned deployment has no free slot now and the prompt is short
  (``affinity.spill_below``): a free deployment of the same pool that holds the model warm takes
  it at once instead of a wait. Reading a short prompt again costs less than queueing behind the
  pinned one's generations, while the rest of the pool sits idle (llm-d weighs its prefix-cache
  score against load; consistent hashing with bounded loads moves a key off a full node).

Neither overrides what was decided before: the candidates are the pool's ranked targets (health,
strategy, capabilities and context already applied; never a fallback pool), a deployment loaded
with another ``num_ctx`` than the call's is not warm, a better priority tier is allowed but not a
worse one, and a slot is taken only where one is free (``max_parallel``, and across workers).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from corral.conversation.call import Call, Target
from corral.routing.context import loaded_context, prompt_tokens
from corral.routing.fleet import Fleet
from corral.routing.state import DeploymentState


def loads_again(
    pinned: Target, best: Target, states: Mapping[str, DeploymentState], num_ctx: int | None
) -> bool:
    """The pinned deployment does not hold the model as asked (a reload drops its KV cache)
    while the strategy's first choice does."""
    return (
        pinned is not best
        and states[best.provider].warm(best.model, num_ctx) is True
        and states[pinned.provider].warm(pinned.model, num_ctx) is False
    )


def short(call: Call, below: int) -> bool:
    """The prompt is estimated below ``below`` tokens (0: never) and carries no image. The
    estimate is the context check's (``prompt_tokens``, kept on the call): bytes / 4 of the body
    up to 8 KiB, above that the text of the call as read once into the conversation model. Images
    are not in the estimate, and the pinned deployment holds them encoded: a call with one stays."""
    if below <= 0 or prompt_tokens(call) >= below:
        return False
    req = call.request  # read for a body over 8 KiB, where an image can be
    return req is None or not any(m.images() for m in req.messages)


def holds(state: DeploymentState, model: str, num_ctx: int | None) -> bool:
    """``model`` is loaded on ``state`` with exactly ``num_ctx`` (any context when None): a
    loaded context the instance did not report is no match, since a reload would drop the cache
    of that instance's own conversations."""
    if state.warm(model, num_ctx) is not True:
        return False
    return num_ctx is None or loaded_context(state, model) == num_ctx


def spill_to(
    fleet: Fleet, call: Call, pinned: Target, ranked: Sequence[Target], num_ctx: int | None, below: int
) -> Sequence[Target]:
    """The targets of ``ranked`` that ``call`` may take at once instead of waiting for ``pinned``
    (the caller found it full), best first: free now, in the pin's priority tier or a better one,
    and holding the model as asked (``holds``). Empty when spilling is off, when none is, or when
    the prompt is not short (estimated last: the one step that may read a large body)."""
    if below <= 0:
        return ()
    now = time.monotonic()
    states = fleet.states
    free = [
        t
        for t in ranked
        if t.provider != pinned.provider
        and t.priority <= pinned.priority
        and holds(states[t.provider], t.model, num_ctx)
        and fleet.free_now(t, now)
    ]
    return free if free and short(call, below) else ()
