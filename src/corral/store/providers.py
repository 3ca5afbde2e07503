"""Stored providers: CRUD with PATCH updates, credentials encrypted, every write audited.

A provider is its ``name`` (primary key), ``type`` and ``base_url``, its secrets (``api_key``
and the extra ``headers``, encrypted with ``Crypto``; only a preview of the key is kept in
clear) and ``settings``: every other ProviderConfig field as one JSON object, which callers
validate. Renaming is not supported: create the new name and delete the old one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.errors import InvalidRequest
from corral.security.crypto import Crypto, DecryptError, preview
from corral.store.access import Access, check_name, iso, json_object
from corral.store.audit import write_entry
from corral.store.errors import AlreadyExists, Missing
from corral.store.tables import providers

KIND = "provider"
COLUMNS = ("name", "type", "base_url")
SECRETS = ("api_key", "headers")
# Names of the redacted view and of the columns: never settings (a view sent back is refused).
RESERVED = frozenset(
    {"api_key_enc", "api_key_preview", "has_api_key", "headers_enc", "header_names", "settings"}
    | {"created_at", "updated_at"}
)


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    name: str
    type: str
    base_url: str
    api_key_enc: str | None = field(repr=False)
    api_key_preview: str | None
    headers_enc: str | None = field(repr=False)
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def view(self, header_names: list[str] | None = None) -> dict[str, Any]:
        """The redacted view for the admin API and the audit log: no secret, only its preview."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "base_url": self.base_url}
        out.update(self.settings)
        out["api_key_preview"] = self.api_key_preview
        out["has_api_key"] = self.api_key_enc is not None
        out["header_names"] = header_names if header_names is not None else []
        out["created_at"] = iso(self.created_at)
        out["updated_at"] = iso(self.updated_at)
        return out


