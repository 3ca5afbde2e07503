"""Who the end user of a call is, when a key serves many people: what each surface's client says.

OpenAI's chat, completions and Responses APIs carry ``user`` (the Responses API also
``safety_identifier``); Anthropic's Messages API carries ``metadata.user_id``. Claude Code fills
that with a JSON string (``{"device_id": ..., "account_uuid": ..., "session_id": ...}``): its
account, else its device, is the user there; the session is not (affinity reads it). A key's
``owner`` beats all of these (``Accountant.admit``).
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.core.call import Call, Surface

MAX_USER = 256  # characters kept of a client-given user


def end_user(call: Call) -> str | None:
    """The end user the call names, cut to ``MAX_USER``, or None."""
    body = call.body
    user = body.get("user")
    if isinstance(user, str) and user:
        return user[:MAX_USER]
    if call.surface is Surface.RESPONSES:
        ident = body.get("safety_identifier")
        return ident[:MAX_USER] if isinstance(ident, str) and ident else None
    if call.surface is Surface.MESSAGES:
        metadata = body.get("metadata")
        if isinstance(metadata, dict):
            return _anthropic_user(metadata.get("user_id"))
    return None


def _anthropic_user(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if value.startswith("{") and len(value) <= 4096:
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            for field in ("account_uuid", "device_id"):
                who = parsed.get(field)
                if isinstance(who, str) and who:
                    return who[:MAX_USER]
            return None  # only a session: not a user
    return value[:MAX_USER]
