"""The cluster's Redis link: one command connection, one pub/sub listener, and the outage state.

Every message goes on one channel, ``<prefix>:cluster:events``, as a compact JSON object
``{"o": origin worker id, "k": kind, ...}``; ``listen`` hands each one from another worker (and
slot releases from this one too) to the handler registered for its kind. State for late joiners
is kept in hashes beside it (see ``corral.cluster.health``).

Like the limiter, the link **fails open**: a Redis error marks it degraded, is counted
(``errors``), logged once per outage, and Redis is left alone for ``retry_interval`` s; callers
then fall back to their local view. When the listener reconnects, ``on_reconnect`` runs so the
parts can republish what they hold and reload what they missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

log = logging.getLogger("corral.cluster")
STORE_ERRORS = (RedisError, OSError, TimeoutError)
Handler = Callable[[dict[str, Any]], None]
MAX_CONNECTIONS = 32  # commands in flight to Redis at once, per worker


class RedisLink:
    def __init__(
        self, url: str, prefix: str, origin: str, *, timeout: float = 0.5, retry_interval: float = 1.0
    ) -> None:
        self.redis: Redis = Redis.from_url(
            url,
            max_connections=MAX_CONNECTIONS + 4,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        # commands in flight, bounded below the pool's size: a burst queues here, in order
        self._in_flight = asyncio.Semaphore(MAX_CONNECTIONS)
        self._listen_redis: Redis = Redis.from_url(url, socket_connect_timeout=timeout)
        self.base = prefix.rstrip(":") + ":cluster"
        self.channel = self.key("events")
        self.origin = origin
        self._retry_interval = retry_interval
        self._skip_until = 0.0
        self._down_since: float | None = None
        self._handlers: dict[str, Handler] = {}
        self.on_reconnect: list[Callable[[], Awaitable[None]]] = []
        self.errors = 0
        self.received = 0
        self.subscribed = asyncio.Event()

    def key(self, *parts: str) -> str:
        return ":".join((self.base, *parts))

    @property
    def degraded(self) -> bool:
        return self._down_since is not None

    def usable(self) -> bool:
        """False while an outage's retry pause lasts: callers use their local view, no I/O."""
        return time.monotonic() >= self._skip_until

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def message(self, kind: str, **fields: Any) -> bytes:
        return orjson.dumps({"o": self.origin, "k": kind, **fields})

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        self._skip_until = time.monotonic() + self._retry_interval
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "Redis for shared cluster state is unreachable (%s: %s); each worker uses its own view "
                "(health, slots, changes) until it is back. Check redis_url / CORRAL_REDIS_URL.",
                type(exc).__name__,
                exc,
            )

    def succeeded(self) -> None:
        if self._down_since is not None:
            log.warning(
                "Redis for shared cluster state is back after %.1f s", time.monotonic() - self._down_since
            )
            self._down_since = None

    async def run(self, call: Callable[[], Awaitable[Any]]) -> Any | None:
        """``call()`` unless Redis is in an outage pause; None (and counted) when it fails."""
        if not self.usable():
            return None
        try:
            async with self._in_flight:
                result = await call()
        except STORE_ERRORS as exc:
            self.failed(exc)
            return None
        self.succeeded()
        return result

    async def publish(self, data: bytes) -> None:
        await self.run(lambda: self.redis.publish(self.channel, data))

    def dispatch(self, raw: bytes) -> None:
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        if not isinstance(msg, dict):
            return
        handler = self._handlers.get(str(msg.get("k")))
        if handler is None or (msg.get("o") == self.origin and msg.get("k") != "s"):
            return
        self.received += 1
        try:
            handler(msg)
        except Exception:  # one bad message must not stop the listener
            log.exception("could not apply a cluster message of kind %r", msg.get("k"))

    async def listen(self) -> None:
        """Receive messages until cancelled, reconnecting (every ``retry_interval`` s) after errors."""
        first = True
        while True:
            pubsub = self._listen_redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if not first:
                    self.succeeded()
                    self._skip_until = 0.0
                    for hook in self.on_reconnect:
                        await hook()
                first = False
                self.subscribed.set()
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        self.dispatch(msg["data"])
            except STORE_ERRORS as exc:
                self.subscribed.clear()
                first = False
                self.failed(exc)
            finally:
                with contextlib.suppress(*STORE_ERRORS):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)  # type: ignore[no-untyped-call]
            await asyncio.sleep(self._retry_interval)  # bounded reconnect pace during an outage

    async def close(self) -> None:
        await self.redis.aclose()
        await self._listen_redis.aclose()
