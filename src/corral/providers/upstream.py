"""The one place that builds upstream HTTP clients and maps their failures to corral errors.

Each provider owns one bounded keep-alive pool (``corral.httpclient.Pool``). Every timeout is
explicit. Error messages name the provider and how it failed, never its key or the full URL's
credentials.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import orjson

from corral import __version__
from corral.config.schema import ProviderConfig
from corral.core.call import Probe
from corral.errors import UpstreamError, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from corral.httpclient import (
    BadResponse,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    Pool,
    Response,
    TLSFailed,
    TransportError,
)
from corral.httpclient.pool import encode_headers

MAX_ERROR_BODY = 64 * 1024
JSON_BODY = encode_headers({"Content-Type": "application/json"})
KEEPALIVE = 30.0  # seconds an unused upstream connection stays open


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
    )


def where(base_url: str) -> str:
    """host:port of an upstream, for messages (no credentials, no path)."""
    parts = urlsplit(base_url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname}{port}"


@asynccontextmanager
async def upstream_errors(cfg: ProviderConfig) -> AsyncIterator[None]:
    """Translate transport failures inside the block into UpstreamError subclasses."""
    try:
        yield
    except UpstreamError:
        raise
    except TLSFailed as exc:
        raise UpstreamError(
            cfg.name,
            f"failed TLS verification at {where(cfg.base_url)} ({exc.reason}). Fix the "
            "certificate, or set verify_ssl: false only for a host you trust.",
            code="upstream_tls",
        ) from None
    except ConnectFailed as exc:
        raise UpstreamUnavailable(
            cfg.name,
            f"is unreachable at {where(cfg.base_url)} ({exc.reason}). "
            "Check that it is running and that base_url is right.",
            code="upstream_unreachable",
        ) from None
    except ConnectTimeout:
        raise UpstreamUnavailable(
            cfg.name,
            f"could not be connected to at {where(cfg.base_url)} within {cfg.connect_timeout:g} s "
            "(connect_timeout), or all its max_connections were busy that long.",
            code="upstream_unreachable",
        ) from None
    except TimeoutError:
        raise UpstreamTimeout(
            cfg.name,
            f"did not answer within {cfg.timeout:g} s (timeout). Raise "
            "the provider's timeout if it is loading a large model.",
            code="upstream_timeout",
        ) from None
    except Disconnected as exc:
        raise UpstreamError(cfg.name, f"{_closed(exc)}.", code="upstream_disconnected") from None
    except BadResponse as exc:
        raise UpstreamError(
            cfg.name, f"sent a broken response ({exc}).", code="upstream_bad_response"
        ) from None
    except TransportError as exc:
        raise UpstreamError(cfg.name, f"request failed ({exc}).", code="upstream_error") from None


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
    return UpstreamRejected(cfg.name, resp.status, scrub(cfg, error_detail(raw)))


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
            raw = await resp.read()
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
