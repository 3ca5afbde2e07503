"""Gateway keys: the key format, the in-memory verifier, and the calling principal."""
