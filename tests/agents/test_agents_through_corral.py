"""Claude Code and Codex, the real binaries, complete the read-file task against corral, over
the Ollama emulator: Claude Code on ``/v1/messages`` with a gateway key, Codex with corral as a
custom Responses provider. Both are translated to native ``/api/chat`` (the emulator refuses
anything Ollama would not take), with the provider's ``num_ctx`` (Claude Code needs 64k or more).
Skipped, with the reason printed, where the pinned agents are not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agents import agents
from tests.emulators.ollama import ModelSpec, OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread


@dataclass
class Fleet:
    ollama: OllamaEmulator
    gateway: GatewayServer


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    ollama = OllamaEmulator(
        [
            ModelSpec("qwen3-coder:30b", family="qwen3", context_length=262144),
            ModelSpec("gpt-oss:20b", family="gptoss", capabilities=["completion", "tools", "thinking"]),
        ]
    )
    with ServerThread(ollama.app) as o:
        config = make_config(f"""
providers:
  - name: local
    type: ollama
    base_url: {o.url}
    num_ctx: 65536
models:
  - name: coder
    target: local/qwen3-coder:30b
""")
        with GatewayServer(config) as gw:
            yield Fleet(ollama, gw)


def test_claude_code_reads_a_file_through_corral(fleet: Fleet, tmp_path: Path) -> None:
    reason = agents.missing_reason("claude", agents.CLAUDE_CODE_VERSION, "@anthropic-ai/claude-code")
    if reason:
        pytest.skip(reason)
    before = len(fleet.ollama.requests_to("/api/chat"))
    run = agents.run_claude(fleet.gateway.url, fleet.gateway.key, "coder", root=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert agents.SECRET in run.stdout
    sent = [r.json for r in fleet.ollama.requests_to("/api/chat")[before:]]
    assert len(sent) == 2  # the tool call, then the answer after the tool's result
    assert all(body["options"]["num_ctx"] == 65536 and body["model"] == "qwen3-coder:30b" for body in sent)
    tool = next(m for m in sent[1]["messages"] if m["role"] == "tool")
    assert tool["tool_name"] == "Read" and agents.SECRET in tool["content"]


def test_codex_reads_a_file_through_corral(fleet: Fleet, tmp_path: Path) -> None:
    reason = agents.missing_reason("codex", agents.CODEX_VERSION, "@openai/codex")
    if reason:
        pytest.skip(reason)
    before = len(fleet.ollama.requests_to("/api/chat"))
    run = agents.run_codex(fleet.gateway.v1, fleet.gateway.key, "local/gpt-oss:20b", root=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert agents.SECRET in run.stdout
    sent = [r.json for r in fleet.ollama.requests_to("/api/chat")[before:]]
    assert len(sent) == 2
    assert [t["function"]["name"] for t in sent[0]["tools"]] == [
        "exec_command",
        "write_stdin",
        "request_user_input",
        "view_image",
    ]
    tool = next(m for m in sent[1]["messages"] if m["role"] == "tool")
    assert tool["tool_name"] == "exec_command" and agents.SECRET in tool["content"]
