"""Provider credentials encrypted at rest: Fernet under a dedicated encryption key.

The key comes from ``CORRAL_ENCRYPTION_KEY`` (several comma-separated keys: the first encrypts,
all decrypt, which is how a key is rotated), else from the ``encryption_key`` file in the data
directory (one key a line, same order), created on first start with mode 0600.

The key is deliberately **never derived from the master key**. The master key is an auth
secret: it is typed into clients, shown once, and rotated when it leaks. If it also keyed the
data at rest (LiteLLM fell back from its salt key to the master key), rotating it would make
every stored credential unreadable, and leaking it would expose them too.

Ciphertexts are ``v1:`` + a Fernet token (AES-128-CBC + HMAC-SHA256), so a later format can be
told apart. Decryption fails closed: any bad token, wrong key or unknown version raises
``DecryptError``, whose message names the owner of the secret and never contains the input.

Keys are checked when ``Crypto`` is built, but the ``cryptography`` package (about 7 MB of
resident memory) is imported only when a secret is first encrypted or decrypted: a gateway whose
providers all come from YAML never loads it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from corral.errors import ConfigError, CorralError

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

    from corral.store.db import Store

log = logging.getLogger("corral.security")

ENV_VAR = "CORRAL_ENCRYPTION_KEY"
KEY_FILE = "encryption_key"
VERSION = "v1:"
_GENERATE_HINT = (
    "Generate one with `python -c 'from corral.security.crypto import generate_key; print(generate_key())'`."
)


class DecryptError(CorralError):
    """A stored secret could not be decrypted with the configured key(s)."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"

    def __init__(self, what: str) -> None:
        super().__init__(
            f"Cannot decrypt {what}: it was encrypted with a different key, or the stored value is "
            f"damaged. Set {ENV_VAR} (or the {KEY_FILE} file in the data directory) to the key it was "
            "stored with; after a rotation keep the old key listed after the new one "
            "(comma-separated) until `rotate_all` has run. If the key is lost, set the secret again.",
            code="decrypt_failed",
        )
        self.what = what


def generate_key() -> str:
    """A new random Fernet key (32 bytes, urlsafe base64), as ``Fernet.generate_key`` makes them."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def _is_fernet_key(key: str) -> bool:
    """What ``Fernet(key)`` accepts: urlsafe base64 of exactly 32 bytes."""
    try:
        return len(base64.urlsafe_b64decode(key.encode("ascii"))) == 32
    except (binascii.Error, ValueError):
        return False


def fingerprint(key: str) -> str:
    """A short, non-secret name for a key, for logs and audit rows."""
    return hashlib.sha256(b"corral-encryption-key:" + key.encode()).hexdigest()[:12]


def preview(secret: str) -> str:
    """A display form that identifies a secret without revealing it: ``c19094f...o8ub``.

    Long secrets (24+ characters) show the first 7 and last 4; medium ones (12+) only the last
    2; short ones nothing at all.
    """
    if len(secret) >= 24:
        return f"{secret[:7]}...{secret[-4:]}"
    if len(secret) >= 12:
        return f"...{secret[-2:]}"
    return "****"


class Crypto:
    """Encrypts with the first key, decrypts with any of them."""

    def __init__(self, keys: Sequence[str], *, source: str = "given") -> None:
        if not keys:
            raise ConfigError(f"No encryption key given. {_GENERATE_HINT}")
        for position, key in enumerate(keys, start=1):
            if not isinstance(key, str) or not _is_fernet_key(key.strip()):
                raise ConfigError(
                    f"Encryption key #{position} from {source} is not a Fernet key (32 bytes, urlsafe "
                    f"base64, 44 characters). {_GENERATE_HINT}"
                )
        self._keys = tuple(k.strip() for k in keys)
        self._multi: MultiFernet | None = None
        self.key_ids: tuple[str, ...] = tuple(fingerprint(k) for k in self._keys)
        self.source = source

    def __repr__(self) -> str:
        return f"Crypto(primary={self.key_ids[0]!r}, keys={len(self.key_ids)}, source={self.source!r})"

    @property
    def primary_id(self) -> str:
        return self.key_ids[0]

    @property
    def _fernet(self) -> MultiFernet:
        if self._multi is None:
            from cryptography.fernet import Fernet, MultiFernet

            self._multi = MultiFernet([Fernet(key) for key in self._keys])
        return self._multi

    def encrypt(self, plaintext: str) -> str:
        return VERSION + self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str, *, what: str) -> str:
        """The plaintext of ``token``; ``what`` names its owner for the error message."""
        body = self._body(token, what)
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(body).decode("utf-8")
        except (InvalidToken, ValueError, TypeError):
            raise DecryptError(what) from None

    def rotate(self, token: str, *, what: str) -> str:
        """``token`` re-encrypted under the primary key (its timestamp is kept)."""
        body = self._body(token, what)
        from cryptography.fernet import InvalidToken

        try:
            return VERSION + self._fernet.rotate(body).decode("ascii")
        except (InvalidToken, ValueError, TypeError):
            raise DecryptError(what) from None

    @staticmethod
    def _body(token: object, what: str) -> bytes:
        if not isinstance(token, str) or not token.startswith(VERSION):
            raise DecryptError(what)
        try:
            return token[len(VERSION) :].encode("ascii")
        except UnicodeEncodeError:
            raise DecryptError(what) from None


def load_crypto(env: Mapping[str, str], home: Path) -> Crypto:
    """The gateway's Crypto: ``CORRAL_ENCRYPTION_KEY``, else the key file (created if missing)."""
    raw = env.get(ENV_VAR, "").strip()
    if raw:
        return Crypto(_split(raw, ","), source=ENV_VAR)
    path = home / KEY_FILE
    keys = _read_key_file(path)
    if keys is None:
        keys = _create_key_file(path)
    return Crypto(keys, source=f"the {KEY_FILE} file in the data directory")


def _split(raw: str, separator: str) -> list[str]:
    return [part.strip() for part in raw.split(separator) if part.strip()]


def _read_key_file(path: Path) -> list[str] | None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users; run: chmod 600 %s", path, path)
    keys = _split(path.read_text(encoding="utf-8"), "\n")
    if not keys:
        raise ConfigError(
            f"The encryption key file {path} is empty. Restore it from a backup, or, if no provider "
            f"credentials are stored yet, delete it so a new key is created. {_GENERATE_HINT}"
        )
    return keys


def _create_key_file(path: Path) -> list[str]:
    """Write a new key atomically: a private temporary file, then ``link`` it into place.

    ``link`` fails if the name exists, so when two gateways start at once exactly one key wins
    and the other reads it back, never a half-written file.
    """
    key = generate_key()
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            existing = _read_key_file(path)
            assert existing is not None
            return existing
    finally:
        temp.unlink(missing_ok=True)
    log.info("created a new encryption key in %s (back it up: stored credentials need it)", path)
    return [key]


async def rotate_all(store: Store, crypto: Crypto, *, actor: str = "master") -> int:
    """Re-encrypt every stored secret under ``crypto``'s primary key, in one transaction.

    ``crypto`` must hold the new key first and the old key(s) after it. Returns the number of
    ciphertexts rewritten; on any failure nothing is changed. Afterwards the old keys can go.
    """
    return await store.providers.reencrypt(crypto, actor=actor)
