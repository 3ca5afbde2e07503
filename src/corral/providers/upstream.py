"""The one place that builds upstream HTTP clients and maps their failures to corral errors.

Each provider owns one pooled ``aiohttp.ClientSession``. Every timeout is explicit. Error
messages name the provider and how it failed, never its key or the full URL's credentials.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from corral.config.schema import ProviderConfig
from corral.core.call import Probe
from corral.errors import UpstreamError, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable

MAX_ERROR_BODY = 64 * 1024
MAX_LINE = 8 * 1024 * 1024


def make_session(cfg: ProviderConfig) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=cfg.max_connections,
        limit_per_host=0,
        ssl=cfg.verify_ssl,
        ttl_dns_cache=300,
        keepalive_timeout=30,
    )
    timeout = aiohttp.ClientTimeout(
        total=None, connect=cfg.connect_timeout, sock_connect=cfg.connect_timeout, sock_read=cfg.timeout
    )
    headers = dict(cfg.headers)
    if cfg.api_key:
        headers["Authorization"] = f"Bearer {cfg.api_key}"
    return aiohttp.ClientSession(
        connector=connector,
        # Never keep an upstream's cookies: the session is shared by every client of the gateway,
        # so a stored cookie would be sent on other clients' requests (and filtering the jar costs
        # time on every request).
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=timeout,
        headers=headers,
        read_bufsize=256 * 1024,
        max_line_size=MAX_LINE,
        max_field_size=64 * 1024,
        raise_for_status=False,
        trust_env=False,
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
    except aiohttp.ClientConnectorCertificateError:
        raise UpstreamError(
            cfg.name,
            f"failed TLS verification at {where(cfg.base_url)}. Fix the "
            "certificate, or set verify_ssl: false only for a host you trust.",
            code="upstream_tls",
        ) from None
    except aiohttp.ClientConnectorError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise UpstreamUnavailable(
            cfg.name,
            f"is unreachable at {where(cfg.base_url)} ({reason}). "
            "Check that it is running and that base_url is right.",
            code="upstream_unreachable",
        ) from None
    except (aiohttp.ServerTimeoutError, TimeoutError):
        raise UpstreamTimeout(
            cfg.name,
            f"did not answer within {cfg.timeout:g} s (timeout). Raise "
            "the provider's timeout if it is loading a large model.",
            code="upstream_timeout",
        ) from None
    except aiohttp.ServerDisconnectedError:
        raise UpstreamError(
            cfg.name, "closed the connection before answering.", code="upstream_disconnected"
        ) from None
    except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
        raise UpstreamError(
            cfg.name, f"sent a broken response ({exc.__class__.__name__}).", code="upstream_bad_response"
        ) from None
    except aiohttp.ClientError as exc:
        raise UpstreamError(
            cfg.name, f"request failed ({exc.__class__.__name__}).", code="upstream_error"
        ) from None


async def rejected(cfg: ProviderConfig, resp: aiohttp.ClientResponse) -> UpstreamRejected:
    """Build the error for a non-2xx upstream answer, reading a bounded part of its body."""
    if resp.status in (401, 403):
        return UpstreamRejected(
            cfg.name,
            resp.status,
            "the provider rejected corral's credentials. "
            "Check this provider's api_key in corral's configuration.",
        )
    try:
        raw = await asyncio.wait_for(resp.content.read(MAX_ERROR_BODY), timeout=5)
    except (aiohttp.ClientError, TimeoutError):
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


async def health_get(
    cfg: ProviderConfig, session: aiohttp.ClientSession, url: str
) -> Probe | tuple[bytes, float]:
    """GET ``url`` for an active health check: (body, latency in ms), or the failed Probe."""
    started = time.monotonic()
    try:
        async with upstream_errors(cfg), session.get(url) as resp:
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
    if status >= 400:
        return Probe(
            ok=False, latency_ms=latency, error=f"Upstream '{cfg.name}' health check got HTTP {status}."
        )
    return raw, latency
