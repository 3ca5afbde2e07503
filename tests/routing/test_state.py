"""DeploymentState: status, routability, load, warm models, passive ejection with trials, active checks."""

from __future__ import annotations

import pytest

from corral.config.schema import RouterConfig
from corral.routing.state import BUSY, DISABLED, EJECTED, HEALTHY, MISCONFIGURED, UNKNOWN, DeploymentState

CFG = RouterConfig(eject_after=3, eject_base=5.0, eject_max=300.0)
NOW = 1000.0


def ollama(**kw: object) -> DeploymentState:
    return DeploymentState("gpu", "ollama", **kw)  # type: ignore[arg-type]


def ejected(now: float = NOW, cfg: RouterConfig = CFG) -> DeploymentState:
    state = DeploymentState("vllm", "openai")
    for _ in range(cfg.eject_after):
        state.record_failure(now, "HTTP 500", cfg)
    return state


# status ------------------------------------------------------------------------------------


def test_status_unknown_before_any_check_or_request_then_healthy() -> None:
    state = ollama()
    assert state.status(NOW) == UNKNOWN
    state.record_check(True, 3.0, None)
    assert state.status(NOW) == HEALTHY
    fresh = ollama()
    fresh.start(NOW)
    assert fresh.status(NOW) == HEALTHY


def test_status_busy_when_slots_full_or_backing_off() -> None:
    state = ollama(max_parallel=2)
    state.record_check(True, 1.0, None)
    state.start(NOW)
    assert state.status(NOW) == HEALTHY
    state.start(NOW)
    assert state.status(NOW) == BUSY
    state.finish()
    assert state.status(NOW) == HEALTHY
    state.record_busy(NOW, 1.0)
    assert state.status(NOW + 0.5) == BUSY
    assert state.status(NOW + 1.5) == HEALTHY


def test_status_precedence_disabled_over_misconfigured_over_ejected_over_busy() -> None:
    state = ejected()
    state.record_busy(NOW, 60.0)
    assert state.status(NOW + 1) == EJECTED
    state.record_misconfigured("HTTP 401: bad key")
    assert state.status(NOW + 1) == MISCONFIGURED
    state.enabled = False
    assert state.status(NOW + 1) == DISABLED


def test_status_uses_the_clock_when_now_is_omitted() -> None:
    state = ejected(now=-1e9)  # back-off long over on the monotonic clock
    assert state.status() != EJECTED
    far = ejected(now=1e12)
    assert far.status() == EJECTED


# capacity and load -------------------------------------------------------------------------


def test_has_capacity_respects_max_parallel_and_zero_means_uncapped() -> None:
    capped = ollama(max_parallel=1)
    assert capped.has_capacity()
    capped.start(NOW)
    assert not capped.has_capacity()
    capped.finish()
    assert capped.has_capacity()
    uncapped = DeploymentState("vllm", "openai", max_parallel=0, in_flight=500)
    assert uncapped.has_capacity()


def test_finish_never_goes_negative() -> None:
    state = ollama()
    state.finish()
    assert state.in_flight == 0


def test_load_is_in_flight_over_capacity_uncapped_counts_as_eight() -> None:
    assert ollama(max_parallel=4, in_flight=1).load() == pytest.approx(0.25)
    assert ollama(max_parallel=2, in_flight=2).load() == pytest.approx(1.0)
    assert DeploymentState("v", "openai", in_flight=4).load() == pytest.approx(0.5)


# warm --------------------------------------------------------------------------------------


def test_warm_bare_name_means_latest_tag() -> None:
    state = ollama(loaded={"llama3.2:latest": 8192})
    assert state.warm("llama3.2", None) is True
    assert state.warm("llama3.2:latest", None) is True
    assert state.warm("llama3.2:1b", None) is False
    assert state.warm("qwen3", None) is False


def test_warm_tag_in_last_path_segment_only() -> None:
    state = ollama(loaded={"registry.local:5000/team/coder:latest": None, "hf.co/org/m:Q4_K_M": None})
    assert state.warm("registry.local:5000/team/coder", None) is True
    assert state.warm("hf.co/org/m:Q4_K_M", None) is True
    assert state.warm("hf.co/org/m", None) is False


def test_warm_matches_context_length_when_asked() -> None:
    state = ollama(loaded={"qwen3:8b": 8192, "mistral:latest": None})
    assert state.warm("qwen3:8b", 8192) is True
    assert state.warm("qwen3:8b", 4096) is False
    assert state.warm("qwen3:8b", None) is True
    assert state.warm("mistral", 32768) is True  # context unknown: counts as a match


def test_warm_is_none_for_non_ollama() -> None:
    state = DeploymentState("vllm", "openai", loaded={"qwen3:8b": None})
    assert state.warm("qwen3:8b", None) is None


# passive ejection --------------------------------------------------------------------------


def test_ejects_after_eject_after_consecutive_failures() -> None:
    state = DeploymentState("vllm", "openai")
    state.record_failure(NOW, "HTTP 500", CFG)
    state.record_failure(NOW, "HTTP 502", CFG)
    assert state.routable(NOW) and state.status(NOW) != EJECTED
    state.record_failure(NOW, "HTTP 504", CFG)
    assert not state.routable(NOW)
    assert state.status(NOW) == EJECTED
    assert state.ejected_until == pytest.approx(NOW + 5.0)
    assert state.last_error == "HTTP 504"
    assert state.failures == 3 and state.ejections == 1


