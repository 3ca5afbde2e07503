"""The Ollama provider: pure OpenAI <-> Ollama native API translation lives here."""
