"""Client authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

The master key is compared as a SHA-256 digest with ``hmac.compare_digest`` (constant time,
and the real key's length does not leak); gateway keys (``gw_…``) are checked against the
in-memory key cache, which does no I/O. Every failure is a 401 that never echoes the key.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Protocol

from corral.errors import AuthenticationFailed, PermissionDenied
from corral.keys.cache import KeyCache
from corral.keys.principal import Principal

_MISSING = (
    "No API key. Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'. "
    "The master key was printed at first start and is stored in the data directory."
)
_WRONG = "The API key is not valid. Check the key you are sending; it is not shown here."
MAX_KEY = 512


class HasHeaders(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...


def presented_key(request: HasHeaders) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    key = request.headers.get("x-api-key")
    return key.strip() if key else None


class SessionHook(Protocol):
    """Another credential than a key (the console's session cookie, ``corral.console.session``):
    the caller, None when the request has none, or an authentication error."""

    def principal(self, request: object) -> Principal | None: ...


class Authenticator:
    def __init__(self, master_key: str, keys: KeyCache | None = None) -> None:
        self._master = hashlib.sha256(master_key.encode()).digest()
        self.keys = keys
        self.sessions: SessionHook | None = None  # set when the console is on
        self._master_principal = Principal.master()

    def principal(self, request: HasHeaders) -> Principal:
        key = presented_key(request)
        if key is None:
            who = self.sessions.principal(request) if self.sessions is not None else None
            if who is not None:
                return who
            raise AuthenticationFailed(_MISSING, code="missing_api_key")
        if len(key) > MAX_KEY:
            raise AuthenticationFailed(_WRONG, code="invalid_api_key")
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        if hmac.compare_digest(digest, self._master):
            who = self._master_principal
        elif self.keys is not None and key.startswith("gw_"):
            who = self.keys.principal(self.keys.verify(key, time.time()))
        else:
            raise AuthenticationFailed(_WRONG, code="invalid_api_key")
        return who

    def gate(self, headers: Mapping[str, str], admin: bool) -> Principal:
        """The caller of a request, from its head alone (the edge calls this before reading a body)."""
        request = _Head(headers)
        return self.admin(request) if admin else self.principal(request)

    def check(self, request: HasHeaders) -> Principal:
        """Any valid key."""
        return self.principal(request)

    def admin(self, request: HasHeaders) -> Principal:
        """A key with admin scope (the master key is one)."""
        who = self.principal(request)
        if not who.is_admin:
            raise PermissionDenied(
                "This key has scope 'user'; the admin API needs an admin key (or the master key).",
                code="admin_required",
            )
        return who


class _Head:
    __slots__ = ("headers",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        self.headers = headers


def require_model(who: Principal, model: str) -> None:
    if not who.may_use(model):
        raise PermissionDenied(
            f"This key may not use the model '{model}'. Ask an admin to add it to the key's models.",
            code="model_not_allowed",
            param="model",
        )
