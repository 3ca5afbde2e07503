"""Admin changes applied by every worker within a second: keys, providers, aliases.

A key created, changed (limits, enabled, expiry) or deleted through this worker's store is
announced as ``{"k": "key", "id": ...}``; the others read that one key from the database and
put it in their key cache (a deletion says ``"gone"``: they drop it at once, without a read).
A provider or alias change (``ControlPlane.changed``) is announced as ``{"k": "cfg"}``; the
others rebuild the effective config from the database and apply it. The messages carry no
secret, only ids. The periodic reloads (keys and config, every ``SYNC_INTERVAL``) stay as the
safety net for a message lost in a Redis outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from corral.cluster.link import RedisLink
from corral.store.errors import Missing
from corral.store.keys import KeyRecord

if TYPE_CHECKING:
    from corral.control.plane import ControlPlane
    from corral.gateway import Gateway

log = logging.getLogger("corral.cluster")


class ChangeFeed:
    def __init__(self, link: RedisLink, plane: ControlPlane, gateway: Callable[[], Gateway]) -> None:
        self._link = link
        self._plane = plane
        self._gateway = gateway
        self._tasks: set[asyncio.Task[None]] = set()
        self.applied = 0
        link.on("key", self._key_changed)
        link.on("cfg", self._config_changed)

    def attach(self) -> None:
        self._plane.store.keys.subscribe(self._local_key)
        self._plane.on_change.append(self._local_config)

    def detach(self) -> None:
        self._plane.store.keys.unsubscribe(self._local_key)
        if self._local_config in self._plane.on_change:
            self._plane.on_change.remove(self._local_config)

    # this worker's changes ---------------------------------------------------------------
    def _local_key(self, key_id: str, record: KeyRecord | None) -> None:
        gone = {"gone": True} if record is None else {}  # deleted: the others drop it, no read
        self._spawn(self._link.publish(self._link.message("key", id=key_id, **gone)))

    def _local_config(self) -> None:
        self._spawn(self._link.publish(self._link.message("cfg")))

    # other workers' changes --------------------------------------------------------------
    def _key_changed(self, msg: dict[str, Any]) -> None:
        key_id = msg.get("id")
        if not isinstance(key_id, str):
            return
        if msg.get("gone") is True:
            self._plane.keys.apply(key_id, None)
            self.applied += 1
        else:
            self._spawn(self._reload_key(key_id))

    async def _reload_key(self, key_id: str) -> None:
        try:
            record: KeyRecord | None = await self._plane.store.keys.get_by_id(key_id)
        except Missing:
            record = None
        except Exception as exc:  # the periodic reload catches up
            log.warning("could not reload key %s after a change elsewhere: %s", key_id, exc)
            return
        self._plane.keys.apply(key_id, record)
        self.applied += 1

    def _config_changed(self, msg: dict[str, Any]) -> None:
        self._spawn(self._reload_config())

    async def _reload_config(self) -> None:
        try:
            await self._plane.apply(self._gateway())
        except Exception as exc:  # keep serving the last good config; the periodic sync retries
            log.warning("could not apply a configuration changed elsewhere: %s", exc)
            return
        self.applied += 1

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
