"""Upstream providers: one small contract (``base.Provider``), one module or package per type."""
