"""The one error hierarchy of corral.

Every failure a client can see is a ``CorralError``; the HTTP layer maps it to the
OpenAI envelope (``corral.http.errors``) at a single boundary. Messages say what is
wrong and how to fix it, and never carry a secret.

    CorralError                      status  type
    ├── InvalidRequest               400     invalid_request_error
    │   ├── MethodNotAllowed         405     invalid_request_error
    │   ├── BodyTooLarge             413     invalid_request_error
    │   ├── HeadTooLarge             431     invalid_request_error
    │   ├── MisdirectedRequest       421     invalid_request_error  (a Host the server is not)
    │   ├── CodingNotImplemented     501     invalid_request_error
    │   └── VersionNotSupported      505     invalid_request_error
    ├── AuthenticationFailed         401     authentication_error
    ├── PermissionDenied             403     permission_error
    ├── ModelNotFound                404     not_found_error
    ├── NotFound                     404     not_found_error
    ├── ServerBusy                   503     server_error           (corral's own limits)
    ├── ClientClosed                 499     (never sent: the client left; for usage records)
    └── UpstreamError                502     upstream_error
        ├── UpstreamUnavailable      503     upstream_unavailable   (refused, DNS, busy)
        ├── UpstreamTimeout          504     upstream_timeout
        └── UpstreamRejected         4xx/5xx from the upstream, status kept when safe

``ConfigError`` is separate: it stops the gateway at start and is never sent to a client.
"""

from __future__ import annotations

from typing import ClassVar


class CorralError(Exception):
    """Base class of every error a client can receive."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param

    @property
    def http_status(self) -> int:
        return self.status


class InvalidRequest(CorralError):
    status = 400
    error_type = "invalid_request_error"


class BodyTooLarge(InvalidRequest):
    status = 413


class HeadTooLarge(InvalidRequest):
    """The request line and headers are over the server's limits."""

    status = 431


class MisdirectedRequest(InvalidRequest):
    """The request names a host this server does not answer for (``Host``)."""

    status = 421


class MethodNotAllowed(InvalidRequest):
    status = 405

    def __init__(self, message: str, allow: tuple[str, ...]) -> None:
        super().__init__(message, code="method_not_allowed")
        self.headers = {"Allow": ", ".join(allow)}


class VersionNotSupported(InvalidRequest):
    status = 505


class CodingNotImplemented(InvalidRequest):
    """A transfer coding corral does not decode (anything but chunked)."""

    status = 501


class ServerBusy(CorralError):
    """corral itself is at one of its own limits (memory held for request bodies)."""

    status = 503


class ClientClosed(CorralError):
    """The client went away before its answer was complete."""

    status = 499


class AuthenticationFailed(CorralError):
    status = 401
    error_type = "authentication_error"


class PermissionDenied(CorralError):
    status = 403
    error_type = "permission_error"


class NotFound(CorralError):
    status = 404
    error_type = "not_found_error"


class ModelNotFound(NotFound):
    """The requested model is not an alias, a provider/model name or a discovered model."""

    def __init__(self, model: str, suggestions: list[str]) -> None:
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(
            f"The model '{model}' does not exist or is not served by any provider.{hint} "
            "GET /v1/models lists every model this gateway can route.",
            code="model_not_found",
            param="model",
        )
        self.model = model
        self.suggestions = suggestions


class UpstreamError(CorralError):
    """An upstream failed. ``provider`` names it; the message says how it failed."""

    status = 502
    error_type = "upstream_error"

    def __init__(
        self, provider: str, message: str, *, code: str | None = None, upstream_status: int | None = None
    ) -> None:
        super().__init__(f"Upstream '{provider}' {message}", code=code)
        self.provider = provider
        self.upstream_status = upstream_status


class UpstreamUnavailable(UpstreamError):
    status = 503
    error_type = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    error_type = "upstream_timeout"


class UpstreamRejected(UpstreamError):
    """The upstream answered with an error status. Client errors (400, 404, 413, 422, 429)
    keep their status so the caller can act on them; upstream auth failures become 502,
    because the caller's own key was fine and the gateway's provider key is at fault."""

    def __init__(
        self, provider: str, upstream_status: int, detail: str, *, capability: str | None = None
    ) -> None:
        super().__init__(
            provider,
            f"answered HTTP {upstream_status}: {detail}",
            code=f"upstream_http_{upstream_status}",
            upstream_status=upstream_status,
        )
        self.capability = capability  # what the upstream said the model cannot do, if it said

    @property
    def http_status(self) -> int:
        assert self.upstream_status is not None
        if self.upstream_status in (400, 404, 409, 413, 422, 429):
            return self.upstream_status
        if self.upstream_status in (503, 504):
            return self.upstream_status
        return 502

    @property
    def type_for_status(self) -> str:
        return {
            400: "invalid_request_error",
            404: "not_found_error",
            409: "invalid_request_error",
            413: "invalid_request_error",
            422: "invalid_request_error",
            429: "rate_limit_error",
        }.get(self.http_status, self.error_type)


class ConfigError(Exception):
    """The configuration is invalid. Raised at start; the message names the file,
    the key path and the fix."""
