"""No plaintext secret anywhere in the database: raw SQLite bytes and raw PostgreSQL rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.security.crypto import Crypto
from corral.store import open_store
from tests.support.databases import fetch

API_KEY = "sk-upstream-PLAINTEXT-4f9c2a7e1b3d5f60"
HEADER_VALUE = "hdr-PLAINTEXT-8a6b4c2d0e"
NEW_KEY = "sk-upstream-ROTATED-PLAINTEXT-0a1b2c3d"


async def _store_secrets(url: str, crypto: Crypto) -> str:
    store = await open_store(url, crypto=crypto)
    try:
        await store.providers.create(
            {
                "name": "cloud",
                "type": "openai",
                "base_url": "https://api.example.com/v1",
                "api_key": API_KEY,
                "headers": {"X-Tenant-Secret": HEADER_VALUE},
            },
            actor="master",
        )
        await store.providers.update("cloud", {"api_key": NEW_KEY}, actor="master")
        issued = await store.keys.create(actor="master", name="ci")
        return issued.key
    finally:
        await store.close()


def _needles(gateway_key: str) -> list[str]:
    return [API_KEY, HEADER_VALUE, NEW_KEY, gateway_key, gateway_key[12:-6], "PLAINTEXT"]


async def test_sqlite_file_holds_no_plaintext(sqlite_url: str, crypto: Crypto) -> None:
    gateway_key = await _store_secrets(sqlite_url, crypto)
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
    raw = b"".join(p.read_bytes() for p in files)
    assert b"cloud" in raw and b"api.example.com" in raw  # the scan does see the data
    for needle in _needles(gateway_key):
        assert needle.encode() not in raw, needle
        assert needle.encode("utf-16-le") not in raw, needle


@pytest.mark.postgres
async def test_postgres_rows_hold_no_plaintext(postgres_url: str, crypto: Crypto) -> None:
    gateway_key = await _store_secrets(postgres_url, crypto)
    dumps = []
    for table in ("providers", "aliases", "gateway_keys", "audit_log", "alembic_version"):
        rows = await fetch(postgres_url, f"SELECT * FROM {table}")
        dumps.append(repr([dict(row) for row in rows]))
        dumps.append(repr(await fetch(postgres_url, f"SELECT t::text FROM {table} t")))
    raw = "\n".join(dumps)
    assert "cloud" in raw and "api.example.com" in raw
    for needle in _needles(gateway_key):
        assert needle not in raw, needle
