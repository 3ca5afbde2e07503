"""``corral chat MODEL [PROMPT]``: stream an answer from any model or alias through the
gateway's data plane (``/v1/chat/completions``), then show who answered, the time to first
token and tokens per second: the terminal's "Test Chat".

With a prompt (or a prompt piped on standard input) it answers once; without one on a
terminal it is interactive: each line is a turn of one conversation (``/reset`` starts over,
``/exit`` or Ctrl-D ends). ``--json`` prints each turn as one JSON object instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from corral.cli.client import AdminClient, CLIError
from corral.cli.output import make_console, print_json
from corral.cli.providers import client, client_options

CHAT_TIMEOUT = 600.0  # seconds without a byte (a cold model may take minutes to load)
EXIT = {"/exit", "/quit", "/q"}


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "chat",
        help="chat with a model or alias through the gateway (streams; interactive without a prompt)",
        description="Stream an answer from any model or alias through the gateway, showing the "
        "provider that answered, the time to first token and tokens per second.",
    )
    parser.add_argument("model", help="a model or alias, e.g. demo/echo or gpt-oss-120b")
    parser.add_argument("prompt", nargs="?", help="the message (default: interactive, or stdin when piped)")
    parser.add_argument("--system", help="a system message")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--max-tokens", type=int, dest="max_tokens")
    client_options(parser, plane="data")


@dataclass
class Turn:
    """One answer and how it was served."""

    model: str
    content: str = ""
    reasoning: str = ""
    provider: str | None = None
    served_model: str | None = None
    fallback: str | None = None
    started: float = 0.0
    first_token: float | None = None
    ended: float = 0.0
    usage: dict[str, Any] = field(default_factory=dict)
    chunks: int = 0

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_token is None else (self.first_token - self.started) * 1000

    @property
    def completion_tokens(self) -> tuple[int, bool]:
        """(tokens, exact): from the usage the gateway reported, else the content chunks."""
        reported = self.usage.get("completion_tokens")
        if isinstance(reported, int):
            return reported, True
        return self.chunks, False

    @property
    def tokens_per_second(self) -> float | None:
        tokens, _ = self.completion_tokens
        if self.first_token is None or tokens < 1:
            return None
        spent = self.ended - self.first_token
        return tokens / spent if spent > 0 else None

    def as_json(self) -> dict[str, Any]:
        tps = self.tokens_per_second
        return {
            "model": self.model,
            "provider": self.provider,
            "served_model": self.served_model,
            "fallback": self.fallback,
            "content": self.content,
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 1),
            "tokens_per_second": None if tps is None else round(tps, 1),
            "usage": self.usage or None,
        }


def stats_line(turn: Turn) -> Text:
    tokens, exact = turn.completion_tokens
    served = turn.provider or "?"
    if turn.served_model:
        served += f" / {turn.served_model}"
    parts = [f"{served}"]
    if turn.fallback:
        parts.append(f"fallback {turn.fallback}")
    parts.append("TTFT " + ("-" if turn.ttft_ms is None else f"{turn.ttft_ms:,.0f} ms"))
    tps = turn.tokens_per_second
    parts.append(("-" if tps is None else f"{tps:,.1f}") + " tok/s")
    parts.append(f"{'' if exact else '~'}{tokens} tokens")
    return Text("  ·  ".join(parts), style="dim")


def ask(
    api: AdminClient,
    model: str,
    messages: list[dict[str, str]],
    args: argparse.Namespace,
    write: Callable[[str], None] | None,
    clock: Callable[[], float] = time.monotonic,
) -> Turn:
    """Send one turn, streaming the answer to ``write`` as it arrives."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if args.temperature is not None:
        body["temperature"] = args.temperature
    if args.max_tokens is not None:
        body["max_tokens"] = args.max_tokens
    turn = Turn(model, started=clock())
    with api.stream("POST", "/v1/chat/completions", body, timeout=CHAT_TIMEOUT) as resp:
        turn.provider = resp.headers.get("x-corral-provider")
        turn.served_model = resp.headers.get("x-corral-model")
        turn.fallback = resp.headers.get("x-corral-fallback")
        for line in resp.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if isinstance(event.get("error"), dict):
                raise CLIError(f"The answer stopped with an error: {event['error'].get('message')}")
            if isinstance(event.get("usage"), dict):
                turn.usage = event["usage"]
            for choice in event.get("choices") or ():
                delta = choice.get("delta") or {}
                text = delta.get("content") or ""
                thought = delta.get("reasoning_content") or delta.get("reasoning") or ""
                if (text or thought) and turn.first_token is None:
                    turn.first_token = clock()
                turn.reasoning += thought
                if text:
                    turn.chunks += 1
                    turn.content += text
                    if write is not None:
                        write(text)
    turn.ended = clock()
    return turn


def run(args: argparse.Namespace, console: Console | None = None, stdin: TextIO | None = None) -> int:
    return chat(client(args), args, console or make_console(), stdin or sys.stdin)


def chat(api: AdminClient, args: argparse.Namespace, out: Console, stdin: TextIO) -> int:
    base = [{"role": "system", "content": args.system}] if args.system else []
    prompt = args.prompt
    if prompt is None and not stdin.isatty():
        prompt = stdin.read().strip()
        if not prompt:
            raise CLIError("No prompt: give one after the model, pipe one on stdin, or run on a terminal.")
    if prompt is not None:
        once(api, args, out, [*base, {"role": "user", "content": prompt}])
        return 0
    return interactive(api, args, out, base, stdin)


def once(api: AdminClient, args: argparse.Namespace, out: Console, messages: list[dict[str, str]]) -> Turn:
    if args.json:
        turn = ask(api, args.model, messages, args, None)
        print_json(turn.as_json(), out.file, line=args.prompt is None)  # interactive: a line per turn
        return turn

    def write(text: str) -> None:
        out.print(Text(text), end="", soft_wrap=True)  # as it arrives (and recorded, for docs)
        out.file.flush()

    turn = ask(api, args.model, messages, args, write)
    if not turn.content.endswith("\n"):
        out.print()
    out.print(stats_line(turn))
    return turn


def interactive(
    api: AdminClient, args: argparse.Namespace, out: Console, base: list[dict[str, str]], stdin: TextIO
) -> int:
    out.print(
        Text(f"Chatting with {args.model} through {api.url}. /reset starts over, /exit ends.", style="dim")
    )
    messages = list(base)
    while True:
        line = _read_line(out, stdin)
        if not line:
            out.print()
            return 0
        text = line.strip()
        if not text:
            continue
        if text in EXIT:
            return 0
        if text == "/reset":
            messages = list(base)
            out.print(Text("(a new conversation)", style="dim"))
            continue
        messages.append({"role": "user", "content": text})
        try:
            turn = once(api, args, out, messages)
        except CLIError as exc:
            messages.pop()
            out.print(Text(f"corral: {exc}", style="red"))
            continue
        messages.append({"role": "assistant", "content": turn.content})


def _read_line(out: Console, stdin: TextIO) -> str:
    """One line typed after the prompt ("" at the end of input); line editing on a terminal."""
    if stdin.isatty():
        try:
            return out.input(Text("> ", style="bold cyan")) + "\n"
        except EOFError:
            return ""
    out.print(Text("> ", style="bold cyan"), end="")
    out.file.flush()
    return stdin.readline()
