"""The usage record: one per proxied request, its row form, its JSON form, and token estimates.

``UsageRecord`` is what the request path hands to ``UsageWriter.submit``. ``to_values`` gives the
column values of the ``usage`` table in ``FIELD_NAMES`` order (strings cut to their column
widths, counts clamped, numbers made finite, so a valid record can never be refused by the
database; it is the form the batched insert uses), ``to_row`` the same as a dict,
``to_json``/``from_json`` the form the spill file stores, and ``from_row`` rebuilds a record
from either, checking every field.

``request_id`` is corral's own id (unique, time-ordered: the usage table's idempotency key);
``client_request_id`` is the ``X-Request-Id`` the client sent, if any, kept for correlation only
(clients may repeat it, so it is never a key).

``surface`` names the API the client spoke, one of ``SURFACES``: ``openai_chat``,
``openai_completions``, ``embeddings`` (OpenAI's /v1/embeddings), ``ollama`` (every /api/* call),
``anthropic_messages``, ``openai_responses``; the accountant maps the call's surface and
endpoint to it, and the metrics label requests with the same names.

Token counts come from the upstream. When it reports none, the caller estimates them with
``estimate_tokens`` (UTF-8 bytes / 4: about 4 characters per token for English, and a fair
guess for other scripts, whose characters take 2-4 bytes and about one token each) and sets
``tokens_estimated``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

BYTES_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators each chat message costs, roughly
_MAX_INT = 2**62  # far above any real count, inside BIGINT
_INT32 = 2**31 - 1

SURFACES = (
    "openai_chat",
    "openai_completions",
    "embeddings",
    "ollama",
    "anthropic_messages",
    "openai_responses",
)

# Column widths are those of the ``usage`` table (corral.store.tables.usage).


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What one request cost and how it went. Times are milliseconds; ``at`` is timezone-aware UTC.

    ``user`` is the key's user or the request's ``user`` field; ``provider``/``instance``/
    ``served_model`` are None when no upstream was reached. ``status`` is the HTTP status sent to
    the client (200 for a stream that started, even if it failed later: then ``error_class`` is
    set). ``upstream_ms`` is the time spent waiting on upstreams and ``overhead_ms`` corral's own.
    """

    request_id: str
    at: datetime
    requested_model: str
    key_id: str | None = None
    user: str | None = None
    served_model: str | None = None
    provider: str | None = None
    instance: str | None = None
    attempts: int = 1
    fallback: bool = False
    streamed: bool = False
    status: int = 200
    error_class: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    tokens_estimated: bool = False
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    upstream_ms: float | None = None
    overhead_ms: float | None = None
    client_request_id: str | None = None
    surface: str | None = None  # one of SURFACES (None in records older than revision 0005)

    @property
    def failed(self) -> bool:
        return self.status >= 400 or self.error_class is not None

    def to_values(self) -> tuple[Any, ...]:
        """Column values of the ``usage`` table in ``FIELD_NAMES`` order, ``at`` as aware UTC.

        Written out field by field: the batched insert calls it once per request, so it avoids
        the generic loop of ``to_row`` (about 3x faster)."""
        at = self.at
        if at.tzinfo is None:
            raise ValueError(f"usage record {self.request_id!r}: 'at' must be a timezone-aware datetime")
        return (
            _text(self.request_id, 128),
            at.astimezone(UTC),
            _text(self.requested_model, 256),
            _maybe_text(self.key_id, 16),
            _maybe_text(self.user, 256),
            _maybe_text(self.served_model, 256),
            _maybe_text(self.provider, 128),
            _maybe_text(self.instance, 256),
            _count(self.attempts, _INT32),
            bool(self.fallback),
            bool(self.streamed),
            _count(self.status, _INT32),
            _maybe_text(self.error_class, 64),
            _count(self.prompt_tokens, _MAX_INT),
            _count(self.completion_tokens, _MAX_INT),
            _count(self.total_tokens, _MAX_INT),
            bool(self.tokens_estimated),
            _finite(self.cost_usd),
            _finite(self.latency_ms),
            _maybe_finite(self.ttft_ms),
            _maybe_finite(self.upstream_ms),
            _maybe_finite(self.overhead_ms),
            _maybe_text(self.client_request_id, 64),
            _maybe_text(self.surface, 32),
        )

    def to_row(self) -> dict[str, Any]:
        """Column values for the ``usage`` table by name (no ``id``: the database assigns it)."""
        return dict(zip(FIELD_NAMES, self.to_values(), strict=True))

    def to_json(self) -> dict[str, Any]:
        """The row with ``at`` as an ISO 8601 string: what the spill file and the admin API show."""
        row = self.to_row()
        row["at"] = row["at"].isoformat()
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> UsageRecord:
        """A record from a table row or a ``to_json`` object; unknown keys (``id``) are ignored.

        Raises ``ValueError`` naming the first field that is missing or of the wrong type.
        """
        values: dict[str, Any] = {}
        for name in FIELD_NAMES:
            if name not in row:
                if name in _REQUIRED:
                    raise ValueError(f"usage record: the field {name!r} is missing")
                continue
            values[name] = _check(name, row[name])
        return cls(**values)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UsageRecord:
        return cls.from_row(data)


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(UsageRecord))
_REQUIRED = frozenset({"request_id", "at", "requested_model"})
_INTS = frozenset({"attempts", "status", "prompt_tokens", "completion_tokens", "total_tokens"})
_FLOATS = frozenset({"cost_usd", "latency_ms", "ttft_ms", "upstream_ms", "overhead_ms"})
_BOOLS = frozenset({"fallback", "streamed", "tokens_estimated"})
_OPTIONAL = frozenset(
    {"key_id", "user", "served_model", "provider", "instance", "error_class"}
    | {"ttft_ms", "upstream_ms", "overhead_ms", "client_request_id", "surface"}
)


