"""The ``server:`` (data plane) and ``admin:`` (control plane) sections of the config.

The control plane carries the admin API and its keys' power: it listens on loopback unless
told otherwise, and a non-loopback address needs TLS (``tls_cert`` and ``tls_key``) or the
explicit ``allow_insecure_remote: true``. It answers only for its own names in ``Host``:
``allowed_hosts`` lists those beyond IP addresses, localhost and ``host`` itself.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Literal

from corral.config.fields import Fields
from corral.config.schema import AdminConfig, ServerConfig

SERVER_KEYS = {
    "metrics_auth",
    "host",
    "port",
    "max_request_bytes",
    "shutdown_timeout",
    "discovery_interval",
    "discovery_timeout",
    "send_timeout",
    "body_timeout",
    "max_buffered_bytes",
    "workers",
    "ping_interval",
}
ADMIN_KEYS = {
    "host",
    "port",
    "tls_cert",
    "tls_key",
    "allow_insecure_remote",
    "console",
    "session_idle",
    "session_max",
    "allowed_hosts",
}
MAX_WORKERS = 256
_HOST_NAME = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _port(f: Fields, default: int) -> int:
    port = f.integer("port", default, minimum=0)
    if port is not None and port > 65535:
        raise f.error("must be at most 65535.", "port")
    return default if port is None else port


def parse_server(f: Fields) -> ServerConfig:
    f.reject_unknown(SERVER_KEYS)
    d = ServerConfig()
    max_request = f.integer("max_request_bytes", d.max_request_bytes, minimum=1024) or d.max_request_bytes
    buffered = f.integer("max_buffered_bytes", d.max_buffered_bytes, minimum=1024) or d.max_buffered_bytes
    if buffered < max_request:
        raise f.error(
            f"({buffered}) must be at least server.max_request_bytes ({max_request}), or no request of "
            "the largest allowed size could ever be read.",
            "max_buffered_bytes",
        )
    return ServerConfig(
        host=f.string("host", d.host) or d.host,
        port=_port(f, d.port),
        max_request_bytes=max_request,
        shutdown_timeout=f.duration("shutdown_timeout", d.shutdown_timeout),
        discovery_interval=f.duration("discovery_interval", d.discovery_interval),
        discovery_timeout=f.duration("discovery_timeout", d.discovery_timeout),
        metrics_auth=f.boolean("metrics_auth", d.metrics_auth),
        send_timeout=_positive(f, "send_timeout", d.send_timeout),
        body_timeout=_positive(f, "body_timeout", d.body_timeout),
        max_buffered_bytes=buffered,
        workers=parse_workers(f.raw("workers"), lambda message: f.error(message, "workers")),
        ping_interval=_ping_interval(f, d.ping_interval),
    )


def _ping_interval(f: Fields, default: float) -> float:
    """``ping_interval``: how often a /v1/messages stream whose upstream has not started yet gets
    a ``ping`` event (from 10 ms to 60 s)."""
    value = f.duration("ping_interval", default)
    if not 0.01 <= value <= 60.0:
        raise f.error(
            f"must be from 10ms to 60s (a keep-alive, not a timeout), got {value:g} s.", "ping_interval"
        )
    return value


def parse_workers(value: object, error: Callable[[str], Exception]) -> int | Literal["auto"]:
    """``server.workers`` or ``--workers``: a whole number from 1, or "auto" (the CPUs usable)."""
    if value is None:
        return 1
    if value == "auto":
        return "auto"
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise error(f'must be a whole number from 1 to {MAX_WORKERS} or "auto", got {value!r}.')
    return value


def _positive(f: Fields, key: str, default: float) -> float:
    value = f.duration(key, default)
    if value <= 0:
        raise f.error("must be more than 0 seconds.", key)
    return value


def parse_admin(f: Fields) -> AdminConfig:
    f.reject_unknown(ADMIN_KEYS)
    d = AdminConfig()
    cert, key = f.string("tls_cert"), f.string("tls_key")
    if (cert is None) != (key is None):
        raise f.error("tls_cert and tls_key go together: set both (PEM files) or neither.", "tls_cert")
    config = AdminConfig(
        host=f.string("host", d.host) or d.host,
        port=_port(f, d.port),
        tls_cert=cert,
        tls_key=key,
        allow_insecure_remote=f.boolean("allow_insecure_remote", d.allow_insecure_remote),
        console=f.boolean("console", d.console),
        session_idle=_positive(f, "session_idle", d.session_idle),
        session_max=_positive(f, "session_max", d.session_max),
        allowed_hosts=_host_names(f),
    )
    check_admin_host(config, f)
    return config


def _host_names(f: Fields) -> tuple[str, ...]:
    names = f.strings("allowed_hosts") or []
    for i, name in enumerate(names):
        if _HOST_NAME.match(name) is None:
            raise f.error(
                f"item {i} ({name[:80]!r}) must be a host name such as corral.example.com: no scheme, "
                "no port, no path (IP addresses and localhost are always answered).",
                "allowed_hosts",
            )
    return tuple(name.lower() for name in names)


def check_admin_host(config: AdminConfig, f: Fields | None = None) -> None:
    """Refuse a control plane on a non-loopback address over plain HTTP, unless told to."""
    if is_loopback(config.host) or config.tls_cert is not None or config.allow_insecure_remote:
        return
    message = (
        f"{config.host} is not a loopback address, and the admin API would be served there over plain "
        "HTTP, where keys can be read off the network. Set admin.tls_cert and admin.tls_key, bind "
        "admin.host to 127.0.0.1 (reach it through an SSH tunnel or a TLS proxy), or set "
        "admin.allow_insecure_remote: true if a proxy on the same host terminates TLS."
    )
    if f is None:
        from corral.errors import ConfigError

        raise ConfigError(f"admin.host: {message}")
    raise f.error(message, "host")
