"""First-token sketches and the deadlines they give (routing/deadlines.py, DeploymentState)."""

from __future__ import annotations

import pytest

from corral.routing.deadlines import MIN_SAMPLES, RECENT, SAMPLES, DeadlinePolicy, FirstTokens, Ring
from corral.routing.state import DeploymentState

POLICY = DeadlinePolicy(multiplier=3.0, min=0.5, max=None, load_timeout=300.0)


def test_ring_keeps_the_last_samples_and_their_quantiles() -> None:
    ring = Ring()
    for i in range(SAMPLES * 3):
        ring.add(1000.0 + i if i < SAMPLES * 2 else float(i % 10))  # old outliers roll out
    assert len(ring.values) == SAMPLES and ring.count == SAMPLES * 3
    assert ring.p99 is not None and ring.p99 <= 9.0 and ring.p50 is not None and 3.0 <= ring.p50 <= 6.0


def test_warm_deadline_is_a_multiple_of_p99_clamped() -> None:
    times = FirstTokens()
    assert times.deadline("m", True, 30.0, POLICY) == 30.0  # no history: the fixed timeout
    for _ in range(MIN_SAMPLES):
        times.observe("m", 0.05, True, 0.0)
    assert times.deadline("m", True, 30.0, POLICY) == 0.5  # 3 x 0.05 s, clamped up to min
    for _ in range(SAMPLES):
        times.observe("m", 2.0, True, 0.0)
    assert times.deadline("m", True, 30.0, POLICY) == pytest.approx(6.0)
    assert times.deadline("m", True, 4.0, POLICY) == 4.0  # clamped down to max (the fixed one)
    assert times.deadline("m", True, 30.0, DeadlinePolicy(max=5.0)) == 5.0
    assert times.deadline("other", True, 30.0, POLICY) == 30.0  # per model


def test_a_prompt_longer_than_the_ones_the_times_come_from_gets_a_longer_deadline() -> None:
    times = FirstTokens()
    for _ in range(SAMPLES):
        times.observe("m", 0.4, True, 0.0, size=2_000)  # a chat's short turns: 0.4 s to the first token
    assert times.deadline("m", True, 30.0, POLICY, size=2_000) == pytest.approx(1.2)
    assert times.deadline("m", True, 30.0, POLICY, size=500) == pytest.approx(1.2)  # shorter: never less
    # an agent's 40 kB context: 20 x the usual size, 20 x the allowance (prompt evaluation grows with it)
    assert times.deadline("m", True, 30.0, POLICY, size=40_000) == pytest.approx(24.0)
    assert times.deadline("m", True, 10.0, POLICY, size=400_000) == 10.0  # still within the ceiling
    for _ in range(SAMPLES):
        times.observe("m", 0.4, True, 0.0, size=40_000)  # now the long ones are the usual ones
    assert times.deadline("m", True, 30.0, POLICY, size=40_000) == pytest.approx(1.2)


def test_cold_deadline_is_the_load_allowance_unless_another_deployment_is_left() -> None:
    times = FirstTokens()
    for _ in range(MIN_SAMPLES):
        times.observe("m", 0.05, True, 0.0)
    assert times.deadline("m", False, 30.0, POLICY, elsewhere=False) == 300.0
    assert times.deadline("m", False, 30.0, POLICY, elsewhere=True) == 30.0
    for _ in range(SAMPLES):
        times.observe("m", 20.0, False, 0.0)  # cold samples never shape the warm deadline
    assert times.deadline("m", True, 30.0, POLICY) == 0.5


def test_the_last_candidate_is_never_cut_shorter_than_the_fixed_timeout() -> None:
    times = FirstTokens()
    for _ in range(MIN_SAMPLES):
        times.observe("m", 0.05, True, 0.0)
    assert times.deadline("m", True, 30.0, POLICY, elsewhere=True) == 0.5  # a hung one fails over fast
    assert times.deadline("m", True, 30.0, POLICY, elsewhere=False) == 30.0  # nowhere to go: no cut


def test_a_recent_stream_counts_warm_when_the_probe_is_stale() -> None:
    state = DeploymentState("gpu", "ollama")  # /api/ps lists nothing
    for _ in range(MIN_SAMPLES):
        state.first_tokens.observe("llama3.2", 0.05, True, 100.0)
    assert state.first_token_deadline("llama3.2", None, 30.0, POLICY, 100.0 + RECENT / 2) == (0.5, True)
    late = 100.0 + RECENT * 2
    assert state.first_token_deadline("llama3.2", None, 30.0, POLICY, late, elsewhere=False) == (300.0, False)
    vllm = DeploymentState("vllm", "openai")  # does not report loaded models
    assert vllm.first_token_deadline("m", None, 30.0, POLICY, 0.0) == (30.0, None)


def test_models_per_deployment_are_bounded() -> None:
    from corral.routing.deadlines import MAX_MODELS

    times = FirstTokens()
    for i in range(MAX_MODELS + 10):
        times.observe(f"m{i}", 0.1, True, 0.0)
    snapshot = times.snapshot()
    assert len(snapshot) == MAX_MODELS and "m0" not in snapshot and f"m{MAX_MODELS + 9}" in snapshot
