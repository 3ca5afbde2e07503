"""The one place that builds upstream HTTP clients and maps their failures to corral errors.

Each provider owns one bounded keep-alive pool (``corral.httpclient.Pool``). Every timeout is
explicit, and so is every read limit: a whole answer is read up to the provider's
``max_response_bytes``, a model list or health answer up to ``LISTING_BYTES``, one stream line up
to ``max_line_bytes``; a breach closes the connection and is an ``UpstreamError`` naming the limit
and the setting that raises it. Error messages name the provider and how it failed, never its
key or the full URL's credentials.
"""

from __future__ import annotations

import asyncio
import re
import time
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import orjson

from corral import __version__
from corral.config.schema import ProviderConfig
from corral.conversation.call import Probe
from corral.errors import UpstreamError, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from corral.httpclient import (
    BadResponse,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    Pool,
    Response,
    TLSFailed,
    TooLarge,
    TransportError,
)
from corral.httpclient.pool import encode_headers

MAX_ERROR_BODY = 64 * 1024
JSON_BODY = encode_headers({"Content-Type": "application/json"})
KEEPALIVE = 30.0  # seconds an unused upstream connection stays open
LISTING_BYTES = 8 * 1024 * 1024  # a model list, /api/ps or a health answer (max_response_bytes if lower)


def make_pool(cfg: ProviderConfig) -> Pool:
    headers = dict(cfg.headers)
    key = cfg.key_headers()  # as the provider's type (or its auth) says: Bearer, x-api-key...
    if key:  # the key wins over the same header set by hand, in any case
        names = {name.lower() for name in key}
        headers = {name: value for name, value in headers.items() if name.lower() not in names}
        headers.update(key)
    return Pool(
        cfg.base_url,
        max_connections=cfg.max_connections,
        connect_timeout=cfg.connect_timeout,
        read_timeout=cfg.timeout,
        headers=headers,
        verify_ssl=cfg.verify_ssl,
        keepalive=KEEPALIVE,
        user_agent=f"corral/{__version__}",
        max_body=cfg.max_response_bytes,
    )


def where(base_url: str) -> str:
    """host:port of an upstream, for messages (no credentials, no path)."""
    parts = urlsplit(base_url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname}{port}"


class upstream_errors:  # named as the function it replaced: `async with upstream_errors(cfg)`
    """Translate transport failures inside the block into UpstreamError subclasses.

    A class, not ``@asynccontextmanager``: it is entered a few times on every upstream call,
    and a generator-based manager costs several microseconds each time."""

    __slots__ = ("cfg",)

    def __init__(self, cfg: ProviderConfig) -> None:
        self.cfg = cfg

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, TransportError | TimeoutError):  # an UpstreamError is neither
            raise transport_error(self.cfg, exc) from None
        # nothing raised, cancellation, or not a transport failure: it goes on as it is


def transport_error(cfg: ProviderConfig, exc: TransportError | TimeoutError) -> UpstreamError:
    """The UpstreamError that says what a transport failure means, and what to do about it."""
    if isinstance(exc, TLSFailed):
        return UpstreamError(
            cfg.name,
            f"failed TLS verification at {where(cfg.base_url)} ({exc.reason}). Fix the "
            "certificate, or set verify_ssl: false only for a host you trust.",
            code="upstream_tls",
        )
    if isinstance(exc, ConnectFailed):
        return UpstreamUnavailable(
            cfg.name,
            f"is unreachable at {where(cfg.base_url)} ({exc.reason}). "
            "Check that it is running and that base_url is right.",
            code="upstream_unreachable",
        )
    if isinstance(exc, ConnectTimeout):
        return UpstreamUnavailable(
            cfg.name,
            f"could not be connected to at {where(cfg.base_url)} within {cfg.connect_timeout:g} s "
            "(connect_timeout), or all its max_connections were busy that long.",
            code="upstream_unreachable",
        )
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(
            cfg.name,
            f"did not answer within {cfg.timeout:g} s (timeout). Raise "
            "the provider's timeout if it is loading a large model.",
            code="upstream_timeout",
        )
    if isinstance(exc, Disconnected):
        return UpstreamError(cfg.name, f"{_closed(exc)}.", code="upstream_disconnected")
    if isinstance(exc, TooLarge):
        return UpstreamError(cfg.name, too_large(cfg, exc), code="upstream_too_large")
    if isinstance(exc, BadResponse):
        return UpstreamError(cfg.name, f"sent a broken response ({exc}).", code="upstream_bad_response")
    return UpstreamError(cfg.name, f"request failed ({exc}).", code="upstream_error")


