"""Building blocks of the gateway metrics: bucket sets, a plain histogram and the label cap.

These hold plain Python numbers and are updated on the event loop without locks; they are
turned into Prometheus families only when ``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

OTHER = "other"
MAX_LABEL_LENGTH = 200

# total latency of a request: from ms (cached, tiny) to minutes (long generations)
LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
# time to first token: warm models answer in tens of ms, cold loads take tens of seconds
TTFT_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 40.0, 90.0,
)  # fmt: skip
# corral's own time on a request (everything but waiting on the upstream): µs to ms
OVERHEAD_BUCKETS = (
    25e-6, 50e-6, 100e-6, 200e-6, 350e-6, 500e-6, 750e-6, 1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
)  # fmt: skip


class Histogram:
    """Counts per bucket (not cumulative) and the sum; ``buckets()`` gives the cumulative form."""

    __slots__ = ("bounds", "counts", "labels", "sum")

    def __init__(self, bounds: Sequence[float], labels: tuple[str, ...] = ()) -> None:
        self.bounds = bounds
        self.labels = labels
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self, names: Sequence[str]) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs, ``names`` being the formatted bounds and "+Inf"."""
        total = 0
        out: list[tuple[str, float]] = []
        for name, count in zip(names, self.counts, strict=True):
            total += count
            out.append((name, total))
        return out


def bucket_names(bounds: Sequence[float]) -> tuple[str, ...]:
    return (*(repr(float(b)) for b in bounds), "+Inf")  # as prometheus_client writes them


class LabelCap:
    """The distinct values one label may take: the first ``limit`` seen are kept, later new ones
    become "other" (and are counted in ``folded``), so a label's cardinality stays bounded."""

    __slots__ = ("folded", "limit", "name", "values")

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.values: set[str] = set()
        self.folded = 0

    def __call__(self, value: str) -> str:
        if value in self.values:
            return value
        if len(self.values) >= self.limit or len(value) > MAX_LABEL_LENGTH:
            self.folded += 1
            return OTHER
        self.values.add(value)
        return value
