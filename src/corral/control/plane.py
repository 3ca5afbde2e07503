"""The control plane at run time: the store, the gateway-key cache, and live config changes.

Providers and aliases come from the YAML file (read-only through the API, shown as managed by
config) and from the database (managed through the admin API and CLI). ``apply`` rebuilds the
effective config from both and swaps it into the running gateway; a background loop picks up
changes made by other replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from corral.config.schema import Config
from corral.control.merge import merge
from corral.gateway import Gateway
from corral.keys.cache import KeyCache
from corral.security.crypto import load_crypto
from corral.store import Store, database_url, open_store
from corral.tasks import stop_tasks

log = logging.getLogger("corral.control")
SYNC_INTERVAL = 15.0  # seconds between picking up other replicas' changes
WATCH_INTERVAL = 0.5  # seconds between looks at the audit log, for processes that share no Redis


class ControlPlane:
    def __init__(self, base: Config, store: Store, keys: KeyCache) -> None:
        self.base = base
        self.store = store
        self.keys = keys
        self.config_providers = frozenset(p.name for p in base.providers) | ({"demo"} if base.demo else set())
        self.config_aliases = frozenset(m.name for m in base.models)
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.on_change: list[Callable[[], None]] = []  # told after an admin change applied (corral.cluster)
        self._audit_base = 0  # the newest audit id when the keys were first read (``open``)

    @classmethod
    async def open(cls, base: Config, home: Path, env: Mapping[str, str]) -> ControlPlane:
        crypto = load_crypto(env, home)
        store = await open_store(database_url(env, home, base.database_url), crypto=crypto)
        try:
            await store.providers.check_decryptable()  # a wrong encryption key fails at start
            base_id = await store.audit.latest_id()  # before the keys are read: no change missed
            keys = KeyCache()
            keys.attach(store)
            await keys.load(store)
        except BaseException:
            await store.close()
            raise
        plane = cls(base, store, keys)
        plane._audit_base = base_id
        return plane

    async def effective(self) -> Config:
        """YAML config plus the database's providers and aliases. Raises ConfigError."""
        providers = [self.store.providers.reveal(r) for r in await self.store.providers.list()]
        aliases = [(a.name, a.spec) for a in await self.store.aliases.list()]
        rules = [r.spec() for r in await self.store.rules.list()]
        return merge(self.base, providers, aliases, rules)

    async def apply(self, gateway: Gateway) -> None:
        """Rebuild the effective config and apply it to the running gateway."""
        async with self._lock:
            config = await self.effective()
            if config != gateway.config:
                await gateway.reconfigure(config)

    def changed(self) -> None:
        """An admin change to providers or aliases was applied here: tell the other workers."""
        for hook in self.on_change:
            hook()

    def start(self, gateway: Gateway, watch: float | None = None) -> None:
        """The periodic reloads; with ``watch``, also a look at the audit log every ``watch``
        seconds that reloads keys and config as soon as another process changed them (workers
        or replicas sharing the database but no Redis: a revoked key is refused everywhere
        within a second, not at the next periodic reload)."""
        self._tasks.append(
            asyncio.create_task(self.keys.refresh_loop(self.store, SYNC_INTERVAL), name="keys")
        )
        self._tasks.append(asyncio.create_task(self._sync(gateway), name="config-sync"))
        if watch is not None:
            self._tasks.append(asyncio.create_task(self._watch(gateway, watch), name="change-watch"))

    async def _watch(self, gateway: Gateway, interval: float) -> None:
        """Reload when the audit log has rows it did not have: its newest id and its count since
        the start (on PostgreSQL ids are handed out before commit, so a change can commit after
        one with a higher id). A reload that fails is tried again at the next look; a failing
        database is logged once, by the error's type, until it answers again."""
        seen = (self._audit_base, 0)  # nothing after the keys were first read
        failing = False
        while True:
            await asyncio.sleep(interval)
            try:
                latest = await self.store.audit.since(self._audit_base)
                if latest != seen:  # keys, providers or aliases changed (here or elsewhere)
                    await self.keys.load(self.store)
                    await self.apply(gateway)
                    seen = latest
                failing = False
            except Exception as exc:  # the periodic reloads stay the safety net
                if not failing:
                    log.warning(
                        "could not look for changes made elsewhere (%s); retrying", type(exc).__name__
                    )
                failing = True

    async def _sync(self, gateway: Gateway) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            try:
                await self.apply(gateway)
            except Exception as exc:  # keep serving the last good config
                log.warning("could not apply the stored configuration: %s", exc)

    async def stop(self) -> None:
        """Stop applying changes (the reload, watch and key tasks) and write the keys' last use;
        the store stays open for what still writes to it (the usage flushed at shutdown)."""
        await stop_tasks(self._tasks)
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.keys.flush_last_used(self.store)

    async def close(self) -> None:
        await self.stop()
        await self.store.close()
