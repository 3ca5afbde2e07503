"""Metrics: what is observed is what is rendered, the labels stay bounded, instances are separate."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from corral.limits import InProcessLimiter, Limits, RateLimited
from corral.metrics import DEPLOYMENT_STATES, OTHER, Metrics


def observe(metrics: Metrics, **overrides: Any) -> None:
    values: dict[str, Any] = {
        "model": "llama3.2",
        "provider": "local",
        "status": 200,
        "streamed": False,
        "surface": "openai",
        "latency_s": 0.8,
        "ttft_s": 0.2,
        "overhead_s": 0.0003,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost": 0.001,
        "fallback": False,
    }
    values.update(overrides)
    metrics.observe_request(**values)


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the rendered text: (name, labels) -> value."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, frozenset(labels.items()))]


def test_render_parses_and_lists_every_metric() -> None:
    metrics = Metrics()
    assert metrics.content_type.startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(metrics.render().decode())}
    expected = {
        "corral_requests",
        "corral_request_duration_seconds",
        "corral_time_to_first_token_seconds",
        "corral_overhead_seconds",
        "corral_tokens",
        "corral_cost",
        "corral_fallbacks",
        "corral_in_flight_requests",
        "corral_deployment_state",
        "corral_deployment_ejections",
        "corral_usage_writer_queue_depth",
        "corral_usage_writer_dropped",
        "corral_usage_writer_spilled",
        "corral_usage_writer_written",
        "corral_usage_writer_replayed",
        "corral_usage_writer_rejected",
        "corral_usage_writer_sink_errors",
        "corral_rate_limited",
        "corral_limiter_fail_open",
        "corral_limiter_errors",
        "corral_metrics_label_overflow",
    }
    assert expected <= names
    assert "process_cpu_seconds" in names or "python_info" in names


def test_requests_counters_and_histograms_match_what_was_observed() -> None:
    metrics = Metrics()
    observe(metrics)
    observe(metrics, latency_s=3.0, ttft_s=None, status=502, prompt_tokens=7, completion_tokens=0, cost=0.0)
    observe(metrics, streamed=True, latency_s=0.05, ttft_s=0.03, overhead_s=0.002, fallback=True)
    observe(metrics, model="qwen3", provider="cloud", surface="ollama", cost=0.5)
    pair = {"model": "llama3.2", "provider": "local"}
    base = {**pair, "surface": "openai"}
    assert value(metrics, "corral_requests_total", **base, status="200", streamed="false") == 1
    assert value(metrics, "corral_requests_total", **base, status="502", streamed="false") == 1
    assert value(metrics, "corral_requests_total", **base, status="200", streamed="true") == 1
    qwen = {"model": "qwen3", "provider": "cloud", "surface": "ollama", "status": "200", "streamed": "false"}
    assert value(metrics, "corral_requests_total", **qwen) == 1
    latency = "corral_request_duration_seconds"
    assert value(metrics, f"{latency}_count", **pair) == 3
    assert abs(value(metrics, f"{latency}_sum", **pair) - 3.85) < 1e-9
    assert value(metrics, f"{latency}_bucket", **pair, le="0.05") == 1
    assert value(metrics, f"{latency}_bucket", **pair, le="1.0") == 2
    assert value(metrics, f"{latency}_bucket", **pair, le="2.0") == 2
    assert value(metrics, f"{latency}_bucket", **pair, le="4.0") == 3
    assert value(metrics, f"{latency}_bucket", **pair, le="+Inf") == 3
    ttft = "corral_time_to_first_token_seconds"
    assert value(metrics, f"{ttft}_count", **pair) == 2  # the 502 produced no token
    assert value(metrics, f"{ttft}_bucket", **pair, le="0.05") == 1
    overhead = "corral_overhead_seconds"
    assert value(metrics, f"{overhead}_count", provider="local") == 3
    assert value(metrics, f"{overhead}_bucket", provider="local", le="0.00035") == 2
    assert value(metrics, f"{overhead}_bucket", provider="local", le="0.002") == 3
    assert value(metrics, "corral_tokens_total", **pair, direction="in") == 27
    assert value(metrics, "corral_tokens_total", **pair, direction="out") == 10
    assert abs(value(metrics, "corral_cost_total", **pair) - 0.002) < 1e-12
    assert value(metrics, "corral_cost_total", model="qwen3", provider="cloud") == 0.5
    assert value(metrics, "corral_fallbacks_total", **pair) == 1
    assert value(metrics, "corral_fallbacks_total", model="qwen3", provider="cloud") == 0


def test_gauges_and_background_totals() -> None:
    metrics = Metrics()
    metrics.inc_in_flight()
    metrics.inc_in_flight()
    metrics.dec_in_flight()
    assert value(metrics, "corral_in_flight_requests") == 1
    metrics.set_deployment_state("local", "healthy")
    metrics.set_deployment_state("cloud", "ejected")
    metrics.set_deployment_state("cloud", "busy")
    metrics.set_deployment_state("odd", "sideways")
    rendered = samples(metrics)
    for provider, current in (("local", "healthy"), ("cloud", "busy"), ("odd", "unknown")):
        for state in DEPLOYMENT_STATES:
            key = ("corral_deployment_state", frozenset({("provider", provider), ("state", state)}))
            assert rendered[key] == (1.0 if state == current else 0.0)
    metrics.forget_deployment("odd")
    assert not any(("provider", "odd") in labels for _, labels in samples(metrics))
    metrics.inc_ejection("cloud")
    metrics.inc_ejection("cloud")
    assert value(metrics, "corral_deployment_ejections_total", provider="cloud") == 2
    metrics.set_usage_writer(
        queue_depth=4, dropped=1, spilled=2, written=300, replayed=7, rejected=3, sink_errors=5
    )
    assert value(metrics, "corral_usage_writer_queue_depth") == 4
    assert value(metrics, "corral_usage_writer_dropped_total") == 1
    assert value(metrics, "corral_usage_writer_spilled_total") == 2
    assert value(metrics, "corral_usage_writer_written_total") == 300
    assert value(metrics, "corral_usage_writer_replayed_total") == 7
    assert value(metrics, "corral_usage_writer_rejected_total") == 3
    assert value(metrics, "corral_usage_writer_sink_errors_total") == 5


async def test_limiter_totals_are_pulled_at_render() -> None:
    metrics = Metrics()
    limiter = InProcessLimiter()
    metrics.on_render(
        lambda: metrics.set_limiter(
            rejected=limiter.stats.rejected, fail_open=limiter.stats.fail_open, errors=limiter.stats.errors
        )
    )
    await limiter.admit("key:k", Limits(rpm=1), estimated_tokens=0)
    for _ in range(3):
        with contextlib.suppress(RateLimited):
            await limiter.admit("key:k", Limits(rpm=1), estimated_tokens=0)
    assert value(metrics, "corral_rate_limited_total", scope="key", limit="rpm") == 3
    assert value(metrics, "corral_limiter_fail_open_total") == 0


def test_affinity_totals_by_result() -> None:
    metrics = Metrics()
    metrics.set_affinity(hits=5, misses=2, repins=1, spills=0, shared_errors=0)
    assert value(metrics, "corral_affinity_total", result="spill") == 0
    metrics.set_affinity(hits=5, misses=2, repins=1, spills=3, shared_errors=1)
    results = ("hit", "miss", "repin", "spill")
    assert [value(metrics, "corral_affinity_total", result=r) for r in results] == [5, 2, 1, 3]
    assert value(metrics, "corral_affinity_redis_errors_total") == 1


def test_label_cardinality_is_capped() -> None:
    metrics = Metrics(max_label_values=3)
    for i in range(10):
        observe(metrics, model=f"model-{i}")
    observe(metrics, model="model-1")  # a value seen before the cap was reached keeps its name
    observe(metrics, provider="p" * 500)  # overlong values fold too
    observe(metrics, status=999)
    rendered = samples(metrics)
    models = {dict(labels)["model"] for name, labels in rendered if name == "corral_requests_total"}
    assert models == {"model-0", "model-1", "model-2", OTHER}
    providers = {dict(labels)["provider"] for name, labels in rendered if name == "corral_requests_total"}
    assert providers == {"local", OTHER}
    statuses = {dict(labels)["status"] for name, labels in rendered if name == "corral_requests_total"}
    assert statuses == {"200", OTHER}
    other = {"model": OTHER, "provider": "local", "status": "200", "surface": "openai", "streamed": "false"}
    assert rendered[("corral_requests_total", frozenset(other.items()))] == 7
    assert value(metrics, "corral_metrics_label_overflow_total", label="model") == 7 + 2
    assert value(metrics, "corral_metrics_label_overflow_total", label="provider") == 1
    assert len(metrics._cache) <= 4  # folded values are never cached


def test_instances_are_independent_and_off_the_global_registry() -> None:
    first, second = Metrics(), Metrics(process=False)
    observe(first)
    first.inc_in_flight()
    assert value(first, "corral_in_flight_requests") == 1
    assert value(second, "corral_in_flight_requests") == 0
    assert not any(name == "corral_requests_total" for name, _ in samples(second))
    assert b"corral_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


def test_observe_request_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path resolves labels once per label set, then only counts: 100,000 requests
    over 20 models resolve 20 times and render exactly what was observed. (The time per call
    is printed for information; it is not asserted.)"""
    metrics = Metrics()
    resolved: list[tuple[Any, ...]] = []
    resolve = metrics._resolve

    def counting(*labels: Any) -> Any:
        resolved.append(labels)
        return resolve(*labels)

    monkeypatch.setattr(metrics, "_resolve", counting)
    models = [f"m{i}" for i in range(20)]
    n = 100_000
    start = time.perf_counter()
    for i in range(n):
        metrics.observe_request(
            model=models[i % 20],
            provider="local",
            status=200,
            streamed=True,
            surface="openai",
            latency_s=1.5,
            ttft_s=0.12,
            overhead_s=0.0004,
            prompt_tokens=100,
            completion_tokens=50,
            cost=0.0,
            fallback=False,
        )
    per_call = (time.perf_counter() - start) / n
    assert sorted(labels[0] for labels in resolved) == sorted(models)  # once per label set, not per call
    start = time.perf_counter()
    size = len(metrics.render())
    render_ms = (time.perf_counter() - start) * 1e3
    rendered = samples(metrics)
    per_model = n // 20
    series = {"provider": "local", "status": "200", "surface": "openai", "streamed": "true"}
    for model in models:
        assert rendered[("corral_requests_total", frozenset({**series, "model": model}.items()))] == per_model
        pair = frozenset({"model": model, "provider": "local"}.items())
        assert rendered[("corral_request_duration_seconds_count", pair)] == per_model
        assert rendered[("corral_tokens_total", pair | {("direction", "in")})] == 100 * per_model
        assert rendered[("corral_tokens_total", pair | {("direction", "out")})] == 50 * per_model
    assert value(metrics, "corral_overhead_seconds_count", provider="local") == n
    assert sum(1 for name, _ in rendered if name == "corral_requests_total") == 20
    print(
        f"\nobserve_request: {per_call * 1e6:.2f} µs per call; "
        f"render of 20 models: {render_ms:.1f} ms, {size} bytes"
    )
