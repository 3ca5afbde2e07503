"""Ollama native API over an OpenAI-compatible upstream: pure request and answer translation."""