def json_object(provider: str, raw: bytes, what: str = "a body") -> dict[str, Any]:
    """``raw`` read as a JSON object; anything else is the upstream's bad answer."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamError(
            provider, f"returned {what} that is not a JSON object.", code="upstream_bad_response"
        )
    return data


def incomplete(provider: str) -> UpstreamError:
    """The error of a whole answer whose stream ended before its final chunk."""
    return UpstreamError(provider, "ended its answer before the final chunk.", code="upstream_incomplete")


def no_first_token(cfg: ProviderConfig, seconds: float | None) -> UpstreamTimeout:
    """The error of an attempt whose upstream sent no first token by its deadline."""
    return UpstreamTimeout(
        cfg.name, f"sent no first token within {seconds or 0:g} s.", code="first_token_timeout"
    )


def too_large(cfg: ProviderConfig, exc: TooLarge) -> str:
    """What went over which limit, and the setting that raises it (after "Upstream 'name' ")."""
    setting = None
    if exc.what == "an answer" and exc.limit == cfg.max_response_bytes:
        setting = "max_response_bytes"
    elif exc.what in ("a stream line", "a stream event") and exc.limit == cfg.max_line_bytes:
        setting = "max_line_bytes"
    if setting is None:  # a fixed cap: model lists and health answers
        return (
            f"sent {exc.what} over {exc.limit} bytes, more than corral reads for one. List the "
            "models to serve under providers[].models (no discovery then), or point "
            "providers[].paths at a smaller answer."
        )
    return (
        f"sent {exc.what} over {setting} ({exc.limit} bytes); "
        f"raise providers[].{setting} if that is expected."
    )


def stream_failure(cfg: ProviderConfig, exc: Exception, *, started: bool) -> UpstreamError:
    """How a stream read failed, for the relays: raised before the first token (the engine may
    fail over), or the in-band error's message (``.message``) once the client has some."""
    if isinstance(exc, TooLarge):
        tail = " The answer is incomplete." if started else ""
        return UpstreamError(cfg.name, too_large(cfg, exc) + tail, code="upstream_too_large")
    if isinstance(exc, TimeoutError):
        detail = "timed out"
    elif isinstance(exc, Disconnected):
        detail = "broke the connection"
    else:
        detail = f"failed ({exc.__class__.__name__})"
    if started:
        message = f"{detail} mid-stream; the answer is incomplete."
    else:
        message = f"{detail} before its first token."
    return UpstreamError(cfg.name, message, code="upstream_stream_interrupted")


_WHOLE_EVENT = (b"\n\n", b"\r\r", b"\n\r\n")  # a read ending in one of these ends an SSE event


class Framer:
    """For a relay passing a stream through: cuts it at line ends (NDJSON) or event ends (SSE, a
    blank line), so the client only ever gets whole lines and an in-band error never lands in
    the middle of one. What a read leaves unfinished is held for the next; ``check()`` raises
    ``TooLarge`` once that passes ``limit`` (a line, or an SSE event and so each of its lines),
    so one endless line costs at most the limit. Upstreams end their writes at line ends, so as
    a rule ``feed`` returns its argument, uncopied."""

    __slots__ = ("_edge", "_held", "_limit", "_sse", "held")

    def __init__(self, limit: int, *, sse: bool = False) -> None:
        self._limit = limit
        self._sse = sse
        self._held: list[bytes] = []
        self._edge = b"\n"  # the last byte fed: an SSE blank line may straddle two reads
        self.held = 0  # bytes held back

    def feed(self, data: bytes) -> bytes:
        """The whole lines (events) ``data`` completes, after any held start; b"" if none."""
        if not self._held and data.endswith(_WHOLE_EVENT if self._sse else b"\n"):
            self._edge = data[-1:]  # the usual read: whole lines (events), nothing held
            return data
        if self._sse:
            window = self._edge + data
            self._edge = data[-1:]
            end = max(window.rfind(b"\n\n"), window.rfind(b"\r\r"), window.rfind(b"\n\r"))
            if end >= 0:  # two line ends in a row, whichever the line ends are; CRLF ends in LF
                end += 2 if window[end + 1 : end + 3] == b"\r\n" else 1
        else:
            end = data.rfind(b"\n") + 1
        if end <= 0:
            self._held.append(data)
            self.held += len(data)
            return b""
        rest = data[end:]
        if self._held:
            self._held.append(data[:end])
            data = b"".join(self._held)
            self._held = []
        elif rest:
            data = data[:end]
        if rest:
            self._held.append(rest)
        self.held = len(rest)
        return data

    def check(self) -> None:
        if self.held > self._limit:
            raise TooLarge("a stream event" if self._sse else "a stream line", self._limit)

    def rest(self) -> bytes:
        """At the end of the body: what never ended (delivered as it is)."""
        rest = b"".join(self._held)
        self._held, self.held = [], 0
        return rest


