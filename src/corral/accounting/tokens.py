"""Reading token counts from what a provider left in ``Outcome`` (off the request path).

Providers that know the counts set ``outcome.usage``; passthrough providers leave the body or
a stream's last bytes in ``outcome.tail``: an OpenAI body or SSE events (``usage``), or
Ollama's final line (``prompt_eval_count`` / ``eval_count``).
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.core.call import Outcome


def _counts(obj: Any) -> tuple[int, int] | None:
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        completion = usage.get("completion_tokens")
        return usage["prompt_tokens"], completion if isinstance(completion, int) else 0
    if isinstance(obj.get("prompt_eval_count"), int) or isinstance(obj.get("eval_count"), int):
        prompt, completion = obj.get("prompt_eval_count"), obj.get("eval_count")
        return (prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0)
    return None


def tokens_of(outcome: Outcome) -> tuple[int, int] | None:
    """(prompt, completion) tokens the upstream reported, or None."""
    if outcome.usage is not None:
        return outcome.usage.get("prompt_tokens", 0), outcome.usage.get("completion_tokens", 0)
    tail = outcome.tail
    if not tail:
        return None
    try:
        found = _counts(orjson.loads(tail))
        if found is not None:
            return found
    except orjson.JSONDecodeError:
        pass
    for line in reversed(tail.split(b"\n")):
        line = line.strip().removeprefix(b"data:").strip()
        if not line.startswith(b"{"):
            continue
        try:
            found = _counts(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
        if found is not None:
            return found
    return None
