"""Model names to routes: defined in ``corral.routing.catalog`` and re-exported here for code
that reads the catalog as the engine's."""

from corral.routing.catalog import MAX_NAME, Catalog, ProviderEntry

__all__ = ["MAX_NAME", "Catalog", "ProviderEntry"]