def _text(value: str, width: int) -> str:
    if value.isascii() and "\x00" not in value:  # the common case: nothing to clean
        return value[:width]
    return _clean(value)[:width]


def _maybe_text(value: str | None, width: int) -> str | None:
    return None if value is None else _text(value, width)


def _count(value: int, ceiling: int) -> int:
    if type(value) is int and 0 <= value <= ceiling:
        return value
    return max(0, min(int(value), ceiling))


def _finite(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else 0.0


def _maybe_finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _clean(text: str) -> str:
    """``text`` without what PostgreSQL refuses in a string: NUL characters and lone surrogates."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _check(name: str, value: Any) -> Any:
    if value is None and name in _OPTIONAL:
        return None
    if name == "at":
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                value = None
        if not isinstance(value, datetime):
            raise ValueError("usage record: 'at' must be an ISO 8601 timestamp")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if name in _BOOLS:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):  # SQLite hands booleans back as 0/1
            return bool(value)
    elif name in _INTS:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif name in _FLOATS:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, str):
        return value
    raise ValueError(
        f"usage record: the field {name!r} has a value of the wrong type ({type(value).__name__})"
    )


def estimate_tokens(text: str) -> int:
    """A cheap token count for ``text``: UTF-8 bytes / 4, rounded up (0 for an empty string).

    Within about 20 % of real tokenizers for English prose and code; it is only used when the
    upstream reports no counts, and such records are flagged ``tokens_estimated``.
    """
    if not text:
        return 0
    return -(-len(text.encode("utf-8", "surrogatepass")) // BYTES_PER_TOKEN)


def estimate_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Estimated prompt tokens of OpenAI-style chat ``messages`` (string or list-of-parts content)."""
    total = 0
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS
        content = message.get("content")
        if isinstance(content, str):
            total += estimate_tokens(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    total += estimate_tokens(part["text"])
    return total
