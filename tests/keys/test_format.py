"""Gateway key format: shape, checksum, parse rejecting malformed input cheaply."""

from __future__ import annotations

import hashlib
import re
import zlib

import pytest

from corral.keys import format as key_format

SCANNER = re.compile(r"\bgw_[0-9A-Za-z]{8}_[0-9A-Za-z]{28}\b")


def test_generated_keys_have_the_documented_shape() -> None:
    seen = set()
    for _ in range(1000):
        key_id, key = key_format.generate()
        assert len(key) == key_format.KEY_LEN == 40
        assert SCANNER.fullmatch(key) and re.fullmatch(key_format.KEY_PATTERN, key)
        assert key.startswith(f"gw_{key_id}_")
        assert key_format.parse(key) == (key_id, key[12:34])
        seen.add(key)
    assert len(seen) == 1000


def test_secret_has_at_least_128_bits() -> None:
    import math

    assert key_format.SECRET_LEN * math.log2(62) >= 128


def test_checksum_is_base62_crc32_of_the_rest() -> None:
    _, key = key_format.generate()
    body, check = key[:-6], key[-6:]
    number = 0
    for char in check:
        number = number * 62 + key_format.ALPHABET.index(char)
    assert number == zlib.crc32(body.encode())


def test_every_single_character_change_is_rejected() -> None:
    _, key = key_format.generate()
    for index in range(len(key)):
        for replacement in ("0", "z", "_", "-", "é"):
            if key[index] == replacement:
                continue
            mutated = key[:index] + replacement + key[index + 1 :]
            assert key_format.parse(mutated) is None, (index, replacement)


def test_explicit_id_and_bad_ids() -> None:
    assert key_format.generate("abcDEF12")[0] == "abcDEF12"
    with pytest.raises(ValueError, match="8 base62"):
        key_format.generate("short")
    with pytest.raises(ValueError):
        key_format.generate("abc-EF12")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "gw_",
        "sk-corral-abc",
        "gw_abcdefgh_" + "a" * 28,
        "GW_abcdefgh_" + "a" * 28,
        "x" * 100_000,
        None,
        42,
        b"gw_",
    ],
)
def test_malformed_inputs_are_none(text: object) -> None:
    assert key_format.parse(text) is None


def test_digest_is_sha256_of_the_full_key() -> None:
    _, key = key_format.generate()
    assert key_format.digest(key) == hashlib.sha256(key.encode()).digest()
    assert key_format.looks_like_key(key) and not key_format.looks_like_key("sk-corral-x")
