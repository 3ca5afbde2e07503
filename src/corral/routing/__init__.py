"""Routing: which deployment serves a call, how healthy each one is, and the retry budget."""
