"""Client authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Keys are compared as SHA-256 digests with ``hmac.compare_digest``: constant time, and the
length of the real key does not leak.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from corral.errors import AuthenticationFailed

_MISSING = (
    "No API key. Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'. "
    "The master key was printed at first start and is stored in the data directory."
)
_WRONG = "The API key is not valid. Check the key you are sending; it is not shown here."


def presented_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    key = request.headers.get("X-API-Key")
    return key.strip() if key else None


class KeyChecker:
    def __init__(self, master_key: str) -> None:
        self._master = hashlib.sha256(master_key.encode()).digest()

    def check(self, request: web.Request) -> None:
        key = presented_key(request)
        if key is None:
            raise AuthenticationFailed(_MISSING, code="missing_api_key")
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        if not hmac.compare_digest(digest, self._master):
            raise AuthenticationFailed(_WRONG, code="invalid_api_key")
