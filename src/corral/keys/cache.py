"""Verifying gateway keys in memory: no database I/O on the request path.

``KeyCache`` holds every key's ``KeyRecord`` by key id. It is filled by ``load(store)`` at
start, kept current by the key repository's change notifications (``attach``: a revocation
in this process applies to the very next request), and reloaded by ``refresh_loop`` so that
changes made through another replica land within one interval. ``verify`` parses the
presented key (cheap checks, before any lookup), looks the id up, compares SHA-256 digests
with ``hmac.compare_digest``, and only then reports disabled or expired keys. Failures raise
``AuthenticationFailed`` whose message never contains the presented key.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING

from corral.errors import AuthenticationFailed
from corral.keys import format as key_format
from corral.keys.principal import Principal
from corral.store.keys import KeyRecord

if TYPE_CHECKING:
    from corral.store.db import Store

__all__ = ["KeyCache", "KeyRecord"]

log = logging.getLogger("corral.keys")

_INVALID = (
    "The API key is not valid. Check the key you are sending (it is not shown here); "
    "an administrator can list the gateway's keys by id."
)
_DISABLED = "This API key is disabled. Ask an administrator to enable it, or use another key."
_EXPIRED = "This API key has expired. Ask an administrator for a new key or a later expiry."
EMPTY: Mapping[str, KeyRecord | None] = MappingProxyType({})
_DUMMY_HASH = bytes(32)  # compared against when the id is unknown, so both paths cost the same


class KeyCache:
    def __init__(self) -> None:
        self._records: dict[str, KeyRecord] = {}
        # key id -> (the record it was made from, its Principal), made again when the record
        # for the id is another (a change), so a request builds none
        self._principals: dict[str, tuple[KeyRecord, Principal]] = {}
        self._used: dict[str, float] = {}
        self._loads: list[dict[str, KeyRecord | None]] = []  # changes seen by each load in flight
        self.loaded = False

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key_id: str) -> KeyRecord | None:
        return self._records.get(key_id)

    def records(self) -> list[KeyRecord]:
        """Every known key's record (a snapshot)."""
        return list(self._records.values())

    # keeping it current --------------------------------------------------------------------
    def put(self, record: KeyRecord) -> None:
        self.apply(record.id, record)

    def invalidate(self, key_id: str) -> None:
        self.apply(key_id, None)

    def apply(self, key_id: str, record: KeyRecord | None) -> None:
        """Store ``record`` under ``key_id``, or drop the id when ``record`` is None."""
        if record is None:
            self._records.pop(key_id, None)
        else:
            self._records[key_id] = record
        for changes in self._loads:  # a reload in flight must not undo this change
            changes[key_id] = record

    def attach(self, store: Store) -> None:
        """Apply every committed key change made through ``store`` immediately."""
        store.keys.subscribe(self.apply)

    def replace(self, records: Iterable[KeyRecord], changes: Mapping[str, KeyRecord | None] = EMPTY) -> None:
        """Swap in ``records``, then re-apply ``changes`` made while they were being read."""
        fresh = {record.id: record for record in records}
        for key_id, record in changes.items():
            if record is None:
                fresh.pop(key_id, None)
            else:
                fresh[key_id] = record
        self._records = fresh
        self.loaded = True

    async def load(self, store: Store) -> None:
        """Replace the whole set with what the database holds now."""
        changes: dict[str, KeyRecord | None] = {}
        self._loads.append(changes)
        try:
            records = await store.keys.list()
        finally:
            self._loads = [other for other in self._loads if other is not changes]
        self.replace(records, changes)

    # the request path ----------------------------------------------------------------------
    def verify(self, presented: str, now: float) -> KeyRecord:
        """The record of a valid, enabled, unexpired key; ``now`` is a Unix time."""
        parsed = key_format.parse(presented)
        if parsed is None:
            raise AuthenticationFailed(_INVALID, code="invalid_api_key")
        key_id, _secret = parsed
        record = self._records.get(key_id)
        expected = record.key_hash if record is not None else _DUMMY_HASH
        matches = hmac.compare_digest(key_format.digest(presented), expected)
        if record is None or not matches:
            raise AuthenticationFailed(_INVALID, code="invalid_api_key")
        if not record.enabled:
            raise AuthenticationFailed(_DISABLED, code="key_disabled")
        if record.expires_at is not None and record.expires_at.timestamp() <= now:
            raise AuthenticationFailed(_EXPIRED, code="key_expired")
        self._used[key_id] = now
        return record

    def principal(self, record: KeyRecord) -> Principal:
        """The caller a (verified) record stands for; made once per record, not per request."""
        cached = self._principals.get(record.id)
        if cached is not None and cached[0] is record:
            return cached[1]
        if len(self._principals) > len(self._records) + 1000:  # ids of removed keys: start again
            self._principals.clear()
        who = Principal.from_key(record)
        self._principals[record.id] = (record, who)
        return who

    # background work -----------------------------------------------------------------------
    def take_last_used(self) -> dict[str, datetime]:
        """The last-use times noted since the previous call (and forget them)."""
        used, self._used = self._used, {}
        return {key_id: datetime.fromtimestamp(at, UTC) for key_id, at in used.items()}

    async def flush_last_used(self, store: Store) -> int:
        used = self.take_last_used()
        if not used:
            return 0
        try:
            await store.keys.touch_last_used(used)
        except BaseException:
            for key_id, at in used.items():  # keep them for the next flush
                self._used.setdefault(key_id, at.timestamp())
            raise
        return len(used)

    async def refresh_loop(self, store: Store, interval: float) -> None:
        """Every ``interval`` seconds: write last-use times, then reload. Cancel to stop.

        A failing database is logged and retried at the next interval; the last known keys
        stay in force meanwhile (revocations made here still apply at once).
        """
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush_last_used(store)
                await self.load(store)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "could not refresh gateway keys from the database (%s); keeping the %d known keys "
                    "and retrying in %g s",
                    type(exc).__name__,
                    len(self._records),
                    interval,
                )
