"""``corral admin rotate-encryption-key``: re-encrypt every stored secret under a new key.

It works offline, on the store itself (not through a running gateway): it opens the database
with the new key first and the current key(s) after it, rewrites every ciphertext in one
transaction, and then keeps only the new key. With the key file in the data directory, the
file is updated (new and old keys while rewriting, the new key alone afterwards, each write
atomic); with ``CORRAL_ENCRYPTION_KEY`` the new key is printed with what to set.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.cli.client import CLIError, home_dir
from corral.cli.output import print_json

if TYPE_CHECKING:
    from corral.security.crypto import Crypto

ACTOR = "cli"  # the audit actor: someone with access to the data directory, not an API key


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("admin", help="maintenance of the local data directory (offline)")
    actions = parser.add_subparsers(dest="action", required=True)
    rotate = actions.add_parser(
        "rotate-encryption-key",
        help="re-encrypt every stored provider secret under a new encryption key",
        description="Stop every corral that uses this database first (or restart them right after): "
        "a gateway still running on the old key cannot read the rotated secrets.",
    )
    rotate.add_argument(
        "--config",
        default=os.environ.get("CORRAL_CONFIG"),
        help="the gateway's config file, for its database_url (default: $CORRAL_CONFIG)",
    )
    rotate.add_argument("--json", action="store_true", help="print the outcome as JSON")


def run(args: argparse.Namespace) -> int:
    from corral.config import load_config
    from corral.store import database_url  # the store (SQLAlchemy, Alembic) loads only when needed

    env = os.environ
    home = home_dir(env)
    if not home.is_dir():
        raise CLIError(
            f"There is no data directory at {home}. Set CORRAL_HOME to the gateway's data directory."
        )
    explicit = load_config(args.config, env=env).database_url if args.config else None
    return asyncio.run(rotate(env, home, database_url(env, home, explicit), as_json=args.json))


async def rotate(env: Mapping[str, str], home: Path, url: str, *, as_json: bool = False) -> int:
    from corral.security.crypto import ENV_VAR, KEY_FILE, Crypto, DecryptError, generate_key

    from_env = env.get(ENV_VAR, "").strip()
    path = home / KEY_FILE
    if from_env:
        old = _keys(from_env, ",")
    elif path.is_file():
        old = _keys(path.read_text(encoding="utf-8"), "\n")
    else:
        raise CLIError(
            f"No encryption key to rotate: {ENV_VAR} is not set and {path} does not exist, so nothing "
            "has been encrypted here yet."
        )
    Crypto(old, source=ENV_VAR if from_env else str(path))  # the current keys must be well-formed
    new = generate_key()
    crypto = Crypto([new, *old], source="rotation")
    if not from_env:
        write_key_file(path, [new, *old])  # a crash from here on leaves a file that reads both
    try:
        count = await _reencrypt(url, crypto)
    except BaseException as exc:
        if not from_env:
            write_key_file(path, old)  # nothing was committed: back to the current key alone
        if isinstance(exc, DecryptError):
            raise CLIError(f"{exc.message} Nothing was changed.") from None
        raise
    if as_json:
        if not from_env:
            write_key_file(path, [new])
        shown = None if not from_env else new  # with the key in the environment, shown this once
        key_file = None if from_env else str(path)
        print_json(
            {"reencrypted": count, "key_id": crypto.primary_id, "key_file": key_file, "new_key": shown}
        )
        return 0
    if not from_env:
        write_key_file(path, [new])
        print(f"Re-encrypted {count} stored secret(s) under a new key (id {crypto.primary_id}).")
        print(f"{path} now holds only the new key. Back it up, and restart every corral using this database.")
        return 0
    print(f"Re-encrypted {count} stored secret(s) under a new key (id {crypto.primary_id}).")
    print(f"Set {ENV_VAR} to the new key alone wherever corral runs, then restart it:\n")
    print(f"    {ENV_VAR}={new}\n")
    print("The old key no longer decrypts anything stored; remove it. This key is shown only once.")
    return 0


async def _reencrypt(url: str, crypto: Crypto) -> int:
    from corral.security.crypto import rotate_all
    from corral.store import open_store

    store = await open_store(url, crypto=crypto)
    try:
        return await rotate_all(store, crypto, actor=ACTOR)
    finally:
        await store.close()


def _keys(raw: str, separator: str) -> list[str]:
    keys = [part.strip() for part in raw.split(separator) if part.strip()]
    if not keys:
        raise CLIError("The current encryption key is empty; restore it from a backup before rotating.")
    return keys


def write_key_file(path: Path, keys: list[str]) -> None:
    """Replace the key file atomically: a private temporary file, fsynced, then renamed."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("".join(key + "\n" for key in keys))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
