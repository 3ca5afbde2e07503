"""What a failed attempt means for routing, and the error when every attempt failed.

``classify`` decides, per upstream error, whether another deployment could do better
(retry elsewhere) and what the failure says about the deployment: down (counts toward
ejection), busy (429, Ollama's 503: back off briefly), misconfigured (401/403, TLS), or
lacking the model (404: refresh its catalog). Client errors (400, 413, 422) are not retried.

Failures that belong to the model, not the instance, mark (instance, model) only, so the
instance's other models keep serving: the model is missing (404), or the instance answered
with a 500 (Ollama's "llama runner process has terminated", "model requires more system
memory": the server is up, this model could not run). Silence, refused connections, broken
streams and a proxy's 502/503/504 mark the instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from corral.config.schema import RouterConfig
from corral.conversation.call import Target
from corral.errors import CorralError, UpstreamError, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from corral.routing.state import DeploymentState

_CLIENT_ERRORS = {400, 409, 413, 422}
_MODEL_ERRORS = {404, 500}  # answered by a live server about this model


@dataclass(slots=True)
class AttemptRecord:
    route: str
    target: Target | None
    outcome: str
    status: int
    busy: bool = False
    error: CorralError | None = None


def classify(
    exc: UpstreamError,
    state: DeploymentState,
    cfg: RouterConfig,
    attempts: list[AttemptRecord],
    route: str,
    target: Target,
    refresh: Callable[[str], None],
) -> bool:
    """Record the failed attempt and update the deployment; True if another one may succeed."""
    now = time.monotonic()
    status = exc.http_status
    busy = False
    if isinstance(exc, UpstreamRejected):
        code = exc.upstream_status or 502
        if code in _CLIENT_ERRORS:
            attempts.append(AttemptRecord(route, target, exc.message, status, error=exc))
            return False
        if code in (401, 403) or 300 <= code < 400:  # bad key, or base_url points at a redirect
            state.record_misconfigured(exc.message)
        elif code in _MODEL_ERRORS:
            if code == 404:
                refresh(target.provider)
            state.record_model_failure(target.model, now, exc.message, cfg)
        elif code in (429, 503):
            busy = True
            state.record_busy(now, cfg.busy_backoff)
        else:
            state.record_failure(now, exc.message, cfg)
    elif exc.code == "upstream_tls":
        state.record_misconfigured(exc.message)
    else:
        state.record_failure(now, exc.message, cfg)
    attempts.append(AttemptRecord(route, target, exc.message, status, busy=busy, error=exc))
    return True


class AllAttemptsFailed(CorralError):
    """Every attempt failed. The message lists each one and why, without secrets."""

    error_type = "upstream_error"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, code="all_attempts_failed")
        self._status = status

    @property
    def http_status(self) -> int:
        return self._status

    @classmethod
    def from_attempts(cls, model: str, attempts: list[AttemptRecord]) -> CorralError:
        real = [a for a in attempts if a.error is not None]
        if len(attempts) == 1 and real:
            return real[0].error  # type: ignore[return-value]
        if not attempts:
            return cls(f"No deployment could be tried for '{model}'.", 503)
        if len(attempts) == 1:
            only = attempts[0]
            return cls(f"No deployment of '{model}' could answer: {only.outcome}.", only.status)
        lines = []
        for i, a in enumerate(attempts, 1):
            where = f"{a.target.provider} ({a.target.model})" if a.target else a.route
            lines.append(f"{i}) {where}: {a.outcome}")
        status = _status(attempts)
        return cls(f"All {len(attempts)} attempts for '{model}' failed: " + "; ".join(lines), status)


def _status(attempts: list[AttemptRecord]) -> int:
    if all(a.busy for a in attempts):
        return 429 if all(a.status == 429 for a in attempts) else 503
    last = attempts[-1].error
    if isinstance(last, UpstreamTimeout):
        return 504
    if all(isinstance(a.error, UpstreamUnavailable) or a.busy for a in attempts):
        return 503
    return 502
