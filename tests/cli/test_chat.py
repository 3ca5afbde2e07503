"""``corral chat`` through a live gateway: the demo provider (once, piped, interactive, --json),
the errors that tell the fix, and the real SmolLM2 engine (marker ``engine``)."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from rich.console import Console

from corral.cli import chat
from corral.cli.client import AdminClient
from tests.support.engine import Engine, engine_fixture
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import free_port


def corral(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "NO_COLOR", "FORCE_COLOR"))}
    clean["CORRAL_HOME"] = "/nonexistent-corral-home"
    clean.update(env or {})
    command = [sys.executable, "-m", "corral", "chat", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=clean, input=stdin)


@pytest.fixture(scope="module")
def demo() -> Iterator[GatewayServer]:
    with GatewayServer(make_config({}, demo=True)) as gw:
        yield gw


def test_one_prompt_streams_the_answer_and_shows_how_it_was_served(demo: GatewayServer) -> None:
    done = corral("demo/echo", "hello there", env={"CORRAL_URL": demo.url, "CORRAL_API_KEY": demo.key})
    assert done.returncode == 0, done.stderr
    answer, stats = done.stdout.splitlines()
    assert answer == "Echo: hello there"
    assert stats.startswith("demo / echo  ·  TTFT ") and " tok/s  ·  " in stats and stats.endswith(" tokens")
    piped = corral("demo/echo", "--url", demo.url, "--key", demo.key, stdin="from a pipe\n")
    assert piped.stdout.startswith("Echo: from a pipe\n")


def test_interactive_keeps_one_conversation(demo: GatewayServer) -> None:
    api = AdminClient(demo.url, demo.key, plane="data")
    args = argparse.Namespace(model="demo/echo", prompt=None, system=None, temperature=None, max_tokens=None,
                              json=False)  # fmt: skip
    out = io.StringIO()
    console = Console(file=out, width=100)
    stdin = io.StringIO("first\n\nsecond\n/reset\nthird\n/exit\nnever sent\n")
    assert chat.interactive(api, args, console, [], stdin) == 0  # what a terminal without a prompt runs
    text = out.getvalue()
    assert "Echo: first" in text and "Echo: second" in text and "Echo: third" in text
    assert "(a new conversation)" in text and "never sent" not in text
    assert text.count("TTFT") == 3


def test_errors_tell_the_fix(demo: GatewayServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    unreachable = corral("demo/echo", "hi", "--url", dead, "--key", "k")
    assert unreachable.returncode == 1
    assert f"Cannot reach corral's data plane at {dead}" in unreachable.stderr
    assert "--url or $CORRAL_URL" in unreachable.stderr
    no_key = corral("demo/echo", "hi", "--url", demo.url)
    assert no_key.returncode == 1 and "No API key. Pass --key, or set CORRAL_API_KEY" in no_key.stderr
    refused = corral("demo/echo", "hi", "--url", demo.url, "--key", "wrong")
    assert (
        refused.returncode == 1 and "refused the key" in refused.stderr and "CORRAL_API_KEY" in refused.stderr
    )
    unknown = corral("demo/ech", "hi", "--url", demo.url, "--key", demo.key)
    assert unknown.returncode == 1 and "HTTP 404" in unknown.stderr and "demo/echo" in unknown.stderr


llm_engine = engine_fixture(scope="module")


@pytest.mark.engine
def test_chat_with_the_real_smollm2_engine(llm_engine: Engine) -> None:
    config = make_config(
        {
            "providers": [
                {"name": "engine", "type": "openai", "base_url": llm_engine.base_url, "timeout": 120}
            ],
            "models": [{"name": "smol", "target": f"engine/{llm_engine.model}"}],
        }
    )
    with GatewayServer(config) as gw:
        done = corral(
            "smol", "Say hello in one word.", "--max-tokens", "16", "--url", gw.url, "--key", gw.key
        )
    assert done.returncode == 0, done.stderr
    *answer, stats = done.stdout.splitlines()
    assert "".join(answer).strip()  # the model said something
    assert stats.startswith(f"engine / {llm_engine.model}  ·  TTFT ") and "tok/s" in stats
