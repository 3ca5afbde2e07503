"""``corral usage --top``: the parameters reach /admin/usage and the folded row is named "other"."""

from __future__ import annotations

import argparse
import io
from typing import Any

from rich.console import Console

from corral.cli.usage import add_parser, show_usage


class FakeAdmin:
    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.paths: list[str] = []

    def get(self, path: str) -> dict[str, Any]:
        self.paths.append(path)
        return self.answer


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["usage", *argv])


def test_top_is_passed_and_the_rest_is_shown_as_other() -> None:
    figures = {"total_tokens": 30, "cost_usd": 0.5, "errors": 0, "latency_p50_ms": 1.0, "latency_p95_ms": 2.0}
    api = FakeAdmin(
        {
            "group_by": ["user"],
            "top": 1,
            "data": [
                {"user": "alice", "requests": 7, **figures},
                {"user": None, "requests": 3, "other": 12, **figures},
            ],
        }
    )
    out = Console(file=io.StringIO(), width=160)
    assert show_usage(api, parse("--group-by", "user", "--top", "1", "--top-by", "requests"), out) == 0  # type: ignore[arg-type]
    assert "top=1" in api.paths[0] and "top_by=requests" in api.paths[0] and "group_by=user" in api.paths[0]
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert "alice" in text and "other (12 more)" in text


def test_without_top_nothing_is_asked() -> None:
    api = FakeAdmin({"group_by": ["model"], "data": []})
    show_usage(api, parse(), Console(file=io.StringIO()))  # type: ignore[arg-type]
    assert "top" not in api.paths[0]