def test_success_resets_the_consecutive_count() -> None:
    state = DeploymentState("vllm", "openai")
    state.record_failure(NOW, "x", CFG)
    state.record_failure(NOW, "x", CFG)
    state.record_success(10.0)
    state.record_failure(NOW, "x", CFG)
    state.record_failure(NOW, "x", CFG)
    assert state.routable(NOW) and state.ejections == 0


def test_eject_now_ejects_on_the_first_failure() -> None:
    state = DeploymentState("vllm", "openai")
    state.record_failure(NOW, "health check failed", CFG, eject_now=True)
    assert not state.routable(NOW + 1) and state.ejected_until == pytest.approx(NOW + 5.0)


def test_expired_ejection_admits_exactly_one_trial() -> None:
    state = ejected()
    later = NOW + 6.0
    assert state.routable(later)
    state.start(later)
    assert state.trial_in_flight
    assert not state.routable(later)  # a second request waits for the trial's verdict
    assert not state.routable(later + 100)


def test_trial_success_unejects() -> None:
    state = ejected()
    later = NOW + 6.0
    state.start(later)
    state.finish()
    state.record_success(20.0)
    assert state.routable(later)
    assert not state.trial_in_flight and state.consecutive_failures == 0
    state.start(later)
    state.start(later)
    assert state.routable(later) and not state.trial_in_flight  # healthy again: no trial gating


def test_trial_failure_reejects_with_a_doubled_backoff() -> None:
    state = ejected()
    t = NOW + 6.0
    expected = [10.0, 20.0, 40.0]
    for backoff in expected:
        state.start(t)
        state.finish()
        state.record_failure(t, "HTTP 500", CFG)
        assert not state.trial_in_flight
        assert state.ejected_until == pytest.approx(t + backoff)
        assert not state.routable(t + backoff - 0.01)
        t += backoff + 0.5
        assert state.routable(t)


def test_backoff_is_capped_at_eject_max() -> None:
    cfg = RouterConfig(eject_after=1, eject_base=5.0, eject_max=30.0)
    state = DeploymentState("vllm", "openai")
    t = NOW
    backoffs = []
    for _ in range(6):
        state.start(t)
        state.finish()
        state.record_failure(t, "x", cfg)
        backoffs.append(state.ejected_until - t)
        t = state.ejected_until + 0.1
    assert backoffs == pytest.approx([5.0, 10.0, 20.0, 30.0, 30.0, 30.0])


def test_late_failures_while_ejected_do_not_lengthen_the_ejection() -> None:
    state = DeploymentState("vllm", "openai")
    for _ in range(6):  # six concurrent requests fail at once
        state.record_failure(NOW, "HTTP 500", CFG)
    assert state.ejections == 1
    assert state.ejected_until == pytest.approx(NOW + CFG.eject_base)


def test_busy_during_a_trial_frees_the_trial_slot() -> None:
    state = ejected()
    later = NOW + 6.0
    state.start(later)
    state.record_busy(later, 1.0)
    assert not state.trial_in_flight
    assert state.routable(later) and state.is_busy(later)
    assert not state.is_busy(later + 1.5)


def test_record_busy_keeps_the_later_deadline() -> None:
    state = ollama()
    state.record_busy(NOW, 5.0)
    state.record_busy(NOW, 1.0)
    assert state.busy_until == pytest.approx(NOW + 5.0)


def test_misconfigured_is_not_routable_and_success_clears_it() -> None:
    state = ollama()
    state.record_misconfigured("HTTP 401: invalid api key")
    assert not state.routable(NOW)
    assert state.status(NOW) == MISCONFIGURED and state.last_error == "HTTP 401: invalid api key"
    state.record_success(5.0)
    assert state.routable(NOW) and state.misconfigured is None


def test_disabled_is_never_routable() -> None:
    state = ollama(enabled=False)
    state.record_check(True, 1.0, None)
    assert not state.routable(NOW)


def test_ewma_latency() -> None:
    state = ollama()
    state.record_success(100.0)
    assert state.ewma_ms == pytest.approx(100.0)
    state.record_success(200.0)
    assert state.ewma_ms == pytest.approx(120.0)


# active checks -----------------------------------------------------------------------------


def test_passing_check_unejects_and_clears_misconfigured() -> None:
    state = ejected()
    state.record_misconfigured("HTTP 403")
    state.record_check(True, 12.5, None)
    assert state.routable(NOW)
    assert state.status(NOW) == HEALTHY
    assert (state.ejections, state.consecutive_failures, state.misconfigured) == (0, 0, None)
    assert state.last_check_ok is True and state.check_latency_ms == 12.5
    assert state.last_check is not None
    # the back-off starts over: the next ejection is short again
    for _ in range(CFG.eject_after):
        state.record_failure(NOW, "x", CFG)
    assert state.ejected_until == pytest.approx(NOW + CFG.eject_base)


def test_passing_check_releases_a_running_trial() -> None:
    state = ejected()
    state.start(NOW + 6)
    state.record_check(True, 1.0, None)
    assert not state.trial_in_flight and state.routable(NOW + 6)


def test_failing_check_records_the_error_and_leaves_ejection_alone() -> None:
    state = ejected()
    until = state.ejected_until
    state.record_check(False, None, "connection refused")
    assert state.last_check_ok is False and state.last_error == "connection refused"
    assert state.ejected_until == until and not state.routable(NOW)
