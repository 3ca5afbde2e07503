"""Provider credentials at rest: Fernet with a version prefix, failing closed, key file, rotation."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from corral.errors import ConfigError, CorralError
from corral.security.crypto import (
    ENV_VAR,
    KEY_FILE,
    Crypto,
    DecryptError,
    fingerprint,
    generate_key,
    load_crypto,
    preview,
    rotate_all,
)
from corral.store import open_store

WHAT = "the api_key of provider 'cloud'"
SECRET = "sk-upstream-9f8e7d6c5b4a3210"


def test_round_trip_with_version_prefix() -> None:
    crypto = Crypto([generate_key()])
    token = crypto.encrypt(SECRET)
    assert token.startswith("v1:") and SECRET not in token
    assert crypto.encrypt(SECRET) != token  # random IV
    assert crypto.decrypt(token, what=WHAT) == SECRET
    assert crypto.decrypt(crypto.encrypt("ünïcødé ✓"), what=WHAT) == "ünïcødé ✓"
    assert crypto.decrypt(crypto.encrypt(""), what=WHAT) == ""


def _flip(token: str, index: int) -> str:
    char = token[index]
    return token[:index] + ("A" if char != "A" else "B") + token[index + 1 :]


@pytest.mark.parametrize("index", [3, 10, 40, -30, -1])
def test_tampered_token_fails_closed_naming_the_owner(index: int) -> None:
    crypto = Crypto([generate_key()])
    token = _flip(crypto.encrypt(SECRET), index)
    with pytest.raises(DecryptError) as info:
        crypto.decrypt(token, what=WHAT)
    message = str(info.value)
    assert "provider 'cloud'" in message and ENV_VAR in message
    assert token not in message and token[3:20] not in message and SECRET not in message
    assert info.value.http_status == 500 and info.value.code == "decrypt_failed"
    assert isinstance(info.value, CorralError)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_wrong_key_fails_closed() -> None:
    token = Crypto([generate_key()]).encrypt(SECRET)
    with pytest.raises(DecryptError, match="provider 'cloud'"):
        Crypto([generate_key()]).decrypt(token, what=WHAT)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "v1:",
        "v2:" + Fernet.generate_key().decode(),
        "plaintext-secret",
        "v1:not-base64!!",
        "v1:ÿÿÿ",
        "v1:" + "A" * 500,
    ],
)
def test_malformed_or_unknown_version_fails_closed(token: str) -> None:
    crypto = Crypto([generate_key()])
    with pytest.raises(DecryptError) as info:
        crypto.decrypt(token, what=WHAT)
    if token:
        assert token not in str(info.value)


def test_unknown_version_of_a_valid_token_fails_closed() -> None:
    crypto = Crypto([generate_key()])
    token = "v2:" + crypto.encrypt(SECRET).removeprefix("v1:")
    with pytest.raises(DecryptError):
        crypto.decrypt(token, what=WHAT)
    with pytest.raises(DecryptError):
        crypto.decrypt(crypto.encrypt(SECRET).removeprefix("v1:"), what=WHAT)  # no prefix at all


def test_non_string_input_fails_closed() -> None:
    crypto = Crypto([generate_key()])
    with pytest.raises(DecryptError):
        crypto.decrypt(b"v1:abc", what=WHAT)  # type: ignore[arg-type]


def test_bad_keys_are_config_errors_that_do_not_echo_the_key() -> None:
    for bad in ["short", "x" * 44, generate_key()[:-2]]:
        with pytest.raises(ConfigError) as info:
            Crypto([generate_key(), bad], source="CORRAL_ENCRYPTION_KEY")
        assert bad not in str(info.value) and "#2" in str(info.value) and "generate_key" in str(info.value)
    with pytest.raises(ConfigError):
        Crypto([])


def test_repr_never_shows_a_key() -> None:
    key = generate_key()
    crypto = Crypto([key, generate_key()])
    assert key not in repr(crypto) and fingerprint(key) in repr(crypto) and "keys=2" in repr(crypto)
    assert crypto.primary_id == fingerprint(key) and len(crypto.primary_id) == 12


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        ("c19094f3b6e84cbdb1e2a0d1f5a9e7c2.Xo8ub", "c19094f...o8ub"),
        ("a" * 23 + "Z", "aaaaaaa...aaaZ"),
        ("abcdefghijklmnopqrstuvw", "...vw"),
        ("abcdefghijkl", "...kl"),
        ("abcdefghijk", "****"),
        ("", "****"),
    ],
)
def test_preview(secret: str, shown: str) -> None:
    assert preview(secret) == shown


def test_env_keys_first_is_primary_rest_decrypt(tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    old_token = Crypto([old]).encrypt(SECRET)
    crypto = load_crypto({ENV_VAR: f" {new} , {old} ,"}, tmp_path)
    assert crypto.key_ids == (fingerprint(new), fingerprint(old)) and crypto.source == ENV_VAR
    assert crypto.decrypt(old_token, what=WHAT) == SECRET
    assert Crypto([new]).decrypt(crypto.encrypt(SECRET), what=WHAT) == SECRET
    assert not (tmp_path / KEY_FILE).exists()  # the env var wins: no file is created


def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    first = load_crypto({}, tmp_path)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_crypto({ENV_VAR: "  "}, tmp_path)
    assert again.key_ids == first.key_ids
    assert again.decrypt(first.encrypt(SECRET), what=WHAT) == SECRET
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary file left


def test_key_file_with_several_keys(tmp_path: Path) -> None:
    new, old = generate_key(), generate_key()
    (tmp_path / KEY_FILE).write_text(f"{new}\n{old}\n")
    (tmp_path / KEY_FILE).chmod(0o600)
    assert load_crypto({}, tmp_path).key_ids == (fingerprint(new), fingerprint(old))


def test_empty_key_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_crypto({}, tmp_path)


def test_racing_threads_get_the_same_key(tmp_path: Path) -> None:
    results: list[tuple[str, ...]] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        results.append(load_crypto({}, tmp_path).key_ids)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1


PROCESS = textwrap.dedent(
    """
    import pathlib, sys, time
    from corral.security.crypto import load_crypto
    home = pathlib.Path(sys.argv[1])
    (home / ("ready-" + sys.argv[2])).touch()
    while not (home / "go").exists():
        time.sleep(0.001)
    print(load_crypto({}, home).primary_id)
    """
)


def test_racing_processes_get_the_same_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS, str(home), str(i)], stdout=subprocess.PIPE, text=True
        )
        for i in range(6)
    ]
    while len(list(home.glob("ready-*"))) < len(procs):
        threading.Event().wait(0.01)
    (home / "go").touch()
    outputs = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(outputs) == 1
    assert outputs == {load_crypto({}, home).primary_id}


async def _fill(url: str, crypto: Crypto) -> None:
    store = await open_store(url, crypto=crypto)
    try:
        for name in ("cloud", "vllm"):
            await store.providers.create(
                {"name": name, "type": "openai", "base_url": "http://h", "api_key": f"{name}-{SECRET}",
                 "headers": {"X-Secret": f"h-{name}"}},
                actor="master",
            )  # fmt: skip
        await store.providers.create({"name": "plain", "type": "ollama", "base_url": "http://h"}, actor="m")
    finally:
        await store.close()


async def _reveal_all(url: str, crypto: Crypto) -> dict[str, tuple[str | None, dict[str, str]]]:
    store = await open_store(url, crypto=crypto)
    try:
        return {
            p.name: (store.providers.api_key(p), store.providers.headers(p))
            for p in await store.providers.list()
        }
    finally:
        await store.close()


EXPECTED = {
    "cloud": (f"cloud-{SECRET}", {"X-Secret": "h-cloud"}),
    "vllm": (f"vllm-{SECRET}", {"X-Secret": "h-vllm"}),
    "plain": (None, {}),
}


async def test_rotation_re_encrypts_everything_under_the_new_key(database_url: str) -> None:
    old, new = generate_key(), generate_key()
    await _fill(database_url, Crypto([old]))
    store = await open_store(database_url, crypto=Crypto([new, old]))
    try:
        assert await rotate_all(store, Crypto([new, old]), actor="master") == 4
        entries = await store.audit.list(action="crypto.rotate")
        assert len(entries) == 1 and entries[0].after is not None
        assert entries[0].after["ciphertexts"] == 4 and entries[0].after["primary_key_id"] == fingerprint(new)
        assert old not in str(entries[0].view()) and new not in str(entries[0].view())
    finally:
        await store.close()
    assert await _reveal_all(database_url, Crypto([new])) == EXPECTED
    with pytest.raises(DecryptError, match=r"provider '(cloud|vllm)'"):
        await _reveal_all(database_url, Crypto([old]))


async def test_rotation_with_the_wrong_keys_changes_nothing(database_url: str) -> None:
    old, new = generate_key(), generate_key()
    await _fill(database_url, Crypto([old]))
    store = await open_store(database_url, crypto=Crypto([old]))
    try:
        with pytest.raises(DecryptError):
            await rotate_all(store, Crypto([new, generate_key()]), actor="master")  # old key missing
        assert await store.audit.list(action="crypto.rotate") == []
    finally:
        await store.close()
    assert await _reveal_all(database_url, Crypto([old])) == EXPECTED


async def test_rotation_of_an_empty_store(database_url: str) -> None:
    store = await open_store(database_url, crypto=Crypto([generate_key()]))
    try:
        assert await asyncio.wait_for(rotate_all(store, Crypto([generate_key()])), 30) == 0
    finally:
        await store.close()


def test_generated_keys_are_fernet_keys_and_key_checks_agree_with_fernet() -> None:
    key = generate_key()
    Fernet(key)  # accepted by the real thing
    assert Crypto([key]).decrypt(Crypto([key]).encrypt(SECRET), what=WHAT) == SECRET
    for candidate in [key, key[:-1], key + "A", Fernet.generate_key().decode(), "!" * 44, "A" * 43 + "="]:
        try:
            Fernet(candidate)
            fernet_ok = True
        except ValueError:
            fernet_ok = False
        try:
            Crypto([candidate])
            ours_ok = True
        except ConfigError:
            ours_ok = False
        assert ours_ok == fernet_ok, candidate


def test_cryptography_is_loaded_only_when_a_secret_is_used(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from corral.security.crypto import load_crypto
        crypto = load_crypto({}, Path(sys.argv[1]))
        before = "cryptography" in sys.modules
        crypto.decrypt(crypto.encrypt("s"), what="x")
        print(before, "cryptography" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "True"]
