"""The forwarded body and the field lists of each API: defined in ``corral.conversation.body``
(the bottom layer, which providers may import) and re-exported here."""

from corral.conversation.body import (
    OLLAMA_FIELDS,
    OLLAMA_OPTIONS,
    OPENAI_FIELDS,
    shadowing_key,
    shadowing_path,
    sse_error,
    with_model,
    without_shadowing,
)

__all__ = [
    "OLLAMA_FIELDS",
    "OLLAMA_OPTIONS",
    "OPENAI_FIELDS",
    "shadowing_key",
    "shadowing_path",
    "sse_error",
    "with_model",
    "without_shadowing",
]
