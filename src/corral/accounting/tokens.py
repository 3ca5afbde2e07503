"""Token counts of a finished call: the upstream's own figures where it gave them, else an
estimate from what was streamed, flagged as estimated.

- The upstream's figures (``outcome.usage``) count, unless they say 0 completion tokens for an
  answer that had text: engines that ignore ``include_usage`` (llama-cpp-python) send zeros, and
  those are unknown, not 0.
- An estimate: the prompt from the request's size (about 4 bytes a token), the completion from
  the text relayed: a token per piece (upstreams stream a token per event), or a quarter of its
  characters when corral read them and they come to more.

Providers not moved to the conversation model yet still leave the answer's last bytes in
``outcome.tail``; until they move, the counts are read from those when nothing else says.
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.conversation.answer import Usage
from corral.conversation.call import Call, Outcome


def usage_of(call: Call, outcome: Outcome | None) -> Usage:
    """The tokens of ``call``, answered with ``outcome`` (None: it failed before an answer)."""
    if outcome is None:
        return Usage(0, 0)
    usage = _reported(outcome)
    streamed = _streamed(outcome)
    if usage is not None and not (usage.completion_tokens == 0 and streamed):
        return usage
    prompt = usage.prompt_tokens if usage is not None and usage.prompt_tokens else max(1, len(call.raw) // 4)
    return Usage(prompt, streamed, estimated=True)


def tokens_of(outcome: Outcome) -> tuple[int, int] | None:
    """(prompt, completion) tokens as the upstream reported them, or None when it did not."""
    usage = _reported(outcome)
    if usage is None or (usage.completion_tokens == 0 and _streamed(outcome)):
        return None
    return usage.prompt_tokens, usage.completion_tokens


def _streamed(outcome: Outcome) -> int:
    return max(outcome.pieces, -(-outcome.chars // 4))


def _reported(outcome: Outcome) -> Usage | None:
    usage = outcome.usage
    if isinstance(usage, dict):
        return Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
    return usage if usage is not None else _from_tail(outcome.tail)


def _counts(obj: Any) -> Usage | None:
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        completion = usage.get("completion_tokens")
        return Usage(usage["prompt_tokens"], completion if isinstance(completion, int) else 0)
    if isinstance(obj.get("prompt_eval_count"), int) or isinstance(obj.get("eval_count"), int):
        prompt, completion = obj.get("prompt_eval_count"), obj.get("eval_count")
        return Usage(
            prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0
        )
    return None


def _from_tail(tail: bytes) -> Usage | None:
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
