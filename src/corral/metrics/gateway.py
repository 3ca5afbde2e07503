"""The metrics of one gateway, served as ``GET /metrics`` in the Prometheus text format.

``Metrics`` owns its own ``CollectorRegistry`` (never the process-wide default), so several
gateways in one process (tests) do not share numbers. Observations update plain counters on the
event loop (no locks, no prometheus_client objects on the hot path); ``render`` builds the
families at scrape time. Every metric, its labels and meaning are listed in docs/metrics.md.

Labels are bounded: ``model`` and ``provider`` take only names the gateway knows (the caller's
job) and are capped at ``max_label_values`` distinct values each, later ones folding into
"other"; ``status`` is the HTTP status code; no label ever holds a key or a user string.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from corral.metrics.parts import (
    LATENCY_BUCKETS,
    OTHER,
    OVERHEAD_BUCKETS,
    TTFT_BUCKETS,
    Histogram,
    LabelCap,
    bucket_names,
)

DEPLOYMENT_STATES = ("healthy", "busy", "ejected", "misconfigured", "disabled", "unknown")
MAX_LABEL_VALUES = 500
PAIR = ("model", "provider")


class _Pair:
    """What is counted per (model, provider)."""

    __slots__ = ("cost", "fallbacks", "latency", "tokens_in", "tokens_out", "ttft")

    def __init__(self, labels: tuple[str, str]) -> None:
        self.latency = Histogram(LATENCY_BUCKETS, labels)
        self.ttft = Histogram(TTFT_BUCKETS, labels)
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost = 0.0
        self.fallbacks = 0


class _Series:
    """One label set of corral_requests_total, with shortcuts to the pair and provider parts."""

    __slots__ = ("count", "labels", "overhead", "pair")

    def __init__(self, labels: tuple[str, ...], pair: _Pair, overhead: Histogram) -> None:
        self.labels = labels
        self.count = 0
        self.pair = pair
        self.overhead = overhead


class Metrics:
    """Prometheus metrics of one gateway. Use from the event-loop thread."""

    content_type: str = CONTENT_TYPE_PLAIN_0_0_4

    def __init__(self, *, max_label_values: int = MAX_LABEL_VALUES, process: bool = True) -> None:
        self.registry = CollectorRegistry()
        self._caps = {
            "model": LabelCap("model", max_label_values),
            "provider": LabelCap("provider", max_label_values),
            "surface": LabelCap("surface", 16),
            "scope": LabelCap("scope", 16),
            "limit": LabelCap("limit", 16),
        }
        self._cache: dict[tuple[str, str, int, bool, str], _Series] = {}
        self._series: dict[tuple[str, ...], _Series] = {}
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._overhead: dict[str, Histogram] = {}
        self._in_flight = 0
        self._deployments: dict[str, str] = {}
        self._ejections: dict[str, int] = {}
        self._writer = (
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        )  # queue depth, dropped, spilled, written, replayed, rejected, errors
        self._rejected: dict[tuple[str, str], int] = {}
        self._limiter = (0, 0)  # fail-open admits, store errors
        self._affinity = (0, 0, 0, 0, 0)  # session affinity: hits, misses, repins, spills, Redis errors
        self._hooks: list[Callable[[], None]] = []
        self.registry.register(_Collector(self))
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    # -- the request path -------------------------------------------------------------------

    def observe_request(
        self,
        *,
        model: str,
        provider: str,
        status: int,
        streamed: bool,
        surface: str,
        latency_s: float,
        ttft_s: float | None,
        overhead_s: float,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float,
        fallback: bool,
    ) -> None:
        """Count one finished request (any outcome). ``ttft_s`` is None when no token came."""
        series = self._cache.get((model, provider, status, streamed, surface))
        if series is None:
            series = self._resolve(model, provider, status, streamed, surface)
        series.count += 1
        series.overhead.observe(overhead_s)
        pair = series.pair
        pair.latency.observe(latency_s)
        if ttft_s is not None:
            pair.ttft.observe(ttft_s)
        pair.tokens_in += prompt_tokens
        pair.tokens_out += completion_tokens
        pair.cost += cost
        if fallback:
            pair.fallbacks += 1

    def _resolve(self, model: str, provider: str, status: int, streamed: bool, surface: str) -> _Series:
        caps = self._caps
        labels = (
            caps["model"](model),
            caps["provider"](provider),
            str(status) if 100 <= status <= 599 else OTHER,
            caps["surface"](surface),
            "true" if streamed else "false",
        )
        series = self._series.get(labels)
        if series is None:
            pair_labels = (labels[0], labels[1])
            pair = self._pairs.get(pair_labels)
            if pair is None:
                pair = self._pairs[pair_labels] = _Pair(pair_labels)
            overhead = self._overhead.get(labels[1])
            if overhead is None:
                overhead = self._overhead[labels[1]] = Histogram(OVERHEAD_BUCKETS, (labels[1],))
            series = self._series[labels] = _Series(labels, pair, overhead)
        if OTHER not in labels:  # folded values are not cached, so the cache stays bounded too
            self._cache[(model, provider, status, streamed, surface)] = series
        return series

    def inc_in_flight(self) -> None:
        self._in_flight += 1

    def dec_in_flight(self) -> None:
        self._in_flight -= 1

    # -- state set by background parts --------------------------------------------------------

    def set_deployment_state(self, provider: str, state: str) -> None:
        """One-hot over DEPLOYMENT_STATES; a state not in it counts as "unknown"."""
        self._deployments[self._caps["provider"](provider)] = (
            state if state in DEPLOYMENT_STATES else "unknown"
        )

    def forget_deployment(self, provider: str) -> None:
        """Stop exporting the state of a provider that was removed from the config."""
        self._deployments.pop(provider, None)

    def inc_ejection(self, provider: str) -> None:
        name = self._caps["provider"](provider)
        self._ejections[name] = self._ejections.get(name, 0) + 1

    def set_usage_writer(
        self,
        *,
        queue_depth: int,
        dropped: int,
        spilled: int,
        written: int,
        replayed: int,
        rejected: int,
        sink_errors: int,
    ) -> None:
        """The usage writer's queue depth now and its running totals (``WriterStats`` counters)."""
        self._writer = (queue_depth, dropped, spilled, written, replayed, rejected, sink_errors)

    def set_limiter(self, *, rejected: Mapping[tuple[str, str], int], fail_open: int, errors: int) -> None:
        """The limiter's running totals (``LimiterStats``): 429s by (scope, limit), admits let
        through while Redis was unreachable, Redis errors."""
        folded: dict[tuple[str, str], int] = {}
        for (scope, limit), count in rejected.items():
            key = (self._caps["scope"](scope), self._caps["limit"](limit))
            folded[key] = folded.get(key, 0) + count
        self._rejected = folded
        self._limiter = (fail_open, errors)

    def set_affinity(self, *, hits: int, misses: int, repins: int, spills: int, shared_errors: int) -> None:
        """Session affinity's running totals (``AffinityStats``)."""
        self._affinity = (hits, misses, repins, spills, shared_errors)

    def on_render(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` at each scrape, before rendering (to pull totals with the set_* methods)."""
        self._hooks.append(hook)

    def render(self) -> bytes:
        """The Prometheus text exposition (``content_type``) of every metric."""
        for hook in self._hooks:
            hook()
        data: bytes = generate_latest(self.registry)
        return data

    # -- scrape time --------------------------------------------------------------------------

    def families(self) -> Iterator[Metric]:
        yield from self._request_families()
        in_flight = GaugeMetricFamily("corral_in_flight_requests", "Requests being served now.")
        in_flight.add_metric([], self._in_flight)
        yield in_flight
        state = GaugeMetricFamily(
            "corral_deployment_state",
            "Health state of each deployment: 1 for its current state, 0 for the others.",
            labels=["provider", "state"],
        )
        for provider, current in sorted(self._deployments.items()):
            for name in DEPLOYMENT_STATES:
                state.add_metric([provider, name], 1.0 if name == current else 0.0)
        yield state
        yield _counter(
            "corral_deployment_ejections_total",
            "Times a deployment was ejected after failures.",
            ["provider"],
            {(p,): n for p, n in self._ejections.items()},
        )
        yield from self._writer_families()
        yield from self._limiter_families()
        hits, misses, repins, spills, shared_errors = self._affinity
        yield _counter(
            "corral_affinity_total",
            "Answers to calls with a conversation key, by session affinity's result: hit (the pinned "
            "deployment answered), miss (no pin yet), repin (the pin moved to another deployment), "
            "spill (a short prompt went at once to a free warm deployment: its pinned one was full).",
            ["result"],
            {("hit",): hits, ("miss",): misses, ("repin",): repins, ("spill",): spills},
        )
        yield _counter(
            "corral_affinity_redis_errors_total",
            "Errors sharing affinity pins through Redis (the pins stay local meanwhile).",
            [],
            {(): shared_errors},
        )
        yield _counter(
            "corral_metrics_label_overflow_total",
            'Observations whose label value was folded into "other" by the cardinality cap.',
            ["label"],
            {(name,): cap.folded for name, cap in self._caps.items()},
        )

    def _request_families(self) -> Iterator[Metric]:
        yield _counter(
            "corral_requests_total",
            "Finished requests by model, provider, HTTP status, API surface and streaming.",
            ["model", "provider", "status", "surface", "streamed"],
            {s.labels: s.count for s in list(self._series.values())},
        )
        pairs = sorted(self._pairs.items())
        yield _histogram(
            "corral_request_duration_seconds",
            "Total latency of a request, from its arrival to its last byte.",
            PAIR,
            [p.latency for _, p in pairs],
        )
        yield _histogram(
            "corral_time_to_first_token_seconds",
            "Time from a request's arrival to its first token (requests that produced one).",
            PAIR,
            [p.ttft for _, p in pairs],
        )
        yield _histogram(
            "corral_overhead_seconds",
            "Time corral itself spent on a request, outside the upstream call.",
            ("provider",),
            [h for _, h in sorted(self._overhead.items())],
        )
        tokens = CounterMetricFamily(
            "corral_tokens", "Tokens in (prompt) and out (completion).", labels=[*PAIR, "direction"]
        )
        for labels, pair in pairs:
            tokens.add_metric([*labels, "in"], pair.tokens_in)
            tokens.add_metric([*labels, "out"], pair.tokens_out)
        yield tokens
        yield _counter(
            "corral_cost_total",
            "Cost of the requests, in the currency of the price table (USD by default).",
            PAIR,
            {labels: p.cost for labels, p in pairs},
        )
        yield _counter(
            "corral_fallbacks_total",
            "Requests served (or failed) by a fallback, not the first choice.",
            PAIR,
            {labels: p.fallbacks for labels, p in pairs},
        )

    def _writer_families(self) -> Iterator[Metric]:
        depth, dropped, spilled, written, replayed, rejected, sink_errors = self._writer
        queue = GaugeMetricFamily("corral_usage_writer_queue_depth", "Usage records waiting to be written.")
        queue.add_metric([], depth)
        yield queue
        yield _counter("corral_usage_writer_dropped_total", "Usage records dropped.", [], {(): dropped})
        yield _counter(
            "corral_usage_writer_spilled_total", "Usage records spilled to disk.", [], {(): spilled}
        )
        yield _counter("corral_usage_writer_written_total", "Usage records written.", [], {(): written})
        yield _counter(
            "corral_usage_writer_replayed_total",
            "Usage records written to the store from the spill file (after an outage or a restart).",
            [],
            {(): replayed},
        )
        yield _counter(
            "corral_usage_writer_rejected_total",
            "Usage records refused by the store, or unreadable spill lines, set aside in the .bad file.",
            [],
            {(): rejected},
        )
        yield _counter(
            "corral_usage_writer_sink_errors_total",
            "Failed writes of a batch of usage records to the store (the records are spilled, not lost).",
            [],
            {(): sink_errors},
        )

    def _limiter_families(self) -> Iterator[Metric]:
        fail_open, errors = self._limiter
        yield _counter(
            "corral_rate_limited_total",
            "Requests refused with 429 by a limit, by scope (key, user) and limit.",
            ["scope", "limit"],
            self._rejected,
        )
        yield _counter(
            "corral_limiter_fail_open_total",
            "Requests let through unlimited because Redis was unreachable.",
            [],
            {(): fail_open},
        )
        yield _counter("corral_limiter_errors_total", "Errors talking to the limits Redis.", [], {(): errors})


def _counter(
    name: str, doc: str, labels: list[str] | tuple[str, ...], values: Mapping[Any, float]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(labels))
    for label_values, value in sorted(values.items()):
        family.add_metric(list(label_values), value)
    return family


def _histogram(
    name: str, doc: str, labels: tuple[str, ...], histograms: list[Histogram]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    if histograms:
        names = bucket_names(histograms[0].bounds)  # one bucket set per family
        for histogram in histograms:
            family.add_metric(list(histogram.labels), histogram.buckets(names), histogram.sum)
    return family


class _Collector:
    """Adapts ``Metrics`` to prometheus_client's collector interface."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()

    def describe(self) -> list[Any]:
        return []
