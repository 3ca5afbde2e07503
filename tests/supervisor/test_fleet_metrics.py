"""/metrics of several workers: each worker's snapshot file, merged by the one answering."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from corral.metrics import Metrics
from corral.metrics.fleet import STALE, FleetMetrics, snapshot_path


def _observe(metrics: Metrics, n: int) -> None:
    for _ in range(n):
        metrics.observe_request(
            model="gpu/llama3.2", provider="gpu", status=200, streamed=True, surface="openai", latency_s=0.2,
            ttft_s=0.05, overhead_s=0.0003, prompt_tokens=3, completion_tokens=5, cost=0.0, fallback=False,
        )  # fmt: skip


def _samples(text: str, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[s.labels["worker"]] = out.get(s.labels["worker"], 0.0) + s.value
    return out


def test_the_answering_worker_shows_every_worker_with_its_label(tmp_path: Path) -> None:
    workers = [Metrics() for _ in range(3)]
    fleet = [FleetMetrics(m, tmp_path, i, 3) for i, m in enumerate(workers)]
    for i, m in enumerate(workers):
        _observe(m, i + 1)
    fleet[1].write()
    fleet[2].write()
    text = fleet[0].render().decode()
    assert _samples(text, "corral_requests_total") == {"0": 1.0, "1": 2.0, "2": 3.0}
    assert set(_samples(text, "corral_request_duration_seconds_count")) == {"0", "1", "2"}
    assert text.count("# TYPE corral_requests_total counter") == 1  # one family, not three
    # the answering worker is live, its peers as of their last snapshot
    _observe(workers[0], 5)
    _observe(workers[2], 5)
    assert _samples(fleet[0].render().decode(), "corral_requests_total") == {"0": 6.0, "1": 2.0, "2": 3.0}


def test_a_dead_or_silent_worker_is_left_out(tmp_path: Path) -> None:
    a, b = Metrics(), Metrics()
    fa, fb = FleetMetrics(a, tmp_path, 0, 2), FleetMetrics(b, tmp_path, 1, 2)
    _observe(b, 2)
    fb.write()
    old = snapshot_path(tmp_path, 1).stat().st_mtime - STALE - 1
    os.utime(snapshot_path(tmp_path, 1), (old, old))
    assert set(_samples(fa.render().decode(), "process_cpu_seconds_total")) == {"0"}
    fb.write()
    snapshot_path(tmp_path, 1).write_text("not an exposition {{{\n")
    assert set(_samples(fa.render().decode(), "process_cpu_seconds_total")) == {"0"}
    fb.write()
    fb.remove()
    assert not snapshot_path(tmp_path, 1).exists()
    assert set(_samples(fa.render().decode(), "process_cpu_seconds_total")) == {"0"}