async def read_listing(cfg: ProviderConfig, resp: Response) -> bytes:
    """A model list, loaded-model list or health answer: small, so read to a smaller cap."""
    cap = min(cfg.max_response_bytes, LISTING_BYTES)
    try:
        return await resp.read(max_bytes=cap)
    except TooLarge:
        if cap == cfg.max_response_bytes:
            raise
        raise TooLarge("a model list or health answer", cap) from None


def _closed(exc: Disconnected) -> str:
    return (
        "closed the connection before answering"
        if exc.before_response
        else "closed the connection mid-answer"
    )


async def rejected(cfg: ProviderConfig, resp: Response) -> UpstreamRejected:
    """Build the error for a non-2xx upstream answer, reading a bounded part of its body.
    The answer is released here: callers only raise what this returns."""
    try:
        return await _rejected(cfg, resp)
    finally:
        resp.release()


_REFUSED = re.compile(
    r"does not support (thinking|tools|insert|vision|embeddings?|completion|generate|chat)\b"
)
_REFUSED_AS = {"embeddings": "embedding", "generate": "completion", "chat": "completion"}


def refused_capability(detail: str) -> str | None:
    """The capability (Ollama's names) an upstream's 400 says the model lacks (Ollama:
    '"tinyllama" does not support thinking', '... does not support tools'), or None."""
    found = _REFUSED.search(detail[:1000])
    if found is None:
        return None
    word = found.group(1)
    return _REFUSED_AS.get(word, word)


async def _rejected(cfg: ProviderConfig, resp: Response) -> UpstreamRejected:
    if 300 <= resp.status < 400:
        try:
            target = urlsplit(resp.headers.get("location", ""))
            port = f":{target.port}" if target.port else ""
        except ValueError:
            target, port = urlsplit(""), ""
        # Scheme, host and path only: no credentials or query string from the upstream's answer.
        to = f" to {target.scheme}://{target.hostname}{port}{target.path}" if target.hostname else ""
        return UpstreamRejected(
            cfg.name,
            resp.status,
            f"redirected{to}; corral does not follow redirects. Set this provider's base_url "
            "to the address it redirects to.",
        )
    if resp.status in (401, 403):
        return UpstreamRejected(
            cfg.name,
            resp.status,
            "the provider rejected corral's credentials. "
            "Check this provider's api_key in corral's configuration.",
        )
    try:
        raw = await asyncio.wait_for(resp.read(MAX_ERROR_BODY), timeout=5)
    except (TransportError, TimeoutError):
        raw = b""
    detail = scrub(cfg, error_detail(raw))
    capability = refused_capability(detail) if resp.status == 400 else None
    return UpstreamRejected(cfg.name, resp.status, detail, capability=capability)


def error_detail(raw: bytes) -> str:
    """The message of an Ollama ``{"error": "..."}`` or OpenAI ``{"error": {"message"}}`` body."""
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:300] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            err = err.get("message")
        if isinstance(err, str) and err:
            return err[:500]
        if isinstance(data.get("message"), str):
            return str(data["message"])[:500]
    return "(no error message)"


def scrub(cfg: ProviderConfig, text: str) -> str:
    """Remove the provider's own key from text an upstream sent back."""
    if cfg.api_key and len(cfg.api_key) >= 4:
        text = text.replace(cfg.api_key, "[redacted]")
    return text


async def health_get(cfg: ProviderConfig, pool: Pool, path: str) -> Probe | tuple[bytes, float]:
    """GET ``path`` for an active health check: (body, latency in ms), or the failed Probe."""
    started = time.monotonic()
    try:
        async with upstream_errors(cfg), pool.get(path) as resp:
            raw = await read_listing(cfg, resp)
            status = resp.status
    except UpstreamError as exc:
        return Probe(ok=False, error=exc.message, misconfigured=exc.code == "upstream_tls")
    latency = (time.monotonic() - started) * 1000
    if status in (401, 403):
        return Probe(
            ok=False,
            latency_ms=latency,
            misconfigured=True,
            error=f"Upstream '{cfg.name}' rejected corral's credentials (HTTP {status}).",
        )
    if status >= 300:
        return Probe(
            ok=False, latency_ms=latency, error=f"Upstream '{cfg.name}' health check got HTTP {status}."
        )
    return raw, latency
