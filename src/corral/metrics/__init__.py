"""Prometheus metrics of a gateway (``GET /metrics``); every metric is listed in docs/metrics.md."""

from __future__ import annotations

from corral.metrics.gateway import DEPLOYMENT_STATES, MAX_LABEL_VALUES, Metrics
from corral.metrics.parts import LATENCY_BUCKETS, OTHER, OVERHEAD_BUCKETS, TTFT_BUCKETS

__all__ = [
    "DEPLOYMENT_STATES",
    "LATENCY_BUCKETS",
    "MAX_LABEL_VALUES",
    "OTHER",
    "OVERHEAD_BUCKETS",
    "TTFT_BUCKETS",
    "Metrics",
]
