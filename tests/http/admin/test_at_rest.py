"""A provider secret given to the API is nowhere in clear: not in the SQLite file, not in the
PostgreSQL rows, not in any GET answer, not in the audit log."""

from __future__ import annotations

from pathlib import Path

from tests.http.admin.conftest import YAML_SECRET, Live
from tests.support.databases import fetch

API_KEY = "sk-upstream-PLAINTEXT-77a1c9e3b5d2f408"
HEADER_VALUE = "tenant-PLAINTEXT-0b9a8c7d6e"
ROTATED = "sk-upstream-PLAINTEXT-ROTATED-41d3e5"
TABLES = ("providers", "aliases", "gateway_keys", "audit_log")


async def raw_database(live: Live) -> bytes:
    if live.database_url.startswith("sqlite"):
        path = Path(live.database_url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))
    dumps = [repr(await fetch(live.database_url, f"SELECT t::text FROM {table} t")) for table in TABLES]
    return "\n".join(dumps).encode()


async def test_no_plaintext_secret_in_the_database_or_any_answer(live: Live) -> None:
    c = live.http
    body = {
        "name": "cloud",
        "type": "openai",
        "base_url": "https://api.example.com/v1",
        "api_key": API_KEY,
        "headers": {"X-Tenant-Secret": HEADER_VALUE},
    }
    answers = [c.post("/admin/providers", json=body)]
    assert answers[0].status_code == 201
    answers.append(c.patch("/admin/providers/cloud", json={"api_key": ROTATED, "priority": 1}))
    for path in ("/admin/providers", "/admin/providers/cloud", "/admin/audit", "/admin/models"):
        answers.append(c.get(path))
    assert all(a.status_code in (200, 201) for a in answers)

    raw = await raw_database(live)
    assert b"cloud" in raw and b"api.example.com" in raw  # the scan does see the stored data
    for secret in (API_KEY, HEADER_VALUE, ROTATED, YAML_SECRET):
        assert secret.encode() not in raw, secret
        for answer in answers:
            assert secret not in answer.text, (answer.request.url, secret)
    assert b"PLAINTEXT" not in raw
    audit = c.get("/admin/audit", params={"target": "cloud"}).json()["data"]
    assert [e["action"] for e in audit] == ["provider.update", "provider.create"]
    assert audit[0]["after"]["header_names"] == ["X-Tenant-Secret"]
