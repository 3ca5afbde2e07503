"""Secrets at rest: the master key file in the data directory."""
