"""Session affinity: a conversation's later turns go to the deployment that served its earlier
ones, where Ollama still holds its prompt in the KV cache.

The conversation key comes from, in order: ``x-corral-session``; the session headers agents send
on every turn (Claude Code's ``x-claude-code-session-id``, Codex's ``session-id``, Open WebUI's
``X-OpenWebUI-Chat-Id`` when it forwards user info); else, for chat, a hash of the stable prefix
of the conversation (the system prompt, the first user turn and the tools' names), read from the
body as parsed, never re-encoded whole; else there is none. Keys are hashed with the pool's name
(one conversation may use two models), so a pin is 16 bytes of key and a deployment's name.

Pins live in a bounded LRU with an idle TTL. A pin whose deployment cannot take the request
(ejected, disabled, misconfigured, no longer serving the model, or left out by capability and
context checks) is moved to the deployment that answers ("repin"). Affinity only ranks: the
pinned deployment goes first among those the strategy and health allow, with a bounded wait for
a slot there; it never overrides a pinned ``num_ctx``, a fallback chain or a limit. A short
prompt (``spill_below``) whose pinned deployment is full takes a free warm one at once instead
("spill", routing/pinning.py), and the pin follows it.

With ``redis_url`` the pins are shared (``SharedPins``): written behind (a bounded queue drained
by a background task, ``SET <prefix>:affinity:<key>`` with the TTL, and a ``PUBLISH`` on
``<prefix>:affinity`` that every replica applies to its own LRU). The request path never waits for
Redis: a key this replica does not know is looked up in the background for its next turn. When
Redis is down the local pins keep working (fail open) and the errors are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from corral.config.schema import AffinityConfig, ModelAlias
from corral.conversation.call import Call, Endpoint, Route, Surface, Target

log = logging.getLogger("corral.affinity")

SESSION_HEADERS = ("x-corral-session", "x-claude-code-session-id", "session-id", "x-openwebui-chat-id")
MAX_SESSION = 256  # characters of a session header that count
HIT, MISS, REPIN, SPILL = "hit", "miss", "repin", "spill"
QUEUE = 4096  # pin writes waiting for Redis at most (more are dropped and counted)


def session_of(headers: Mapping[str, str]) -> str | None:
    """The conversation key a client sent in a header (lower-case names), if any."""
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return value[:MAX_SESSION]
    return None


def _text(value: Any) -> str:
    """A message content as text: the string, or the text parts of a list (images left out)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(
            str(p.get("text", "")) for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _tool_names(tools: Any) -> str:
    if not isinstance(tools, list):
        return ""
    names = []
    for tool in tools:
        if isinstance(tool, dict):
            fn = tool.get("function")
            name = fn.get("name") if isinstance(fn, dict) else tool.get("name")
            names.append(str(name))
    return ",".join(names)


def prefix_of(call: Call) -> str | None:
    """The stable prefix of a chat's conversation: system prompt(s), the first user turn, the
    tools' names; None when there is no user turn yet (nothing to group turns by)."""
    body = call.body
    system = ""
    first = None
    if call.surface is Surface.RESPONSES:
        system = _text(body.get("instructions"))
        items = body.get("input")
        if isinstance(items, str):
            first = items
        elif isinstance(items, list):
            for item in items:
                if isinstance(item, dict) and item.get("role") in ("system", "developer"):
                    system += _text(item.get("content"))
                elif isinstance(item, dict) and item.get("role") == "user":
                    first = _text(item.get("content"))
                    break
    else:
        if call.surface is Surface.MESSAGES:
            system = _text(body.get("system"))
        messages = body.get("messages")
        if isinstance(messages, list):
            for message in messages:
                if not isinstance(message, dict):
                    continue
                role = message.get("role")
                if role in ("system", "developer"):
                    system += _text(message.get("content"))
                elif role == "user":
                    first = _text(message.get("content"))
                    break
    if first is None:
        return None
    return f"{system}\x00{first}\x00{_tool_names(body.get('tools'))}"


def key_of(call: Call, pool: str) -> str | None:
    """The pin key of ``call`` in ``pool`` (hashed), or None when it has no conversation."""
    if call.endpoint is Endpoint.EMBEDDING or call.endpoint is Endpoint.LEGACY_EMBEDDING:
        return None
    session = call.session
    if session is not None:
        source = "s\x00" + session
    elif call.endpoint is Endpoint.CHAT:
        prefix = prefix_of(call)
        if prefix is None:
            return None
        source = "p\x00" + prefix
    else:
        return None
    data = f"{pool}\x00{source}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(slots=True)
class AffinityStats:
    hits: int = 0
    misses: int = 0
    repins: int = 0
    spills: int = 0  # short prompts served at once elsewhere: their pinned deployment was full
    shared_errors: int = 0  # Redis errors (pins kept locally)
    shared_dropped: int = 0  # pin writes dropped: the queue to Redis was full


class Pins:
    """The pins of this process: key -> deployment, least recently used first, with an idle TTL."""

    def __init__(self, size: int, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._pins: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.size = size
        self.ttl = ttl
        self.clock = clock
        self.stats = AffinityStats()
        self.shared: SharedPins | None = None

    def __len__(self) -> int:
        return len(self._pins)

    def get(self, key: str) -> str | None:
        entry = self._pins.get(key)
        if entry is None:
            if self.shared is not None:
                self.shared.look_up(key)  # in the background, for the conversation's next turn
            return None
        now = self.clock()
        if now - entry[1] > self.ttl:
            del self._pins[key]
            return None
        self._pins.move_to_end(key)
        return entry[0]

    def put(self, key: str, deployment: str, *, share: bool = True) -> None:
        old = self._pins.get(key)
        self._pins[key] = (deployment, self.clock())
        self._pins.move_to_end(key)
        while len(self._pins) > self.size:
            self._pins.popitem(last=False)
        if share and self.shared is not None and (old is None or old[0] != deployment):
            self.shared.write(key, deployment)

    def peek(self, key: str) -> str | None:
        """The pin of ``key`` without a background lookup or a change of order."""
        entry = self._pins.get(key)
        if entry is None or self.clock() - entry[1] > self.ttl:
            return None
        return entry[0]

    def snapshot(self) -> dict[str, str]:
        """Every pin now: key -> deployment (for the admin views and tests)."""
        return {k: d for k, (d, _) in self._pins.items()}

    def touch(self, key: str) -> None:
        entry = self._pins.get(key)
        if entry is not None:
            self._pins[key] = (entry[0], self.clock())

    def drop(self, deployment: str) -> int:
        """Forget every pin to ``deployment`` (it was removed); how many there were."""
        gone = [k for k, (d, _) in self._pins.items() if d == deployment]
        for k in gone:
            del self._pins[k]
        return len(gone)


class Affinity:
    """Ranks a pool's ordered targets by a call's pin and records who answered."""

    def __init__(
        self,
        pins: Pins,
        wait: float,
        aliases: Mapping[str, ModelAlias] | None = None,
        *,
        enabled: bool = True,
        spill_below: int = 0,
    ) -> None:
        self.pins = pins
        self.wait = wait
        self.aliases = aliases or {}
        self.enabled = enabled
        self.spill_below = spill_below  # estimated prompt tokens; 0: always wait for the pin

    @property
    def stats(self) -> AffinityStats:
        return self.pins.stats

    def pinned(self, key: str, ranked: Sequence[Target]) -> Target | None:
        """The pinned target of ``key`` if it is among ``ranked`` (what strategy and health allow)."""
        name = self.pins.get(key)
        if name is None:
            return None
        return next((t for t in ranked if t.provider == name), None)

    def applies(self, route: Route, types: Mapping[str, str]) -> bool:
        """Whether pins are kept for ``route``'s pool: its alias's ``affinity``, else on for a
        pool of several deployments with an Ollama one among them (where a KV cache is kept)."""
        if not self.enabled:
            return False
        alias = self.aliases.get(route.name) if route.is_alias else None
        if alias is not None and alias.affinity is not None:
            return alias.affinity
        providers = {t.provider for t in route.targets}
        return len(providers) > 1 and any(types.get(p) == "ollama" for p in providers)

    def record(self, key: str, served: str, *, spilled: bool = False) -> str:
        """Deployment ``served`` answered the call with pin key ``key``: hit, miss, repin, or
        spill (``spilled``: it took the call at once because the pinned one was full).

        After a spill the pin moves too: the deployment that served this turn holds the
        conversation's latest prefix in its KV cache (the turn before's and this one's), the old
        one at best the turn before's, and the next turn's prompt begins with this one's. A long
        next turn then waits for the deployment with the most of it cached; a short one may
        spill again, which is cheap by definition."""
        previous = self.pins.peek(key)
        if previous == served:  # also a spill to where another turn already moved the pin
            self.pins.touch(key)
            self.pins.stats.hits += 1
            return HIT
        self.pins.put(key, served)
        if spilled:
            self.pins.stats.spills += 1
            return SPILL
        if previous is None:
            self.pins.stats.misses += 1
            return MISS
        self.pins.stats.repins += 1
        return REPIN


class SharedPins:
    """Pins shared through Redis: write-behind, applied from a pub/sub channel, fail open."""

    def __init__(self, pins: Pins, url: str, prefix: str, *, timeout: float = 1.0) -> None:
        from redis.asyncio import Redis  # loaded only when Redis is configured

        self._pins = pins
        self._redis: Any = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._channel = prefix.rstrip(":") + ":affinity"  # as the limiter's and the cluster's keys
        self._prefix = self._channel + ":"
        self._queue: asyncio.Queue[tuple[str, str | None]] = asyncio.Queue(QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._failing = False
        self.listening = asyncio.Event()  # subscribed (tests wait for it)
        pins.shared = self

    def write(self, key: str, deployment: str) -> None:
        self._offer((key, deployment))

    def look_up(self, key: str) -> None:
        self._offer((key, None))

    def _offer(self, item: tuple[str, str | None]) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._pins.stats.shared_dropped += 1

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._writer(), name="corral-affinity-writer"),
                asyncio.create_task(self._listener(), name="corral-affinity-listener"),
            ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        with contextlib.suppress(Exception):
            await self._redis.aclose()

    def _failed(self, exc: BaseException) -> None:
        self._pins.stats.shared_errors += 1
        if not self._failing:
            log.warning("affinity: Redis unreachable, pins stay local to this process: %s", exc)
        self._failing = True

    async def _writer(self) -> None:
        ttl = max(1, int(self._pins.ttl))
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 256:
                batch.append(self._queue.get_nowait())
            writes = [(k, d) for k, d in batch if d is not None]
            reads = [k for k, d in batch if d is None]
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, deployment in writes:
                        pipe.set(self._prefix + key, deployment, ex=ttl)
                        pipe.publish(self._channel, f"{key} {deployment}")
                    for key in reads:
                        pipe.get(self._prefix + key)
                    results = await pipe.execute()
            except Exception as exc:
                self._failed(exc)
                await asyncio.sleep(1.0)  # an outage costs one error a second, not one per request
                continue
            if self._failing:
                log.info("affinity: Redis reachable again, pins are shared")
                self._failing = False
            for key, value in zip(reads, results[2 * len(writes) :], strict=True):
                if value is not None and self._pins.peek(key) is None:
                    self._pins.put(
                        key, value.decode() if isinstance(value, bytes) else str(value), share=False
                    )

    async def _listener(self) -> None:
        while True:
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self._channel)
                self.listening.set()
                try:
                    while True:
                        message = await pubsub.get_message(timeout=5.0)
                        if message is None:
                            continue
                        data = message.get("data")
                        text = data.decode() if isinstance(data, bytes) else str(data)
                        key, _, deployment = text.partition(" ")
                        if key and deployment:
                            self._pins.put(key, deployment, share=False)
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                self._failed(exc)
                await asyncio.sleep(1.0)


def build(cfg: AffinityConfig, aliases: Mapping[str, ModelAlias], previous: Affinity | None) -> Affinity:
    """Affinity for a (new) config, keeping ``previous``'s pins (and their Redis sharing)."""
    pins = previous.pins if previous is not None else Pins(cfg.size, cfg.ttl)
    pins.size, pins.ttl = cfg.size, cfg.ttl
    return Affinity(pins, cfg.wait, aliases, enabled=cfg.enabled, spill_below=cfg.spill_below)
