"""classify() per upstream error kind, and the error when every attempt failed."""

from __future__ import annotations

import time

import pytest

from corral.config.schema import RouterConfig
from corral.core.call import Target
from corral.core.failures import AllAttemptsFailed, AttemptRecord, classify
from corral.errors import UpstreamError, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from corral.routing.state import BUSY, EJECTED, MISCONFIGURED, DeploymentState

CFG = RouterConfig(eject_after=3, eject_base=5.0, busy_backoff=1.0)
GPU = Target("gpu", "qwen3:8b")


class Refresh:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, provider: str) -> None:
        self.calls.append(provider)


Classified = tuple[bool, DeploymentState, list[AttemptRecord], Refresh]


def run(
    exc: UpstreamError,
    state: DeploymentState | None = None,
    target: Target = GPU,
    attempts: list[AttemptRecord] | None = None,
) -> Classified:
    state = state or DeploymentState(target.provider, "ollama")
    attempts = [] if attempts is None else attempts
    refresh = Refresh()
    retry = classify(exc, state, CFG, attempts, "pool", target, refresh)
    return retry, state, attempts, refresh


def untouched(state: DeploymentState) -> bool:
    return (state.failures, state.misconfigured, state.busy_until, state.ejected_until) == (0, None, 0.0, 0.0)


@pytest.mark.parametrize("status", [400, 409, 413, 422])
def test_client_errors_are_not_retried_and_leave_the_deployment_alone(status: int) -> None:
    exc = UpstreamRejected("gpu", status, "bad request")
    retry, state, attempts, refresh = run(exc)
    assert retry is False
    assert untouched(state) and refresh.calls == []
    assert len(attempts) == 1 and attempts[0].error is exc and attempts[0].status == status
    assert attempts[0].target == GPU and attempts[0].route == "pool" and not attempts[0].busy


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_mark_the_deployment_misconfigured(status: int) -> None:
    retry, state, attempts, _ = run(UpstreamRejected("gpu", status, "invalid api key"))
    assert retry is True
    assert state.status() == MISCONFIGURED and not state.routable(time.monotonic())
    assert "invalid api key" in (state.misconfigured or "")
    assert state.failures == 0
    assert attempts[0].status == 502  # the caller's key was fine


def test_tls_error_marks_misconfigured() -> None:
    exc = UpstreamError("gpu", "failed the TLS handshake: certificate verify failed", code="upstream_tls")
    retry, state, attempts, _ = run(exc)
    assert retry is True and state.status() == MISCONFIGURED and state.failures == 0
    assert attempts[0].error is exc


def test_404_refreshes_the_catalog_and_is_not_a_failure() -> None:
    retry, state, attempts, refresh = run(UpstreamRejected("gpu", 404, "model 'qwen3:8b' not found"))
    assert retry is True
    assert refresh.calls == ["gpu"]
    assert untouched(state) and state.consecutive_failures == 0
    assert attempts[0].status == 404 and not attempts[0].busy


@pytest.mark.parametrize("status", [429, 503])
def test_busy_statuses_back_off_without_counting_a_failure(status: int) -> None:
    before = time.monotonic()
    retry, state, attempts, _ = run(UpstreamRejected("gpu", status, "server busy"))
    assert retry is True
    assert state.failures == 0 and state.consecutive_failures == 0
    assert state.status() == BUSY and state.routable(time.monotonic())
    assert before + CFG.busy_backoff <= state.busy_until <= time.monotonic() + CFG.busy_backoff
    assert attempts[0].busy and attempts[0].status == status


@pytest.mark.parametrize(
    "exc",
    [
        UpstreamRejected("gpu", 502, "bad gateway"),
        UpstreamRejected("gpu", 504, "gateway timeout"),
        UpstreamUnavailable("gpu", "refused the connection."),
        UpstreamTimeout("gpu", "sent no first token within 30 s."),
        UpstreamError("gpu", "ended the stream before sending anything.", code="upstream_empty_stream"),
    ],
    ids=["502", "504", "unavailable", "timeout", "empty-stream"],
)
def test_server_and_transport_errors_count_toward_ejection(exc: UpstreamError) -> None:
    state = DeploymentState("gpu", "ollama")
    for i in range(CFG.eject_after):
        retry, _, attempts, refresh = run(exc, state)
        assert retry is True and refresh.calls == []
        assert attempts[0].error is exc and not attempts[0].busy
        assert state.consecutive_failures == i + 1
    assert state.last_error == exc.message
    assert state.status() == EJECTED


@pytest.mark.parametrize("status", [404, 500])
def test_a_model_failure_ejects_the_model_on_that_instance_not_the_instance(status: int) -> None:
    exc = UpstreamRejected("gpu", status, "llama runner process has terminated")
    retry, state, attempts, refresh = run(exc)
    now = time.monotonic()
    assert retry is True and attempts[0].error is exc
    assert refresh.calls == (["gpu"] if status == 404 else [])
    assert state.routable(now) and state.status() != EJECTED and state.consecutive_failures == 0
    assert not state.model_usable("qwen3:8b", now) and state.model_usable("llama3.2", now)
    health = state.models["qwen3:8b"]
    assert health.last_error == exc.message and now < health.ejected_until <= now + CFG.eject_base
    run(exc, state)  # a late failure while ejected does not lengthen it
    assert state.models["qwen3:8b"].ejections == 1
    state.record_model_success("qwen3:8b")
    assert state.model_usable("qwen3:8b", time.monotonic())


