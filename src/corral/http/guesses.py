"""Slowing down key guessing on the control plane, per client address.

``GuessThrottle`` counts failed key checks per address: a sign-in to the console with a wrong
key, and a request to any control-plane route whose ``Authorization`` or ``X-API-Key`` key is
refused (401). After ``free`` failures each further one makes that address wait twice as long
as the last (capped at ``cap`` seconds); while it waits, every attempt that presents a key (a
sign-in, or a request with a key header) is answered 429 with ``Retry-After`` without the key
being looked at, so the answer never tells a guess from the key. A success does not wipe the
count (a caller holding any valid key could otherwise reset it between guesses); an address
is forgotten after ``forget`` seconds without a failure. The table is bounded (oldest first).

Requests that present no key (the console's session cookie, whose token is not guessable, or
nothing) are never held up, so a guessing neighbour on a shared address (127.0.0.1) does not
lock a signed-in console out.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from corral.errors import CorralError
from corral.http.auth import presented_key
from corral.http.errors import error_response

FREE_FAILURES = 5  # failed key checks from one address before the waits begin
MAX_WAIT = 300.0  # seconds
FORGET_AFTER = 3600.0  # seconds without a failure after which an address starts afresh
MAX_CLIENTS = 4096
SIGN_IN = "/console/session"  # its handler counts and checks itself: the key is in the body


class TooManyFailures(CorralError):
    """Too many failed key checks from one address: 429 with ``Retry-After``."""

    status = 429
    error_type = "rate_limit_error"

    def __init__(self, wait: float) -> None:
        seconds = max(1, math.ceil(wait))
        super().__init__(
            f"Too many wrong keys from this address (sign-ins or API calls); try again in {seconds} s.",
            code="too_many_failures",
        )
        self.headers = {"Retry-After": str(seconds)}


@dataclass(slots=True)
class _Failures:
    count: int
    blocked_until: float
    last: float


class GuessThrottle:
    """Failed key checks per client address; ``wait`` says how long that address must wait."""

    def __init__(
        self,
        *,
        free: int = FREE_FAILURES,
        cap: float = MAX_WAIT,
        forget: float = FORGET_AFTER,
        limit: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        self._cap = cap
        self._forget = forget
        self._limit = limit
        self._clock = clock
        self._clients: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def _entry(self, client: str, now: float) -> _Failures | None:
        entry = self._clients.get(client)
        if entry is not None and now - entry.last > self._forget:
            del self._clients[client]
            return None
        return entry

    def wait(self, client: str) -> float:
        """Seconds before ``client`` may try again (0: now)."""
        now = self._clock()
        entry = self._entry(client, now)
        return 0.0 if entry is None else max(0.0, entry.blocked_until - now)

    def failed(self, client: str) -> None:
        now = self._clock()
        entry = self._entry(client, now)
        entry = self._clients.pop(client) if entry is not None else _Failures(0, 0.0, now)
        entry.count += 1
        entry.last = now
        over = entry.count - self.free
        if over >= 0:
            entry.blocked_until = now + min(self._cap, 2.0**over)
        while len(self._clients) >= self._limit:
            self._clients.popitem(last=False)
        self._clients[client] = entry

    def forget(self, client: str) -> None:
        self._clients.pop(client, None)


THROTTLE = web.AppKey("guess_throttle", GuessThrottle)


def client_of(request: web.BaseRequest) -> str:
    """The address a request came from: the connection's peer, never a header the client chose."""
    return request.remote or "unknown"


@web.middleware
async def throttle_guesses(request: web.Request, handler: Handler) -> web.StreamResponse:
    """While an address waits, refuse its requests that present a key; count refused keys."""
    throttle = request.app.get(THROTTLE)
    if throttle is None or request.path == SIGN_IN or presented_key(request) is None:
        return await handler(request)
    client = client_of(request)
    wait = throttle.wait(client)
    if wait > 0:
        return error_response(TooManyFailures(wait))
    response = await handler(request)
    if response.status == 401:
        throttle.failed(client)
    return response


__all__ = ["THROTTLE", "GuessThrottle", "TooManyFailures", "client_of", "throttle_guesses"]
