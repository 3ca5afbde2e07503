"""Time to first token per deployment and model, and the first-token deadline it gives.

A fixed deadline is too slow for a hung warm instance and too fast for a cold 70B load. So
each deployment keeps, per model, the recent times to first token of its streams, warm and
cold apart, in bounded rings (``SAMPLES`` each; quantiles recomputed every ``REFRESH``
samples, so a sample costs O(1) amortised and a deadline O(1)).

The deadline of one attempt (``deadline``):

* warm (Ollama's /api/ps lists the model, or it answered here within ``RECENT`` s) with at
  least ``MIN_SAMPLES`` warm samples: ``multiplier`` x their p99, clamped to [``min``, ``max``];
  times the ratio of this request's body size to the p99 of the sizes of those samples, when
  it is larger: a prompt much longer than the ones the times come from takes longer to its
  first token (prompt evaluation grows with it), and a deadline learnt from short prompts must
  not cut it and move it off the instance whose KV cache may hold it;
* warm with fewer samples, or an upstream that does not report loaded models: the fixed
  first-token timeout (the provider's ``first_token_timeout`` or ``router.failover_timeout``);
* with no other deployment left to try, never shorter than the fixed timeout: cutting the
  last candidate short would only turn a slow answer (a long prompt, a busy machine) into an
  error;
* cold on Ollama (not loaded), with no other deployment left to try: ``router.load_timeout``
  (Ollama's own ``OLLAMA_LOAD_TIMEOUT`` is 5 min), so a long load is not cut. With somewhere
  else to go, the fixed timeout: from outside, a loading Ollama and a hung one look the same
  (nothing is sent until the model is loaded), and the warm strategy tries warm ones first.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLES = 64  # per ring
REFRESH = 8  # recompute the quantiles every this many samples
MIN_SAMPLES = 5  # warm samples before the deadline adapts
RECENT = 60.0  # s: a stream that started within this long counts the model warm here
MAX_MODELS = 256  # per deployment; the least recently used model is forgotten beyond it


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    """``router.first_token`` and ``router.load_timeout``: how the sketches become deadlines."""

    multiplier: float = 3.0
    min: float = 0.5
    max: float | None = None  # None: the fixed first-token timeout
    load_timeout: float = 300.0


class Ring:
    """The last ``SAMPLES`` values, with p50, p95 and p99 recomputed every ``REFRESH`` adds."""

    __slots__ = ("_at", "count", "p50", "p95", "p99", "values")

    def __init__(self) -> None:
        self.values: list[float] = []
        self._at = 0
        self.count = 0  # samples ever added
        self.p50: float | None = None
        self.p95: float | None = None
        self.p99: float | None = None

    def add(self, value: float) -> None:
        if len(self.values) < SAMPLES:
            self.values.append(value)
        else:
            self.values[self._at] = value
            self._at = (self._at + 1) % SAMPLES
        self.count += 1
        if self.count % REFRESH == 0 or self.count <= MIN_SAMPLES:  # quantiles lag < REFRESH samples
            ordered = sorted(self.values)
            last = len(ordered) - 1
            self.p50, self.p95, self.p99 = (
                ordered[min(last, int(q * len(ordered)))] for q in (0.5, 0.95, 0.99)
            )

    def quantile(self, q: str) -> float | None:
        return {"p50": self.p50, "p95": self.p95, "p99": self.p99}.get(q)

    def summary(self) -> dict[str, float | int | None]:
        return {"samples": len(self.values), "p50": self.p50, "p95": self.p95, "p99": self.p99}


class ModelTimes:
    __slots__ = ("cold", "last_start", "warm", "warm_sizes")

    def __init__(self) -> None:
        self.warm = Ring()
        self.warm_sizes = Ring()  # the body sizes (bytes) of the warm samples' requests
        self.cold = Ring()
        self.last_start = 0.0  # monotonic start of the latest stream that sent a first token


class FirstTokens:
    """One deployment's sketches, by model (its own name for it upstream)."""

    __slots__ = ("_models",)

    def __init__(self) -> None:
        self._models: dict[str, ModelTimes] = {}

    def observe(self, model: str, seconds: float, warm: bool, started: float, size: int = 0) -> None:
        """A call of ``model`` (a body of ``size`` bytes) started at ``started`` had its first
        token ``seconds`` later."""
        times = self._models.pop(model, None)  # re-inserted last: the dict's order is recency
        if times is None:
            times = ModelTimes()
            if len(self._models) >= MAX_MODELS:
                del self._models[next(iter(self._models))]
        self._models[model] = times
        if warm:
            times.warm.add(seconds)
            times.warm_sizes.add(float(size))
        else:
            times.cold.add(seconds)
        times.last_start = max(times.last_start, started)

    def recent(self, model: str, now: float) -> bool:
        times = self._models.get(model)
        return times is not None and now - times.last_start <= RECENT

    def warm_quantile(self, model: str, q: str) -> float | None:
        times = self._models.get(model)
        return None if times is None or times.warm.count < MIN_SAMPLES else times.warm.quantile(q)

    def deadline(
        self,
        model: str,
        warm: bool | None,
        fixed: float,
        policy: DeadlinePolicy,
        elsewhere: bool = True,
        size: int = 0,
    ) -> float:
        """The first-token deadline (s) of an attempt; ``warm`` None: the upstream does not say;
        ``elsewhere``: another deployment could still be tried after this one; ``size``: the
        request body's bytes."""
        if not elsewhere:  # cutting it short gains nothing: there is nowhere to fail over to
            return max(fixed, policy.load_timeout) if warm is False else fixed
        if warm is False:
            return fixed
        p99 = self.warm_quantile(model, "p99")
        if p99 is None:
            return fixed
        ceiling = fixed if policy.max is None else policy.max
        usual = self._models[model].warm_sizes.p99 or 0.0
        longer = size / usual if usual and size > usual else 1.0
        return min(ceiling, max(policy.min, policy.multiplier * p99 * longer))

    def snapshot(self) -> dict[str, dict[str, object]]:
        """For /admin/health: per model, the warm and cold summaries."""
        return {
            model: {"warm": t.warm.summary(), "cold": t.cold.summary()}
            for model, t in list(self._models.items())
        }