def test_a_repeated_model_failure_backs_off_longer() -> None:
    state = DeploymentState("gpu", "ollama")
    state.record_model_failure("m", time.monotonic() - 60, "x", CFG)  # ejected a minute ago for 5 s
    assert state.model_usable("m", time.monotonic())
    run(UpstreamRejected("gpu", 500, "x"), state, Target("gpu", "m"))
    health = state.models["m:latest"]  # Ollama's name for it
    assert health.ejections == 2 and health.ejected_until > time.monotonic() + CFG.eject_base


def test_attempts_accumulate_in_order() -> None:
    attempts: list[AttemptRecord] = []
    run(UpstreamRejected("a", 500, "x"), target=Target("a", "m"), attempts=attempts)
    run(UpstreamTimeout("b", "timed out."), target=Target("b", "m"), attempts=attempts)
    assert [a.target.provider for a in attempts if a.target] == ["a", "b"]


@pytest.mark.parametrize("status", [400, 404])
def test_a_trial_ending_in_a_client_error_or_404_does_not_lock_the_deployment_out(status: int) -> None:
    state = DeploymentState("gpu", "ollama")
    now = time.monotonic()
    for _ in range(CFG.eject_after):
        state.record_failure(now - 60, "HTTP 500", CFG)  # ejected a minute ago for 5 s
    trial = state.start(now)
    assert trial and state.trial_in_flight
    run(UpstreamRejected("gpu", status, "nope"), state)  # the engine classifies, then frees the slot
    state.finish(trial)
    assert state.routable(time.monotonic())


# AllAttemptsFailed -------------------------------------------------------------------------


def rec(exc: UpstreamError | None, provider: str = "gpu", model: str = "qwen3:8b") -> AttemptRecord:
    attempts: list[AttemptRecord] = []
    if exc is None:
        return AttemptRecord("pool", None, "every deployment was busy", 503, busy=True)
    state = DeploymentState(provider, "ollama")
    classify(exc, state, CFG, attempts, "pool", Target(provider, model), lambda p: None)
    return attempts[0]


def test_one_attempt_returns_its_own_error() -> None:
    exc = UpstreamRejected("gpu", 400, "num_ctx must be positive")
    assert AllAttemptsFailed.from_attempts("m", [rec(exc)]) is exc
    timeout = UpstreamTimeout("gpu", "timed out.")
    assert AllAttemptsFailed.from_attempts("m", [rec(timeout)]) is timeout


def test_no_attempt_at_all_is_503() -> None:
    err = AllAttemptsFailed.from_attempts("kimi", [])
    assert isinstance(err, AllAttemptsFailed) and err.http_status == 503 and "kimi" in err.message


def test_several_attempts_are_listed_with_provider_model_and_reason() -> None:
    attempts = [
        rec(UpstreamRejected("cloud", 500, "internal error"), "cloud", "kimi-k2.5"),
        rec(UpstreamUnavailable("gpu", "refused the connection."), "gpu", "qwen3:8b"),
        AttemptRecord("vllm-qwen", None, "skipped: retry budget exhausted", 503),
    ]
    err = AllAttemptsFailed.from_attempts("cloud-kimi", attempts)
    assert isinstance(err, AllAttemptsFailed)
    assert err.code == "all_attempts_failed" and err.error_type == "upstream_error"
    msg = err.message
    assert msg.startswith("All 3 attempts for 'cloud-kimi' failed: ")
    assert "1) cloud (kimi-k2.5): Upstream 'cloud' answered HTTP 500: internal error" in msg
    assert "2) gpu (qwen3:8b): Upstream 'gpu' refused the connection." in msg
    assert "3) vllm-qwen: skipped: retry budget exhausted" in msg
    assert msg.index("1)") < msg.index("2)") < msg.index("3)")


def status_of(*attempts: AttemptRecord) -> int:
    err = AllAttemptsFailed.from_attempts("m", list(attempts))
    assert isinstance(err, AllAttemptsFailed)
    return err.http_status


def test_status_all_429_is_429() -> None:
    assert status_of(rec(UpstreamRejected("a", 429, "x")), rec(UpstreamRejected("b", 429, "y"))) == 429


def test_status_all_busy_but_mixed_is_503() -> None:
    assert status_of(rec(UpstreamRejected("a", 429, "x")), rec(UpstreamRejected("b", 503, "x"))) == 503
    assert status_of(rec(UpstreamRejected("a", 429, "x")), rec(None)) == 503


def test_status_last_timeout_is_504() -> None:
    assert status_of(rec(UpstreamRejected("a", 500, "x")), rec(UpstreamTimeout("b", "timed out."))) == 504
    assert status_of(rec(UpstreamUnavailable("a", "down.")), rec(UpstreamTimeout("b", "timed out."))) == 504


def test_status_all_unreachable_or_busy_is_503() -> None:
    assert status_of(rec(UpstreamUnavailable("a", "down.")), rec(UpstreamUnavailable("b", "down."))) == 503
    assert status_of(rec(UpstreamUnavailable("a", "down.")), rec(UpstreamRejected("b", 429, "x"))) == 503


def test_status_otherwise_502() -> None:
    assert status_of(rec(UpstreamRejected("a", 500, "x")), rec(UpstreamUnavailable("b", "down."))) == 502
    assert status_of(rec(UpstreamTimeout("a", "timed out.")), rec(UpstreamRejected("b", 502, "x"))) == 502
    assert status_of(rec(UpstreamRejected("a", 401, "x")), rec(UpstreamRejected("b", 401, "x"))) == 502
