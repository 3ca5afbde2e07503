"""Accounting at the edge: limits before a request, one usage record and metrics after it."""
