"""Console sessions: a key signs in once, the browser then holds only a random session token.

``Sessions`` keeps, per session, the SHA-256 of its token (never the token, never the key), the
key id and scope it was opened with, a CSRF token, and when it was opened and last used. A
session ends when it has not been used for ``idle`` seconds, and in any case ``lifetime``
seconds after it was opened. The table is in memory only (a restart signs everyone out) and
bounded: one key holds at most ``per_key`` sessions (signing in again ends that key's least
recently used one), and a key never ends another key's sessions to make room: when the table
is full of live sessions, a key signing in replaces its own least recently used session, and a
key holding none is refused (503) until some end. On every request the key
behind a session is looked up again in the key cache, so a key that is revoked, disabled,
expired or given another scope ends its sessions on the next request.

``Sessions.principal`` is the hook ``Authenticator`` calls when a request carries no key: it
honours the session cookie only on aiohttp requests (the control plane; the data plane's edge
never passes one) and, on every request, GETs included, requires the session's CSRF token in
``X-CSRF-Token`` (constant-time compare) and no sign of another origin (``Origin``,
``Sec-Fetch-Site``). The cookie alone is worth nothing: browsers send cookies to every port of a
host, so any other server on the machine may see it; the token is handed out once, in the
sign-in answer, and the page keeps it in origin-scoped storage, which no other port can read.
Over TLS the cookie is ``__Host-corral_session`` (Secure, this host only, path /).

Guessing keys, at sign-in as on any other route, is slowed down by ``corral.http.guesses``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from corral.errors import AuthenticationFailed, PermissionDenied, ServerBusy
from corral.keys.cache import KeyCache
from corral.keys.principal import MASTER, Principal

COOKIE = "corral_session"
HOST_COOKIE = "__Host-corral_session"  # over TLS: no Domain, Secure, Path=/, as the prefix demands
CSRF_HEADER = "X-CSRF-Token"
BACKGROUND_HEADER = "X-Corral-Background"  # the console's timed refreshes: they do not count as use
MAX_SESSIONS = 1000
MAX_PER_KEY = 10  # sessions one key may hold (browsers, tabs signed in separately)
LIFETIME = 12 * 3600.0  # seconds: a session ends this long after sign-in, however much it is used

_EXPIRED = (
    "Your console session has ended (signed out, idle too long, or its key was revoked or changed). "
    "Sign in again with your key."
)
_CSRF = (
    "This request carries the console's session cookie but not its CSRF token. Sign in to the "
    "console again; scripts and tools should send the key in 'Authorization: Bearer <key>' instead."
)
_ORIGIN = "This request came from another site's page; the console only accepts its own."


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


@dataclass(slots=True)
class Session:
    key_id: str
    scope: str
    csrf: str
    opened: float  # monotonic
    seen: float  # monotonic: the last request made on the user's behalf


class Sessions:
    """The open sessions. ``keys`` returns the key cache (None without a control plane)."""

    def __init__(
        self,
        keys: Callable[[], KeyCache | None],
        idle: float,
        *,
        lifetime: float = LIFETIME,
        limit: int = MAX_SESSIONS,
        per_key: int = MAX_PER_KEY,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self.idle = idle
        self.lifetime = lifetime
        self._limit = limit
        self._per_key = per_key
        self._clock = clock
        self._wall = wall
        self._open: OrderedDict[bytes, Session] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._open)

    def open(self, who: Principal) -> tuple[str, Session]:
        """A new session for ``who``: its token (for the cookie, never stored) and the session.
        ``ServerBusy`` when the table is full of other keys' live sessions."""
        now = self._clock()
        if len(self._open) >= self._limit:
            for hashed in [h for h, s in self._open.items() if not self._alive(s, now)]:
                del self._open[hashed]
        mine = [h for h, s in self._open.items() if s.key_id == who.key_id]  # least recently used first
        over = len(mine) - self._per_key + 1  # to make room within the key's own share
        if len(self._open) >= self._limit:
            over = max(over, 1)  # a full table: the key may only give up one of its own
        for hashed in mine[: max(0, over)]:
            del self._open[hashed]
        if len(self._open) >= self._limit:
            raise ServerBusy(
                f"The console already has {self._limit} sessions open, all in use; sign in again when "
                "some end (signed out, or unused for admin.session_idle). Scripts need no session: "
                "send the key as 'Authorization: Bearer <key>'.",
                code="too_many_sessions",
            )
        token = secrets.token_urlsafe(32)
        session = Session(who.key_id, who.scope, secrets.token_urlsafe(32), now, now)
        self._open[digest(token)] = session
        return token, session

    def _alive(self, session: Session, now: float) -> bool:
        """Within its idle time and its lifetime (the key behind it is checked on lookup)."""
        return now - session.seen <= self.idle and now - session.opened <= self.lifetime

    def close(self, token: str) -> None:
        self._open.pop(digest(token), None)

    def drop_key(self, key_id: str) -> None:
        """End every session opened with ``key_id``."""
        for hashed in [h for h, s in self._open.items() if s.key_id == key_id]:
            del self._open[hashed]

    def lookup(self, token: str, *, touch: bool = True) -> tuple[Session, Principal] | None:
        """The live session of ``token`` and who it acts for now, or None (and it is ended)."""
        hashed = digest(token)
        session = self._open.get(hashed)
        if session is None:
            return None
        now = self._clock()
        who = self._current(session) if self._alive(session, now) else None
        if who is None:
            del self._open[hashed]
            return None
        if touch:
            session.seen = now
            self._open.move_to_end(hashed)
        return session, who

    def _current(self, session: Session) -> Principal | None:
        """The session's principal from the key as it is now; None if it no longer qualifies."""
        if session.key_id == MASTER:
            return Principal.master()
        keys = self._keys()
        if keys is None:
            return None
        record = keys.get(session.key_id)
        if record is None or not record.enabled or record.scope != session.scope:
            return None
        if record.expires_at is not None and record.expires_at.timestamp() <= self._wall():
            return None
        return keys.principal(record)

    def principal(self, request: object) -> Principal | None:
        """The caller of a control-plane request by its session cookie (the ``Authenticator``
        hook); None when there is no cookie. Raises 401 for an ended session and 403 for a
        state-changing request without the session's CSRF token."""
        if not isinstance(request, web.BaseRequest):
            return None  # the data plane never honours the console's cookie
        token = request.cookies.get(cookie_name(request))
        if not token:
            return None
        found = self.lookup(token, touch=request.headers.get(BACKGROUND_HEADER) != "1")
        if found is None:
            raise AuthenticationFailed(_EXPIRED, code="session_expired")
        session, who = found
        check_csrf(request, session)
        return who


def is_secure(request: web.BaseRequest) -> bool:
    """Served over TLS: corral's own (``admin.tls_cert``), or a proxy on this host that says so."""
    if request.secure:
        return True
    try:
        local = ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        local = False
    return local and request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def cookie_name(request: web.BaseRequest) -> str:
    return HOST_COOKIE if is_secure(request) else COOKIE


def check_origin(request: web.BaseRequest) -> None:
    """403 for a request a browser says another site's (or another origin's) page made: an
    ``Origin`` that is not this one, or ``Sec-Fetch-Site`` other than same-origin or none."""
    origin = request.headers.get("Origin")
    fetched_from = request.headers.get("Sec-Fetch-Site", "none").lower()
    if (origin is not None and urlsplit(origin).netloc != request.host) or fetched_from not in (
        "same-origin",
        "none",
    ):
        raise PermissionDenied(_ORIGIN, code="cross_origin")


def check_csrf(request: web.BaseRequest, session: Session) -> None:
    check_origin(request)
    given = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), session.csrf.encode()):
        raise PermissionDenied(_CSRF, code="csrf_failed")


__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "HOST_COOKIE",
    "Session",
    "Sessions",
    "check_csrf",
    "check_origin",
    "cookie_name",
    "is_secure",
]