def _record(row: Mapping[Any, Any]) -> ProviderRecord:
    return ProviderRecord(
        name=row["name"],
        type=row["type"],
        base_url=row["base_url"],
        api_key_enc=row["api_key_enc"],
        api_key_preview=row["api_key_preview"],
        headers_enc=row["headers_enc"],
        settings=dict(row["settings"] or {}),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _required_text(field_name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"'{field_name}' is required and must be a non-empty string.", param=field_name)
    return value


def _check_reserved(data: Mapping[str, Any]) -> None:
    reserved = sorted(RESERVED.intersection(data))
    if reserved:
        raise InvalidRequest(
            f"'{reserved[0]}' is not a provider field that can be set; send 'api_key' and 'headers' "
            "to set secrets, and leave out the read-only fields of the provider view.",
            param=reserved[0],
        )


def _headers(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidRequest("'headers' must be an object of header names to string values.", param="headers")
    return dict(value)


class ProviderRepo:
    def __init__(self, access: Access, crypto: Crypto) -> None:
        self._db = access
        self._crypto = crypto

    # reading -----------------------------------------------------------------------------
    async def list(self) -> list[ProviderRecord]:
        async with self._db.read() as conn:
            rows = (await conn.execute(select(providers).order_by(providers.c.name))).mappings().all()
        return [_record(row) for row in rows]

    async def get(self, name: str) -> ProviderRecord:
        async with self._db.read() as conn:
            return await self._get(conn, name)

    async def _get(self, conn: AsyncConnection, name: str, *, lock: bool = False) -> ProviderRecord:
        query = select(providers).where(providers.c.name == name)
        if lock:
            query = query.with_for_update()
        row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise Missing(KIND, name)
        return _record(row)

    def view(self, record: ProviderRecord) -> dict[str, Any]:
        """The redacted view, with the names (not the values) of the extra headers."""
        return record.view(sorted(self.headers(record)))

    def api_key(self, record: ProviderRecord) -> str | None:
        if record.api_key_enc is None:
            return None
        return self._crypto.decrypt(record.api_key_enc, what=f"the api_key of provider '{record.name}'")

    def headers(self, record: ProviderRecord) -> dict[str, str]:
        if record.headers_enc is None:
            return {}
        text = self._crypto.decrypt(record.headers_enc, what=f"the headers of provider '{record.name}'")
        loaded = json.loads(text)
        assert isinstance(loaded, dict)
        return {str(k): str(v) for k, v in loaded.items()}

    def reveal(self, record: ProviderRecord) -> dict[str, Any]:
        """Every ProviderConfig field, secrets decrypted: for building the live provider only."""
        out: dict[str, Any] = dict(record.settings)
        out.update(name=record.name, type=record.type, base_url=record.base_url)
        out["api_key"] = self.api_key(record)
        out["headers"] = self.headers(record)
        return out

    async def check_decryptable(self) -> int:
        """Decrypt every stored secret once (call at start): a wrong key fails here, loudly."""
        count = 0
        for record in await self.list():
            count += self.api_key(record) is not None
            count += bool(self.headers(record))
        return count

    # writing -----------------------------------------------------------------------------
    def _secret_values(self, data: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "api_key" in data:
            key = data["api_key"]
            if key is not None and (not isinstance(key, str) or not key):
                raise InvalidRequest(
                    "'api_key' must be a non-empty string, or null to remove it.", param="api_key"
                )
            values["api_key_enc"] = None if key is None else self._crypto.encrypt(key)
            values["api_key_preview"] = None if key is None else preview(key)
        if "headers" in data:
            headers = {} if data["headers"] is None else _headers(data["headers"])
            values["headers_enc"] = self._crypto.encrypt(json.dumps(headers)) if headers else None
        return values

    async def create(self, data: Mapping[str, Any], *, actor: str) -> ProviderRecord:
        """``data`` holds name, type, base_url, optional api_key and headers, and any settings."""
        name = check_name(KIND, data.get("name"), 128)
        _check_reserved(data)
        values: dict[str, Any] = {
            "name": name,
            "type": _required_text("type", data.get("type")),
            "base_url": _required_text("base_url", data.get("base_url")),
            "api_key_enc": None,
            "api_key_preview": None,
            "headers_enc": None,
        }
        values.update(self._secret_values(data))
        settings = {k: v for k, v in data.items() if k not in COLUMNS and k not in SECRETS}
        values["settings"] = json_object("settings", {k: v for k, v in settings.items() if v is not None})
        now = self._db.now()
        values.update(created_at=now, updated_at=now)
        try:
            async with self._db.write() as conn:
                await conn.execute(insert(providers).values(**values))
                record = _record(values)
                await write_entry(
                    conn,
                    at=now,
                    actor=actor,
                    action="provider.create",
                    target=name,
                    before=None,
                    after=self._audit_view(record, data.get("headers")),
                )
        except IntegrityError:
            raise AlreadyExists(KIND, name) from None
        return record

    async def update(self, name: str, changes: Mapping[str, Any], *, actor: str) -> ProviderRecord:
        """PATCH: a field absent from ``changes`` is kept, ``None`` clears it (back to default)."""
        if "name" in changes and changes["name"] != name:
            raise InvalidRequest(
                "A provider cannot be renamed. Create it under the new name, then delete the old one.",
                param="name",
            )
        _check_reserved(changes)
        for required in ("type", "base_url"):
            if required in changes:
                _required_text(required, changes[required])
        async with self._db.write() as conn:
            before = await self._get(conn, name, lock=True)
            values: dict[str, Any] = {k: changes[k] for k in ("type", "base_url") if k in changes}
            values.update(self._secret_values(changes))
            settings = dict(before.settings)
            for key, value in changes.items():
                if key in COLUMNS or key in SECRETS:
                    continue
                if value is None:
                    settings.pop(key, None)
                else:
                    settings[key] = value
            values["settings"] = json_object("settings", settings)
            values["updated_at"] = self._db.now()
            await conn.execute(update(providers).where(providers.c.name == name).values(**values))
            after = await self._get(conn, name)
            await write_entry(
                conn,
                at=values["updated_at"],
                actor=actor,
                action="provider.update",
                target=name,
                before=self._audit_view(before),
                after=self._audit_view(after, changes.get("headers")),
            )
        return after

    async def delete(self, name: str, *, actor: str) -> None:
        async with self._db.write() as conn:
            before = await self._get(conn, name, lock=True)
            await conn.execute(delete(providers).where(providers.c.name == name))
            await write_entry(
                conn,
                at=self._db.now(),
                actor=actor,
                action="provider.delete",
                target=name,
                before=self._audit_view(before),
                after=None,
            )

    async def reencrypt(self, crypto: Crypto, *, actor: str) -> int:
        """Rewrite every ciphertext under ``crypto``'s primary key in one transaction (rotation)."""
        count = 0
        async with self._db.write() as conn:
            rows = (await conn.execute(select(providers).with_for_update())).mappings().all()
            for row in rows:
                values: dict[str, str] = {}
                for column, label in (("api_key_enc", "api_key"), ("headers_enc", "headers")):
                    if row[column] is not None:
                        what = f"the {label} of provider '{row['name']}'"
                        values[column] = crypto.rotate(row[column], what=what)
                if values:
                    count += len(values)
                    await conn.execute(
                        update(providers).where(providers.c.name == row["name"]).values(**values)
                    )
            await write_entry(
                conn,
                at=self._db.now(),
                actor=actor,
                action="crypto.rotate",
                target="providers",
                before=None,
                after={
                    "ciphertexts": count,
                    "primary_key_id": crypto.primary_id,
                    "keys": len(crypto.key_ids),
                },
            )
        return count

    def _audit_view(self, record: ProviderRecord, plain_headers: object = None) -> dict[str, Any]:
        """The redacted view; header names come from the plaintext given, else by decrypting."""
        if isinstance(plain_headers, Mapping):
            names = sorted(str(k) for k in plain_headers)
        else:
            try:
                names = sorted(self.headers(record))
            except DecryptError:  # an unreadable old value must not block replacing it
                names = ["<undecryptable>"]
        return record.view(names)
