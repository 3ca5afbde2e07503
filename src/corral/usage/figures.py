"""What the usage readers answer: ``UsageSummary`` (the totals of one group), ``SeriesPoint`` (one
time bucket of one group), ``UsageEntry`` (a stored record of the live tail), and how they are
built from rollup ``Totals`` and ordered.

A group folded by ``top`` (``corral.usage.top``) is a summary whose ``other`` counts the groups
in it and whose topped dimension is None; it sorts after every named group and the group
without a value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from corral.usage.record import UsageRecord
from corral.usage.rollup import Totals

PERCENTILES = (0.5, 0.95)
Label = str | None


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """Totals of one group (or of everything, when ``group`` is empty)."""

    group: tuple[tuple[str, Label], ...]
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    errors: int
    estimated: int  # requests whose token counts were estimated
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    other: int = 0  # > 0: the groups beyond 'top', this many of them, folded into this one

    def view(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            **dict(self.group),
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": self.cost_usd,
            "errors": self.errors,
            "estimated": self.estimated,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
        }
        if self.other:
            found["other"] = self.other
        return found


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """One stored record with its row id (the cursor of the live tail)."""

    id: int
    record: UsageRecord

    def view(self) -> dict[str, Any]:
        return {"id": self.id, **self.record.to_json()}


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One time bucket (of one group): its start and the same figures as ``UsageSummary``."""

    start: datetime
    summary: UsageSummary
    ttft_avg_ms: float | None = None  # streamed requests' mean time to first byte

    def view(self) -> dict[str, Any]:
        return {
            "t": self.start.isoformat().replace("+00:00", "Z"),
            **self.summary.view(),
            "ttft_avg_ms": self.ttft_avg_ms,
        }


def group_order(summary: UsageSummary, topped: str | None = None) -> list[tuple[int, str]]:
    """Sort key of a summary's group: values ascending, no value after them, "other" last."""
    return [
        (2, "") if summary.other and name == topped else (int(v is None), v or "")
        for name, v in summary.group
    ]


def from_totals(group: tuple[tuple[str, Label], ...], t: Totals, other: int = 0) -> UsageSummary:
    p50, p95 = (t.percentile(p) for p in PERCENTILES)
    return UsageSummary(
        group=group, requests=t.requests, prompt_tokens=t.prompt_tokens,
        completion_tokens=t.completion_tokens, total_tokens=t.total_tokens, cost_usd=t.cost_usd,
        errors=t.errors, estimated=t.estimated,
        latency_p50_ms=None if p50 is None else round(p50, 3),
        latency_p95_ms=None if p95 is None else round(p95, 3), other=other,
    )  # fmt: skip


def ranked(concatenated: str | None) -> list[float]:
    """SQLite's ``group_concat`` of a group's latencies, as a sorted list."""
    return sorted(map(float, concatenated.split(","))) if concatenated else []


def percentile(ranked: Sequence[float], p: float) -> float | None:
    """The ``p`` quantile of sorted ``ranked``, interpolated linearly (``percentile_cont``)."""
    if not ranked:
        return None
    position = (len(ranked) - 1) * p
    low = math.floor(position)
    high = min(low + 1, len(ranked) - 1)
    return ranked[low] + (ranked[high] - ranked[low]) * (position - low)


__all__ = [
    "PERCENTILES",
    "Label",
    "SeriesPoint",
    "UsageEntry",
    "UsageSummary",
    "from_totals",
    "group_order",
    "percentile",
    "ranked",
]
