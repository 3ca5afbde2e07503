"""The schema of the durable store: SQLAlchemy Core tables shared by the repositories.

The Alembic revisions under ``migrations/versions`` create exactly these tables; a test
compares the migrated database with this metadata. Timestamps are timezone-aware UTC on
every backend (``UTCDateTime``); JSON columns hold free-form objects validated by callers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the UTC wall time is stored
    and the zone is put back on read. Naive datetimes are refused: they are a bug upstream.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass a timezone-aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json() -> JSON:
    """JSON where Python ``None`` is SQL NULL (so "no value" and "JSON null" never differ)."""
    return JSON(none_as_null=True)


metadata = MetaData(naming_convention=NAMING)

providers = Table(
    "providers",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("type", String(32), nullable=False),
    Column("base_url", String(2048), nullable=False),
    Column("api_key_enc", Text, nullable=True),  # "v1:" + Fernet token, never plaintext
    Column("api_key_preview", String(32), nullable=True),
    Column("headers_enc", Text, nullable=True),  # encrypted JSON object of extra headers
    Column("settings", _json(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

aliases = Table(
    "aliases",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("spec", _json(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

routing_rules = Table(  # (power level, tier) -> a candidate model (routing/rules.py)
    "routing_rules",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("level", String(16), nullable=False),
    Column("tier", String(64), nullable=False),
    Column("model", String(256), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("weight", Double, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

gateway_keys = Table(
    "gateway_keys",
    metadata,
    Column("id", String(16), primary_key=True),  # the public lookup id inside the key
    Column("key_hash", LargeBinary(32), nullable=False),  # SHA-256 of the full key
    Column("name", String(256), nullable=True),
    Column("owner", String(256), nullable=True),
    Column("scope", String(16), nullable=False),
    Column("models", _json(), nullable=True),  # list of model names, NULL = every model
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("enabled", Boolean(create_constraint=False), nullable=False),
    Column("tier", String(64), nullable=True),
    Column("metadata", _json(), nullable=False),
    Column("limits", _json(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime(), nullable=True),
    CheckConstraint("scope IN ('admin', 'user')", name="scope"),
    Index("ix_gateway_keys_owner", "owner"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(64), nullable=False),  # a gateway key id, or "master"
    Column("action", String(64), nullable=False),  # e.g. "provider.create"
    Column("target", String(256), nullable=False),
    Column("before", _json(), nullable=True),  # redacted
    Column("after", _json(), nullable=True),  # redacted
    Index("ix_audit_log_at", "at"),
)

# One row per proxied request (corral.usage). ``request_id`` is unique so batched inserts and
# spill-file replays are idempotent; every index leads with a filter column and ends with
# ``at`` so "this key / model / provider over that time range" is one index range scan.
usage = Table(
    "usage",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("request_id", String(128), nullable=False),
    Column("at", UTCDateTime(), nullable=False),  # when the request arrived
    Column("key_id", String(16), nullable=True),
    Column("user", String(256), nullable=True),
    Column("requested_model", String(256), nullable=False),
    Column("served_model", String(256), nullable=True),
    Column("provider", String(128), nullable=True),
    Column("instance", String(256), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("fallback", Boolean(create_constraint=False), nullable=False),
    Column("streamed", Boolean(create_constraint=False), nullable=False),
    Column("status", Integer, nullable=False),
    Column("error_class", String(64), nullable=True),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("total_tokens", BigInteger, nullable=False),
    Column("tokens_estimated", Boolean(create_constraint=False), nullable=False),
    Column("cost_usd", Double, nullable=False),
    Column("latency_ms", Double, nullable=False),
    Column("ttft_ms", Double, nullable=True),
    Column("upstream_ms", Double, nullable=True),
    Column("overhead_ms", Double, nullable=True),
    Column("client_request_id", String(64), nullable=True),  # the client's X-Request-Id (revision 0003)
    Column("surface", String(32), nullable=True),  # the client's API (revision 0005; NULL before it)
    Index("ux_usage_request_id", "request_id", unique=True),
    Index("ix_usage_at", "at"),
    Index("ix_usage_key_id_at", "key_id", "at"),
    Index("ix_usage_user_at", "user", "at"),
    Index("ix_usage_requested_model_at", "requested_model", "at"),
    Index("ix_usage_served_model_at", "served_model", "at"),
    Index("ix_usage_provider_at", "provider", "at"),
)

# Usage totals per minute, hour and day (corral.usage.rollup, revision 0005), kept by the usage
# writer in the transaction that inserts the rows: one row per grain (seconds), dimension
# ("" for all requests, or provider, model, key, user, instance, requested_model, surface),
# bucket start (Unix seconds) and value ("" for none, else "=" + the value), with the sums and
# a fixed log-bucket latency histogram (lat_00 .. lat_NN, counts; bounds in corral.usage.rollup).
LATENCY_BUCKETS = 62
usage_rollup = Table(
    "usage_rollup",
    metadata,
    Column("grain", Integer, primary_key=True),
    Column("dim", String(16), primary_key=True),
    Column("start", BigInteger, primary_key=True),
    Column("value", String(257), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("estimated", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("total_tokens", BigInteger, nullable=False),
    Column("cost_usd", Double, nullable=False),
    Column("ttft_count", BigInteger, nullable=False),
    Column("ttft_sum_ms", Double, nullable=False),
    *(Column(f"lat_{i:02d}", Integer, nullable=False) for i in range(LATENCY_BUCKETS)),
)

# The model catalog (corral.store.catalog, revision 0004): one row per provider and model id,
# with what the operator says about it (display name, enabled, prices per million tokens,
# notes) and what an import read from the provider (capabilities, context length).
catalog = Table(
    "catalog",
    metadata,
    Column("provider", String(128), primary_key=True),
    Column("model", String(256), primary_key=True),  # the provider's own model id
    Column("display_name", String(256), nullable=True),
    Column("enabled", Boolean(create_constraint=False), nullable=False),
    Column("input_price", Double, nullable=True),  # USD per million input tokens
    Column("output_price", Double, nullable=True),  # USD per million output tokens
    Column("capabilities", _json(), nullable=True),  # list of strings, e.g. ["completion", "tools"]
    Column("context_length", Integer, nullable=True),
    Column("notes", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)
