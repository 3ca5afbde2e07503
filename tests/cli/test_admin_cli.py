"""``corral providers|keys|models`` against a live gateway, and ``corral admin
rotate-encryption-key`` on a real store (both databases), each run as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from corral.security.crypto import Crypto, DecryptError, generate_key
from corral.store import open_store
from tests.emulators.ollama import OllamaEmulator
from tests.support.databases import *  # noqa: F403
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread, free_port

UPSTREAM_KEY = "sk-cloud-PLAINTEXT-9d8c7b6a5f4e3d2c1b0a"


def corral(
    *args: str, env: Mapping[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    clean["CORRAL_HOME"] = "/nonexistent-corral-home"
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "corral", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
        input=stdin,
    )


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayServer, str]]:
    upstream = OllamaEmulator(api_key=UPSTREAM_KEY)
    with ServerThread(upstream.app) as up:
        home: Path = tmp_path_factory.mktemp("home")
        with GatewayServer(make_config({}, demo=True), home=home) as server:
            yield server, up.url


def test_providers_add_list_test_rm(gw: tuple[GatewayServer, str]) -> None:
    server, upstream = gw
    opts = ("--url", server.admin_url, "--key", server.key)
    added = corral(
        "providers", "add", "cloud", "--type", "ollama", "--base-url", upstream, "--api-key-env", "CLOUD_KEY",
        "--priority", "2", *opts, env={"CLOUD_KEY": UPSTREAM_KEY},
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "Added provider 'cloud'" in added.stdout and UPSTREAM_KEY not in added.stdout
    dead = f"http://127.0.0.1:{free_port()}/v1"
    from_stdin = corral(
        "providers", "add", "cloud2", "--type", "openai", "--base-url", dead, "--api-key-stdin",
        "--header-env", "X-Org=ORG", *opts, stdin=UPSTREAM_KEY + "\n", env={"ORG": "org-1"},
    )  # fmt: skip
    assert from_stdin.returncode == 0, from_stdin.stderr

    table = corral("providers", "list", *opts)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "TYPE", "BASE_URL", "MANAGED_BY"]
    cloud = next(line for line in lines if line.startswith("cloud "))
    assert "api" in cloud and "sk-clou...1b0a" in cloud
    assert any(line.startswith("demo ") and "config" in line for line in lines)
    rows = {p["name"]: p for p in json.loads(corral("providers", "list", "--json", *opts).stdout)}
    assert rows["cloud"]["priority"] == 2 and rows["cloud2"]["header_names"] == ["X-Org"]
    assert UPSTREAM_KEY not in table.stdout + json.dumps(rows)

    ok = corral("providers", "test", "cloud", *opts)  # the emulator needs the stored key
    assert ok.returncode == 0 and ok.stdout.startswith("OK: cloud") and "3 models" in ok.stdout
    failed = corral("providers", "test", "cloud2", "--json", *opts)
    assert failed.returncode == 1 and json.loads(failed.stdout)["success"] is False
    chat = httpx.post(
        server.v1 + "/chat/completions",
        json={"model": "cloud/llama3.2", "messages": [{"role": "user", "content": "hi"}]},
        headers=server.headers(),
    )
    assert chat.status_code == 200, chat.text

    for name in ("cloud", "cloud2"):
        removed = corral("providers", "rm", name, *opts)
        assert removed.returncode == 0 and f"Deleted provider '{name}'" in removed.stdout
    again = corral("providers", "rm", "cloud", *opts)
    assert again.returncode == 1 and "There is no provider named 'cloud'" in again.stderr
    readonly = corral("providers", "rm", "demo", *opts)
    assert readonly.returncode == 1 and "HTTP 409" in readonly.stderr and "config file" in readonly.stderr


def test_secrets_are_never_command_line_arguments(gw: tuple[GatewayServer, str]) -> None:
    server, upstream = gw
    opts = ("--url", server.admin_url, "--key", server.key)
    base = ("providers", "add", "x", "--type", "ollama", "--base-url", upstream)
    assert corral(*base, "--api-key", UPSTREAM_KEY, *opts).returncode == 2  # no such option
    unset = corral(*base, "--api-key-env", "NOT_SET_ANYWHERE", *opts)
    assert unset.returncode == 1 and "NOT_SET_ANYWHERE is not set" in unset.stderr
    empty = corral(*base, "--api-key-stdin", *opts, stdin="")
    assert empty.returncode == 1 and "empty API key" in empty.stderr


def test_keys_create_list_revoke_and_models(gw: tuple[GatewayServer, str]) -> None:
    server, _ = gw
    opts = ("--url", server.admin_url, "--key", server.key)
    created = corral("keys", "create", "--name", "ci", "--models", "demo/echo", "--expires", "30d", *opts)
    assert created.returncode == 0, created.stderr
    key = next(word for word in created.stdout.split() if word.startswith("gw_"))
    assert "shown only once" in created.stdout
    chat = {"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.post(server.v1 + "/chat/completions", json=chat, headers=headers).status_code == 200

    as_json = corral("keys", "create", "--name", "ops", "--scope", "admin", "--json", *opts)
    issued = json.loads(as_json.stdout)
    assert issued["scope"] == "admin" and issued["key"].startswith("gw_") and "only once" in as_json.stderr

    listed = corral("keys", "list", *opts)
    assert listed.returncode == 0 and listed.stdout.splitlines()[0].split()[:4] == [
        "ID",
        "NAME",
        "OWNER",
        "SCOPE",
    ]
    assert key not in listed.stdout and key[3:11] in listed.stdout
    rows = {k["name"]: k for k in json.loads(corral("keys", "list", "--json", *opts).stdout)}
    assert rows["ci"]["models"] == ["demo/echo"] and rows["ci"]["expires_at"] is not None

    revoked = corral("keys", "revoke", key[3:11], *opts)
    assert revoked.returncode == 0 and "Revoked" in revoked.stdout
    assert httpx.post(server.v1 + "/chat/completions", json=chat, headers=headers).status_code == 401
    bad = corral("keys", "create", "--name", "x", "--expires", "someday", *opts)
    assert bad.returncode == 1 and "--expires" in bad.stderr
    period = corral(
        "keys", "create", "--name", "x", "--max-budget", "5", "--budget-period", "fortnight", *opts
    )
    assert period.returncode == 1 and "HTTP 400" in period.stderr
    assert "budget_period 'fortnight'" in period.stderr and "1d, 7d, 30d, 1mo" in period.stderr
    assert "x" not in {k["name"] for k in json.loads(corral("keys", "list", "--json", *opts).stdout)}

    models = corral("models", *opts)
    assert models.returncode == 0 and models.stdout.splitlines()[0].split()[:3] == ["ID", "TYPE", "PROVIDER"]
    assert any(line.startswith("demo/echo") and "discovered" in line for line in models.stdout.splitlines())
    assert {m["id"] for m in json.loads(corral("models", "--json", *opts).stdout)} >= {"demo/echo"}
    wrong = corral("models", "--url", server.admin_url, "--key", "nope")
    assert wrong.returncode == 1 and "refused the key" in wrong.stderr


# rotation --------------------------------------------------------------------------------------


def chat_through_cloud(config_home: Path, env: dict[str, str]) -> tuple[int, list[str]]:
    """Start a gateway on the store, chat through provider 'cloud'; also the rotation audit."""
    with GatewayServer(make_config({}), home=config_home, env=env) as server:
        body = {"model": "cloud/llama3.2", "messages": [{"role": "user", "content": "hi"}]}
        status = httpx.post(server.v1 + "/chat/completions", json=body, headers=server.headers()).status_code
        audit = httpx.get(
            server.admin_url + "/admin/audit", params={"action": "crypto.rotate"}, headers=server.headers()
        ).json()["data"]
    return status, [entry["actor"] for entry in audit]


async def decrypt_all(url: str, keys: list[str]) -> int:
    store = await open_store(url, crypto=Crypto(keys))
    try:
        return await store.providers.check_decryptable()
    finally:
        await store.close()


async def stored_ciphertext(url: str) -> str:
    store = await open_store(url, crypto=Crypto([generate_key()]))
    try:
        token = (await store.providers.get("cloud")).api_key_enc
        assert token is not None
        return token
    finally:
        await store.close()


def test_rotate_encryption_key_re_encrypts_every_row(database_url: str, tmp_path: Path) -> None:
    env = {"CORRAL_DATABASE_URL": database_url}
    with ServerThread(OllamaEmulator(api_key=UPSTREAM_KEY).app) as up:
        with GatewayServer(make_config({}), home=tmp_path, env=env) as server:
            body = {"name": "cloud", "type": "ollama", "base_url": up.url, "api_key": UPSTREAM_KEY}
            created = httpx.post(server.admin_url + "/admin/providers", json=body, headers=server.headers())
            assert created.status_code == 201
        assert chat_through_cloud(tmp_path, env) == (200, [])
        old = (tmp_path / "encryption_key").read_text().split()
        old_token = asyncio.run(stored_ciphertext(database_url))

        out = corral("admin", "rotate-encryption-key", env={"CORRAL_HOME": str(tmp_path), **env})
        assert out.returncode == 0, out.stderr
        assert "Re-encrypted 1 stored secret" in out.stdout
        new = (tmp_path / "encryption_key").read_text().split()
        assert len(new) == 1 and new != old and new[0] not in out.stdout
        assert (tmp_path / "encryption_key").stat().st_mode & 0o777 == 0o600
        # the restarted gateway serves on the new key (the upstream checks the api_key it gets)
        assert chat_through_cloud(tmp_path, env) == (200, ["cli"])

    assert asyncio.run(stored_ciphertext(database_url)) != old_token
    assert asyncio.run(decrypt_all(database_url, new)) == 1
    with pytest.raises(DecryptError):  # an old ciphertext fails closed under the new key alone
        Crypto(new).decrypt(old_token, what="the old api_key of provider 'cloud'")
    with pytest.raises(DecryptError) as info:  # and the old key alone no longer reads the store
        asyncio.run(decrypt_all(database_url, old))
    assert "provider 'cloud'" in info.value.message


def test_rotation_with_the_key_in_the_environment(sqlite_url: str, tmp_path: Path) -> None:
    old = generate_key()
    asyncio.run(_store_provider(sqlite_url, old))
    env = {"CORRAL_HOME": str(tmp_path), "CORRAL_DATABASE_URL": sqlite_url, "CORRAL_ENCRYPTION_KEY": old}
    out = corral("admin", "rotate-encryption-key", env=env)
    assert out.returncode == 0, out.stderr
    line = next(line.strip() for line in out.stdout.splitlines() if "CORRAL_ENCRYPTION_KEY=" in line)
    new = line.partition("=")[2]
    assert new != old and not (tmp_path / "encryption_key").exists()
    assert asyncio.run(decrypt_all(sqlite_url, [new])) == 1
    with pytest.raises(DecryptError):
        asyncio.run(decrypt_all(sqlite_url, [old]))


def test_rotation_with_the_wrong_current_key_changes_nothing(sqlite_url: str, tmp_path: Path) -> None:
    right = generate_key()
    asyncio.run(_store_provider(sqlite_url, right))
    wrong = generate_key()
    (tmp_path / "encryption_key").write_text(wrong + "\n")
    out = corral(
        "admin",
        "rotate-encryption-key",
        env={"CORRAL_HOME": str(tmp_path), "CORRAL_DATABASE_URL": sqlite_url},
    )
    assert out.returncode == 1 and "provider 'cloud'" in out.stderr and "Nothing was changed" in out.stderr
    assert (tmp_path / "encryption_key").read_text().split() == [wrong]
    assert asyncio.run(decrypt_all(sqlite_url, [right])) == 1
    missing = corral("admin", "rotate-encryption-key", env={"CORRAL_HOME": str(tmp_path / "nope")})
    assert missing.returncode == 1 and "no data directory" in missing.stderr


async def _store_provider(url: str, key: str) -> None:
    store = await open_store(url, crypto=Crypto([key]))
    try:
        data = {
            "name": "cloud",
            "type": "openai",
            "base_url": "https://api.example.com/v1",
            "api_key": UPSTREAM_KEY,
        }
        await store.providers.create(data, actor="master")
    finally:
        await store.close()
