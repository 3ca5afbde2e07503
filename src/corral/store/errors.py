"""Errors raised by the durable store, as subclasses of corral's error hierarchy.

    InvalidRequest (400)
    └── AlreadyExists            409  a provider, alias or key with that name already exists
    ConfigError
    └── StoreUnavailable         the database cannot be opened or migrated at start

Messages name the object and the fix; they never carry a secret or a database password.
"""

from __future__ import annotations

from corral.errors import ConfigError, InvalidRequest, NotFound


class AlreadyExists(InvalidRequest):
    """A create collided with an existing name (HTTP 409)."""

    status = 409

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(
            f"A {kind} named '{name}' already exists. Choose another name, or update the existing "
            f"{kind} instead of creating it again.",
            code=f"{kind.replace(' ', '_')}_exists",
            param="name",
        )
        self.kind = kind
        self.name = name


class Missing(NotFound):
    """The named provider, alias or key does not exist (HTTP 404)."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(
            f"There is no {kind} named '{name}'. List the {kind}s to see which exist.",
            code=f"{kind.replace(' ', '_')}_not_found",
        )
        self.kind = kind
        self.name = name


class StoreUnavailable(ConfigError):
    """The database could not be opened or migrated; raised at start, never sent to a client."""
