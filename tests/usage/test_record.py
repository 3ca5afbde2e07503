"""UsageRecord: row and JSON forms, field checks, and the token estimate."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from corral.usage import UsageRecord, estimate_prompt_tokens, estimate_tokens
from corral.usage.record import FIELD_NAMES
from tests.usage.factory import T0, record


def test_row_and_json_round_trip() -> None:
    original = record(
        3, error_class="UpstreamTimeout", status=504, ttft_ms=None, fallback=True, tokens_estimated=True
    )
    assert UsageRecord.from_row(original.to_row()) == original
    assert UsageRecord.from_json(original.to_json()) == original
    assert original.to_json()["at"] == "2025-01-01T12:00:03+00:00"
    assert set(original.to_row()) == set(FIELD_NAMES)


def test_sqlite_booleans_and_naive_times_read_back() -> None:
    row = {**record(1).to_row(), "streamed": 1, "fallback": 0, "at": datetime(2025, 1, 1, 12, 0, 1)}
    back = UsageRecord.from_row(row)
    assert back.streamed is True and back.fallback is False and back.at.tzinfo is UTC


def test_to_row_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        record(1, at=datetime(2025, 1, 1)).to_row()


def test_to_row_makes_values_storable() -> None:
    row = record(
        1, user="u\x00" + "x" * 300, provider="p\ud800", status=10**12, prompt_tokens=-5, ttft_ms=float("nan")
    ).to_row()
    assert "\x00" not in row["user"] and len(row["user"]) == 256
    row["provider"].encode("utf-8")  # no lone surrogate left
    assert row["status"] == 2**31 - 1
    assert row["prompt_tokens"] == 0
    assert row["ttft_ms"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"request_id": None}, "request_id"),
        ({"attempts": "2"}, "attempts"),
        ({"streamed": "yes"}, "streamed"),
        ({"latency_ms": True}, "latency_ms"),
        ({"at": "yesterday"}, "'at' must be an ISO 8601"),
    ],
)
def test_from_row_names_the_bad_field(change: dict[str, object], message: str) -> None:
    row = {**record(1).to_json(), **change}
    with pytest.raises(ValueError, match=message):
        UsageRecord.from_row(row)


def test_from_row_needs_the_required_fields_only() -> None:
    minimal = UsageRecord.from_row({"request_id": "r", "at": T0.isoformat(), "requested_model": "m", "x": 1})
    assert minimal == UsageRecord(request_id="r", at=T0, requested_model="m")
    with pytest.raises(ValueError, match="'requested_model' is missing"):
        UsageRecord.from_row({"request_id": "r", "at": T0.isoformat()})


def test_failed_covers_error_status_and_error_class() -> None:
    assert not record(1).failed
    assert record(1, status=502).failed
    assert record(1, error_class="StreamCut").failed


def test_estimate_tokens_is_bytes_over_four_rounded_up() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("héllo wörld") == 4  # 13 UTF-8 bytes
    assert estimate_tokens("日本語") == 3  # 9 bytes: about one token per character
    text = "The quick brown fox jumps over the lazy dog. " * 20
    assert 0.8 * len(text) / 4 <= estimate_tokens(text) <= 1.2 * len(text) / 4


def test_estimate_prompt_tokens_counts_every_message() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "abcdefgh"},
        {"role": "user", "content": [{"type": "text", "text": "abcd"}, {"type": "image_url"}]},
        {"role": "assistant", "content": None},
    ]
    assert estimate_prompt_tokens(messages) == 3 * 4 + 2 + 1
