"""The gateway engine: model resolution and dispatch, with no knowledge of HTTP."""
