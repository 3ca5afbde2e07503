"""Claude Code and Codex, the real binaries, complete the read-file task against the emulators.

This proves the emulators accept what the agents really send (the same requests corral's
``/v1/messages`` and ``/v1/responses`` must take) and that the agents stay on loopback with the
offline settings of ``tests/agents/agents.py``. Skipped, with the reason printed, where the
pinned agent versions are not installed (``scripts/test`` installs them when npm exists).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.agents import agents
from tests.emulators.anthropic import AnthropicEmulator
from tests.emulators.openai import OpenAIEmulator, OpenAIModel
from tests.support.servers import ServerThread

KEY = "corral-agent-test-key"


def _strace(tmp_path: Path) -> Path | None:
    return tmp_path / "strace.log" if shutil.which("strace") else None


def _assert_offline(log: Path | None) -> None:
    if log is None:  # strace is not installed: nothing to check the traffic with
        return
    assert agents.dns_names(log) == set()
    assert agents.non_loopback_connects(log) == []


def test_claude_code_reads_a_file_through_the_anthropic_emulator(tmp_path: Path) -> None:
    reason = agents.missing_reason("claude", agents.CLAUDE_CODE_VERSION, "@anthropic-ai/claude-code")
    if reason:
        pytest.skip(reason)
    model = "qwen3-coder:30b"  # a local model's name: Claude Code takes any
    emu = AnthropicEmulator([model], api_key=KEY)
    log = _strace(tmp_path)
    with ServerThread(emu.app) as srv:
        run = agents.run_claude(srv.url, KEY, model, root=tmp_path, strace=log)
    assert run.returncode == 0, run.stdout + run.stderr
    assert agents.SECRET in run.stdout  # the model's last answer quotes the tool's result
    assert [(path, status) for path, status in emu.statuses] == [("/v1/messages", 200)] * 2
    first, second = emu.requests
    assert first.query == {"beta": "true"} and first.json["stream"] is True
    assert first.headers["authorization"] == f"Bearer {KEY}" and "x-api-key" not in first.headers
    session = json.loads(first.json["metadata"]["user_id"])["session_id"]
    assert first.headers["x-claude-code-session-id"] == session == second.headers["x-claude-code-session-id"]
    result = second.json["messages"][-1]["content"][0]
    assert result["type"] == "tool_result" and agents.SECRET in result["content"]
    _assert_offline(log)


def test_codex_reads_a_file_through_the_responses_emulator(tmp_path: Path) -> None:
    reason = agents.missing_reason("codex", agents.CODEX_VERSION, "@openai/codex")
    if reason:
        pytest.skip(reason)
    model = "gpt-oss:20b"
    emu = OpenAIEmulator([OpenAIModel(model, reasoning=True)], api_key=KEY, responses=True)
    log = _strace(tmp_path)
    with ServerThread(emu.app) as srv:
        run = agents.run_codex(srv.url + "/v1", KEY, model, root=tmp_path, strace=log)
    assert run.returncode == 0, run.stdout + run.stderr
    assert agents.SECRET in run.stdout
    first, second = emu.requests_to("/responses")
    assert len(emu.requests) == 2  # nothing but the two turns
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.json["store"] is False and first.json["stream"] is True
    assert first.headers["session-id"] == first.json["prompt_cache_key"] == second.headers["session-id"]
    output = second.json["input"][-1]
    assert output["type"] == "function_call_output" and agents.SECRET in output["output"]
    assert {t["type"] for t in first.json["tools"]} == {"function"}  # the offline config drops the others
    _assert_offline(log)
