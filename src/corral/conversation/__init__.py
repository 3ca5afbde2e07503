"""The conversation model: what every surface reads a client's request into, what every upstream
adapter writes out and reads back, and what flows through the engine (``call``).

Nothing here does I/O or knows HTTP; it imports only ``corral.errors``. Each API's spelling of
the model (OpenAI, Ollama) lives in its own subpackage, used by the surface that serves that API
to clients and by the upstream adapter of the provider types that speak it.
"""
