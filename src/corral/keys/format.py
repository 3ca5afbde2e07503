"""The gateway key format: ``gw_<id>_<secret><checksum>``, 40 characters.

    gw_        fixed prefix, so scanners and humans recognise a corral key
    <id>       8 base62 characters: the public key id, stored in clear, used for lookup
    _          separator (not in base62, and double-click still selects the whole key)
    <secret>   22 base62 characters from ``secrets``: 130 bits
    <checksum> 6 base62 characters: CRC32 of everything before it, zero-padded

Scanner regex (also ``KEY_PATTERN``)::

    \\bgw_[0-9A-Za-z]{8}_[0-9A-Za-z]{28}\\b

and the last 6 characters must equal the base62 CRC32 of the rest, which lets a scanner
reject look-alikes offline. ``parse`` checks length, charset and checksum before anything
looks the key up. The store keeps ``digest``: SHA-256 of the full key. A fast hash is right
here because the secret is 130 random bits, not a password; a KDF (bcrypt, argon2) would
only add latency to every request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import zlib

PREFIX = "gw_"
ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
ID_LEN = 8
SECRET_LEN = 22
CHECKSUM_LEN = 6
KEY_LEN = len(PREFIX) + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN
MAX_INPUT = 128  # anything longer is rejected without looking at it
KEY_PATTERN = rf"gw_[0-9A-Za-z]{{{ID_LEN}}}_[0-9A-Za-z]{{{SECRET_LEN + CHECKSUM_LEN}}}"
_KEY = re.compile(rf"\A{KEY_PATTERN}\Z")


def _base62(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        out.append(ALPHABET[rest])
    return "".join(reversed(out))


def _random(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def checksum(body: str) -> str:
    """The 6-character base62 CRC32 of ``body`` (``gw_<id>_<secret>``)."""
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LEN)


def new_id() -> str:
    return _random(ID_LEN)


def generate(key_id: str | None = None) -> tuple[str, str]:
    """A new ``(key_id, full_key)``. Show the full key once; store only ``digest(full_key)``."""
    key_id = key_id or new_id()
    if len(key_id) != ID_LEN or any(ch not in ALPHABET for ch in key_id):
        raise ValueError(f"a key id is {ID_LEN} base62 characters")
    body = f"{PREFIX}{key_id}_{_random(SECRET_LEN)}"
    return key_id, body + checksum(body)


def parse(text: object) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed key, else ``None``. Cheap, and never raises."""
    if not isinstance(text, str) or len(text) > MAX_INPUT or len(text) != KEY_LEN:
        return None
    if not text.isascii() or _KEY.match(text) is None:
        return None
    body, check = text[:-CHECKSUM_LEN], text[-CHECKSUM_LEN:]
    if checksum(body) != check:
        return None
    return text[len(PREFIX) : len(PREFIX) + ID_LEN], text[len(PREFIX) + ID_LEN + 1 : -CHECKSUM_LEN]


def looks_like_key(text: str) -> bool:
    """True if ``text`` is shaped like a gateway key (for routing between key kinds)."""
    return text.startswith(PREFIX)


def digest(full_key: str) -> bytes:
    """SHA-256 of the full key: what the store keeps and ``KeyCache.verify`` compares."""
    return hashlib.sha256(full_key.encode("utf-8", "surrogatepass")).digest()
