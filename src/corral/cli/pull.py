"""``corral pull MODEL [--instance NAME ... | --all]``: pull a model onto Ollama instances,
with a live progress bar per instance and a summary at the end."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import quote

from corral.cli.client import AdminClient, CLIError
from corral.cli.providers import client, client_options


@dataclass
class Progress:
    status: str = "waiting"
    completed: int = 0
    total: int = 0
    error: str | None = None

    def line(self, name: str, width: int = 28) -> str:
        if self.error:
            return f"{name:<16} failed: {self.error}"
        if self.total:
            done = int(width * min(self.completed, self.total) / self.total)
            pct = 100 * self.completed / self.total
            return f"{name:<16} [{'#' * done}{'.' * (width - done)}] {pct:5.1f}%  {self.status}"
        return f"{name:<16} {self.status}"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser("pull", help="pull a model onto Ollama instances")
    parser.add_argument("model")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--instance", action="append", help="an instance to pull onto (repeatable)")
    where.add_argument(
        "--all", action="store_true", help="every Ollama instance corral manages (the default)"
    )
    client_options(parser, plane="data")  # /api/pull is an Ollama API route, served with the data plane
    return parser


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return pull(client(args), args, out)


def pull(client: AdminClient, args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    query = "?instance=" + quote(",".join(args.instance)) if args.instance else ""
    if not client.key:
        raise CLIError("No admin key. Pass --key, or set CORRAL_MASTER_KEY (or CORRAL_ADMIN_KEY).")
    url = client.url + "/api/pull" + query
    if not url.startswith(("http://", "https://")):
        raise CLIError(f"--url must be an http:// or https:// URL, got {client.url!r}.")
    body = json.dumps({"model": args.model}).encode()
    req = urllib.request.Request(url, method="POST", data=body)  # noqa: S310 - scheme checked above
    req.add_header("Authorization", f"Bearer {client.key}")
    req.add_header("Content-Type", "application/json")
    bars: dict[str, Progress] = {}
    live = out.isatty()
    drawn = 0
    summary: dict[str, Any] = {}
    try:
        with urllib.request.urlopen(req, timeout=client.timeout) as resp:  # noqa: S310
            for raw in resp:
                if not raw.strip():
                    continue
                line = json.loads(raw)
                name = line.get("instance")
                if name is None:
                    summary = line
                    continue
                bar = bars.setdefault(name, Progress())
                bar.status = line.get("status", bar.status)
                bar.total = int(line.get("total") or bar.total)
                bar.completed = int(line.get("completed") or bar.completed)
                if live:
                    out.write("\x1b[F" * drawn + "".join(b.line(n) + "\x1b[K\n" for n, b in bars.items()))
                    drawn = len(bars)
                elif (
                    bar.status in ("success", "verifying sha256 digest", "writing manifest") or not bar.total
                ):
                    out.write(bar.line(name) + "\n")
                out.flush()
    except urllib.error.HTTPError as exc:
        raise CLIError(f"pull refused (HTTP {exc.code}): {_message(exc.read())}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise CLIError(f"Cannot reach corral at {client.url} ({getattr(exc, 'reason', exc)}).") from None
    failed = _failures(summary)
    ok = [n for n in summary.get("instances", bars) if n not in failed]
    out.write(
        f"\n{args.model}: pulled on {len(ok)} of {len(ok) + len(failed)} instance(s)"
        f"{': ' + ', '.join(ok) if ok else ''}\n"
    )
    for name, why in failed.items():
        out.write(f"  {name}: {why}\n")
    return 1 if failed or not summary else 0


def _failures(summary: dict[str, Any]) -> dict[str, str]:
    error = summary.get("error")
    if not isinstance(error, str):
        return {}
    out = {}
    for part in error.removeprefix("pull failed on ").split("; "):
        name, _, why = part.partition(": ")
        out[name] = why
    return out


def _message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
        err = data.get("error")
        return str(err.get("message") if isinstance(err, dict) else err)
    except (ValueError, AttributeError):
        return raw.decode(errors="replace")[:200]
