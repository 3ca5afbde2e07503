"""The append-only audit log of admin changes: who did what to which object, before and after.

Every provider, alias and key write calls ``write_entry`` inside its own transaction, so a
change and its audit row commit together or not at all. ``before``/``after`` are redacted
views, and ``redact`` scrubs anything that looks like a secret as a second line of defence.
Actors are key ids or ``"master"``, never keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.errors import InvalidRequest
from corral.store.access import Access, iso
from corral.store.tables import audit_log

REDACTED = "<redacted>"
MAX_LIMIT = 1000
_SECRET_NAMES = frozenset(
    {"api_key", "apikey", "key", "secret", "password", "passwd", "token", "authorization", "key_hash"}
)
_SECRET_SUFFIXES = ("_key", "_secret", "_token", "_password", "-key", "-token", "-secret")
# Fields already reduced to a safe form by the repositories (a preview, a list of header names).
_SAFE_NAMES = frozenset({"api_key_preview", "has_api_key", "header_names"})


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    if lowered in _SAFE_NAMES:
        return False
    return lowered in _SECRET_NAMES or lowered.endswith(_SECRET_SUFFIXES)


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced, at any depth."""
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if v is not None and is_secret_name(str(k)) else redact(v)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return REDACTED
    return value


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": iso(self.at),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "before": self.before,
            "after": self.after,
        }


async def write_entry(
    conn: AsyncConnection,
    *,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> None:
    """Append one entry on ``conn``, inside the caller's transaction."""
    await conn.execute(
        insert(audit_log).values(
            at=at,
            actor=actor[:64],
            action=action[:64],
            target=target[:256],
            before=None if before is None else redact(before),
            after=None if after is None else redact(after),
        )
    )


class AuditRepo:
    def __init__(self, access: Access) -> None:
        self._db = access

    async def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one entry in its own transaction (for actions that change no other table)."""
        async with self._db.write() as conn:
            await write_entry(
                conn, at=self._db.now(), actor=actor, action=action, target=target, before=before, after=after
            )

    async def latest_id(self) -> int:
        """The id of the newest entry (0: none): every admin change moves it, so a process can
        tell that another changed something with one indexed read."""
        async with self._db.read() as conn:
            value = (await conn.execute(select(func.max(audit_log.c.id)))).scalar()
        return int(value or 0)

    async def since(self, base: int) -> tuple[int, int]:
        """The newest id and the number of entries after ``base`` (a process's start): a
        change shows in one or the other even when it committed after one with a higher id."""
        async with self._db.read() as conn:
            query = select(func.max(audit_log.c.id), func.count()).where(audit_log.c.id > base)
            newest, count = (await conn.execute(query)).one()
        return int(newest or base), int(count)

    async def list(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        since: datetime | None = None,
        action: str | None = None,
        target: str | None = None,
    ) -> list[AuditEntry]:
        """Newest first. ``since`` keeps entries at or after that instant."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(f"'limit' must be between 1 and {MAX_LIMIT}.", param="limit")
        if offset < 0:
            raise InvalidRequest("'offset' must be 0 or more.", param="offset")
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit).offset(offset)
        if since is not None:
            if since.tzinfo is None:
                raise InvalidRequest("'since' must carry a time zone (for example 2025-01-01T00:00:00Z).")
            query = query.where(audit_log.c.at >= since)
        if action is not None:
            query = query.where(audit_log.c.action == action)
        if target is not None:
            query = query.where(audit_log.c.target == target)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            AuditEntry(
                id=row["id"],
                at=row["at"],
                actor=row["actor"],
                action=row["action"],
                target=row["target"],
                before=row["before"],
                after=row["after"],
            )
            for row in rows
        ]
