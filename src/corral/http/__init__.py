"""The HTTP edge: aiohttp routes that parse requests once and write the engine's replies."""
