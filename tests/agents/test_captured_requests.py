"""The captured agent requests (``tests/fixtures/agents``): clean of secrets, and accepted as sent.

Each request a real agent made is replayed, byte for byte the body it sent, to the emulator of
the API it was made for: the emulators must take real agent traffic, not only what the SDKs
send. (Phase 2 replays the same files through corral.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulators.anthropic import AnthropicEmulator
from tests.emulators.openai import OpenAIEmulator, OpenAIModel
from tests.support.servers import ServerThread

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "agents"
CAPTURES = sorted(FIXTURES.glob("*.json"))
KEY = "replay-key"
# headers that belong to the original connection, not to the request
HOP = {"host", "content-length", "connection", "accept-encoding", "authorization"}


def load(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def test_there_are_captures_of_both_agents() -> None:
    assert {load(p)["agent"] for p in CAPTURES} == {"claude-code", "codex"}


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_captures_hold_no_secret_path_or_machine_id(path: Path) -> None:
    text = path.read_text()
    assert "corral-capture-key" not in text and "/tmp/corral-" not in text
    record = load(path)
    assert record["returncode"] == 0 and record["dns_lookups"] == [] and record["non_loopback_connects"] == []
    for exchange in record["exchanges"]:
        assert exchange["headers"]["authorization"] == "Bearer <gateway-key>"
        assert exchange["status"] == 200


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_captured_requests_are_accepted_as_sent(path: Path) -> None:
    record = load(path)
    emu: AnthropicEmulator | OpenAIEmulator
    if record["agent"] == "claude-code":
        emu = AnthropicEmulator([record["model"]], api_key=KEY)
    else:
        emu = OpenAIEmulator([OpenAIModel(record["model"], reasoning=True)], api_key=KEY, responses=True)
    with ServerThread(emu.app) as srv, httpx.Client(base_url=srv.url, timeout=20) as client:
        for exchange in record["exchanges"]:
            headers = {k: v for k, v in exchange["headers"].items() if k not in HOP}
            headers["authorization"] = f"Bearer {KEY}"
            resp = client.post(
                exchange["path"], params=exchange["query"], json=exchange["body"], headers=headers
            )
            assert resp.status_code == 200, resp.text
            assert resp.headers["content-type"].startswith("text/event-stream")
            last = [line for line in resp.text.splitlines() if line.startswith("event: ")][-1]
            assert last in ("event: message_stop", "event: response.completed")
