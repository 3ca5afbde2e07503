"""The durable store of the control plane: providers, aliases, gateway keys and the audit log.

Build it with ``open_store(database_url(env, home), crypto=load_crypto(env, home))``; the
repositories hang off the ``Store`` (``store.providers``, ``store.aliases``, ``store.keys``,
``store.audit``).
"""

from corral.store.db import Store, database_url, open_store

__all__ = ["Store", "database_url", "open_store"]
