"""Token counts of a finished call: the upstream's own figures where it gave them, else an
estimate from what was streamed, flagged as estimated.

- The upstream's figures (``outcome.usage``) count, unless they say 0 completion tokens for an
  answer that had text: engines that ignore ``include_usage`` (llama-cpp-python) send zeros, and
  those are unknown, not 0.
- An estimate: the prompt from the request's size (about 4 bytes a token), the completion from
  the text relayed: a token per piece of a stream (upstreams stream a token per event), a
  quarter of a whole answer's characters. Never from the bytes of the answer.
"""

from __future__ import annotations

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
    """A stream's pieces (a token each); a whole answer's characters over 4."""
    return outcome.pieces if outcome.pieces > 1 else max(outcome.pieces, -(-outcome.chars // 4))


def _reported(outcome: Outcome) -> Usage | None:
    return outcome.usage
