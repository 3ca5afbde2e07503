"""Capture what a real agent sends: ``python -m tests.agents.capture {claude-code|codex} [--model M]``.

Runs the agent's read-file task (``tests/agents/agents.py``) against the matching emulator on
loopback (the Anthropic one for Claude Code, the OpenAI one in Responses mode for Codex),
under strace, and writes every request it made (method, path, query, headers, body, the status
it got) to ``tests/fixtures/agents/<agent>-<version>-<model>.json``, with the key, the temp
paths and the machine identifiers replaced by placeholders. The DNS names it looked up and its
connections off loopback are in the file too (both empty when the offline switches work).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.agents import agents
from tests.emulators.anthropic import AnthropicEmulator
from tests.emulators.common import RecordedRequest
from tests.emulators.openai import OpenAIEmulator, OpenAIModel
from tests.support.servers import ServerThread

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "agents"
KEY = "corral-capture-key-0123456789"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def with_statuses(
    factory: Callable[[], web.Application], statuses: list[int]
) -> Callable[[], web.Application]:
    """The emulator's app, noting the status of every answer in order."""

    @web.middleware
    async def note(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            statuses.append(exc.status)
            raise
        statuses.append(resp.status)
        return resp

    def build() -> web.Application:
        app = factory()
        app.middlewares.insert(0, note)
        return app

    return build


def identifiers(requests: list[RecordedRequest]) -> list[str]:
    """Machine identifiers the agents send (Claude Code's device_id, Codex's installation_id)."""
    found: set[str] = set()
    for r in requests:
        text = r.raw.decode(errors="replace") + json.dumps(r.headers)
        found.update(re.findall(r'device_id\\*"\s*:\s*\\*"([0-9a-f]{16,})', text))
        found.update(re.findall(r'installation[_-]id\\*"\s*:\s*\\*"([0-9a-f-]{36})', text))
    return sorted(found)


def redact(text: str, run: agents.Run, secrets: list[str]) -> str:
    text = text.replace(KEY, "<gateway-key>")
    for value in secrets:
        text = text.replace(value, "<machine-id>")
    return text.replace(str(run.work), "<work>").replace(str(run.home), "<home>")


def capture(agent: str, model: str) -> Path:
    with tempfile.TemporaryDirectory(prefix="corral-capture-") as root:
        return _capture(agent, model, Path(root))


def _capture(agent: str, model: str, root: Path) -> Path:
    statuses: list[int] = []
    strace = root / f"{agent}.strace"
    emu: AnthropicEmulator | OpenAIEmulator
    if agent == "claude-code":
        emu = AnthropicEmulator([model], api_key=KEY)
        version = agents.CLAUDE_CODE_VERSION
        with ServerThread(with_statuses(emu.app, statuses)) as srv:
            run = agents.run_claude(srv.url, KEY, model, root=root, strace=strace)
    else:
        emu = OpenAIEmulator([OpenAIModel(model, reasoning=True)], api_key=KEY, responses=True)
        version = agents.CODEX_VERSION
        with ServerThread(with_statuses(emu.app, statuses)) as srv:
            run = agents.run_codex(srv.url + "/v1", KEY, model, root=root, strace=strace)
    exchanges: list[dict[str, Any]] = [
        {"method": r.method, "path": r.path, "query": r.query, "headers": r.headers, "body": r.json,
         "status": statuses[i] if i < len(statuses) else None}
        for i, r in enumerate(emu.requests)
    ]  # fmt: skip
    record = {
        "agent": agent,
        "version": version,
        "model": model,
        "task": "read notes.txt through the agent's own tool and report its content",
        "returncode": run.returncode,
        "final_output": run.stdout[-2000:],
        "dns_lookups": sorted(agents.dns_names(strace)),
        "non_loopback_connects": agents.non_loopback_connects(strace),
        "codex_config": agents.codex_config("http://127.0.0.1:<port>/v1", model)
        if agent == "codex"
        else None,
        "claude_env": sorted(agents.claude_env("http://127.0.0.1:<port>", "<gateway-key>", run.home))
        if agent == "claude-code"
        else None,
        "exchanges": exchanges,
    }
    text = redact(agents.as_json(record), run, identifiers(emu.requests))
    FIXTURES.mkdir(parents=True, exist_ok=True)
    out = FIXTURES / f"{agent}-{version}-{re.sub(r'[^A-Za-z0-9.-]+', '_', model)}.json"
    out.write_text(text + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agent", choices=["claude-code", "codex"])
    parser.add_argument("--model", help="the model name the agent is given")
    args = parser.parse_args(argv)
    model = args.model or ("qwen3-coder:30b" if args.agent == "claude-code" else "gpt-oss:20b")
    out = capture(args.agent, model)
    record = json.loads(out.read_text())
    print(f"{out}: {len(record['exchanges'])} requests, exit {record['returncode']}, "
          f"DNS {record['dns_lookups']}, off-loopback {record['non_loopback_connects']}")  # fmt: skip
    return 0 if record["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
