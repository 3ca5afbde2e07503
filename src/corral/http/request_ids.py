"""Request ids: corral's own for every request, and the client's ``X-Request-Id`` beside it.

Corral's id (``req_`` + 16 hex digits of the wall clock in nanoseconds + 8 random hex digits)
is unique and roughly time-ordered: it is the usage record's idempotency key, so appending to
that unique index stays cheap, and it is what the admin API and logs show. A client's
``X-Request-Id`` (if it is short and plain) is echoed back in ``x-request-id`` and stored with
the usage record for correlation, but never used as a key: clients repeat ids (retries, fixed
values), and a repeated key would have cost a usage record. Every answer carries corral's id in
``x-corral-request-id``.
"""

from __future__ import annotations

import random
import re
import time

from aiohttp import web

REQUEST_ID = web.RequestKey("request_id", str)
CLIENT_REQUEST_ID = web.RequestKey("client_request_id", str)
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def new_request_id() -> str:
    # The random part only keeps ids apart (it is not a secret): Python's generator is seeded
    # from the OS, reseeded in forked children, and costs far less than a getrandom() call.
    return f"req_{time.time_ns():016x}{random.getrandbits(32):08x}"


def request_id(request: web.Request) -> str:
    """Give ``request`` corral's id (and note the client's, if valid); return corral's id."""
    rid = new_request_id()
    request[REQUEST_ID] = rid
    given = client_id_of(request.headers.get("x-request-id"))
    if given is not None:
        request[CLIENT_REQUEST_ID] = given
    return rid


def client_id_of(given: str | None) -> str | None:
    """The client's ``X-Request-Id`` if it is short and plain (it is echoed in a header), else None."""
    return given if given and _CLIENT_ID.fullmatch(given) else None


def client_request_id(request: web.Request) -> str | None:
    return request.get(CLIENT_REQUEST_ID)


def id_headers(rid: str, client_rid: str | None) -> dict[str, str]:
    """The id headers of an answer: the client's id echoed (else corral's), and corral's."""
    return {"x-request-id": client_rid or rid, "x-corral-request-id": rid}
