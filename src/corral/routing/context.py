"""Context fit: does a call's prompt fit a deployment's context window?

The prompt's tokens are estimated, never counted with a tokenizer: a body of ``FLOOR * 4`` bytes
or less fits every model (no check at all, the common case); a larger one is read into the
conversation model (once: the call keeps it) and its text, tool calls and tool definitions count
``CHARS_PER_TOKEN`` characters a token, plus a few tokens a message for the chat template. Images
are not counted (their base64 is not the model's tokens).

A deployment's effective context is the first known of: the pool's pinned ``num_ctx``; the
``num_ctx`` the client asked for; the provider's ``num_ctx``; the context Ollama has the model
loaded with (``/api/ps``); the model's maximum (``ModelFacts``). Unknown: it fits (fail open).
"""

from __future__ import annotations

from collections.abc import Mapping

from corral.conversation.call import Call, Target
from corral.routing.capabilities import ModelFacts
from corral.routing.state import DeploymentState

CHARS_PER_TOKEN = 4
PER_MESSAGE = 4  # tokens a chat template adds around each message, about
FLOOR = 2048  # tokens every model takes: bodies below FLOOR * CHARS_PER_TOKEN bytes are not read


def prompt_tokens(call: Call) -> int:
    """An estimate of the prompt's tokens (cheap; see the module's docstring)."""
    if len(call.raw) <= FLOOR * CHARS_PER_TOKEN:
        return len(call.raw) // CHARS_PER_TOKEN
    if call.prompt_estimate is None:
        call.prompt_estimate = _estimate(call)
    return call.prompt_estimate


def _estimate(call: Call) -> int:
    from corral.conversation.surfaces import request_of  # the model's readers, only for big bodies

    try:
        req = request_of(call)
    except Exception:
        return len(call.raw) // CHARS_PER_TOKEN
    chars = len(req.prompt or "") + len(req.system or "") + len(req.suffix or "")
    for m in req.messages:
        chars += len(m.text()) + len(m.reasoning)
        chars += sum(len(c.name) + len(c.arguments_json()) for c in m.tool_calls)
    chars += sum(len(str(t.definition)) for t in req.tools or ())
    if isinstance(req.input, str):
        chars += len(req.input)
    elif isinstance(req.input, list):
        chars += sum(len(x) for x in req.input)
    return chars // CHARS_PER_TOKEN + PER_MESSAGE * len(req.messages)


def loaded_context(state: DeploymentState, model: str) -> int | None:
    name = model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"
    value = state.loaded.get(name)
    return value if isinstance(value, int) and value > 0 else None


def effective_context(
    target: Target,
    state: DeploymentState | None,
    facts: ModelFacts,
    pinned: int | None,
    provider_ctx: Mapping[str, int],
    context_override: int | None = None,
) -> int | None:
    """The context ``target`` would serve the call with (None: not known)."""
    if pinned:
        return pinned
    ctx = provider_ctx.get(target.provider)
    if ctx:
        return ctx
    if state is not None:
        loaded = loaded_context(state, target.model)
        if loaded:
            return loaded
    if context_override:
        return context_override
    return facts.of(target.provider, target.model).context_length
