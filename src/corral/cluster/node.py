"""One worker's membership of the fleet: builds the shared parts, wires them into the gateway,
runs their background tasks, and reports the fleet (``/admin/health``, ``/metrics``).

``Cluster.open`` needs only the Redis URL and prefix (it does no I/O); ``start`` loads the
shared state (health, catalog), takes part in the probe-lease election and starts listening.
``wire`` hooks a gateway's parts up, and ``Gateway.create`` calls it again for the parts a
live reconfiguration builds. Each worker heartbeats its identity every ``TICK`` s into the hash
``<prefix>:cluster:workers``; a member not seen for ``STALE`` s is dropped from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from corral.cluster.catalog import CatalogShare
from corral.cluster.changes import ChangeFeed
from corral.cluster.health import HealthShare
from corral.cluster.lease import TICK, ProbeLease
from corral.cluster.link import RedisLink
from corral.cluster.slots import SharedSlots
from corral.identity import WorkerIdentity
from corral.tasks import stop_tasks

if TYPE_CHECKING:
    from corral.control.plane import ControlPlane
    from corral.gateway import Gateway

STALE = 10.0  # seconds without a heartbeat before a worker leaves the fleet view


def member(identity: WorkerIdentity, env: Mapping[str, str]) -> dict[str, Any]:
    """This worker as the fleet lists it: ``id`` is unique even when a pid is reused."""
    return {
        **identity.view(),
        "id": f"{identity.host}:{identity.pid}:{secrets.token_hex(4)}",
        # a pod, or one `corral serve` (its supervisor) on a host
        "replica": env.get("CORRAL_REPLICA") or f"{identity.host}:{identity.supervisor_pid or identity.pid}",
        "started": round(time.time(), 3),
    }


class Cluster:
    def __init__(self, link: RedisLink, me: dict[str, Any], gateway: Gateway, plane: ControlPlane | None):
        self.link = link
        self.me = me
        self._gateway = gateway  # the long-lived gateway: its parts are swapped on reconfigure
        self.health = HealthShare(link, lambda: self._gateway.fleet.states)
        self.catalog = CatalogShare(link, lambda: self._gateway)
        self.lease = ProbeLease(link)
        self.slots = SharedSlots(link)
        self.slots.on_release = self._freed_elsewhere
        self.changes = ChangeFeed(link, plane, lambda: self._gateway) if plane is not None else None
        self.workers_key = link.key("workers")
        self._tasks: list[asyncio.Task[None]] = []
        link.on_reconnect.append(self._reconnected)

    @classmethod
    def open(
        cls,
        url: str,
        prefix: str,
        identity: WorkerIdentity,
        env: Mapping[str, str],
        gateway: Gateway,
        plane: ControlPlane | None,
    ) -> Cluster:
        me = member(identity, env)
        cluster = cls(RedisLink(url, prefix, me["id"]), me, gateway, plane)
        cluster.wire(gateway)
        return cluster

    def wire(self, gw: Gateway) -> None:
        """Hook ``gw``'s parts (fleet, states, health checks, discovery) up to the shared state."""
        gw.cluster = self
        gw.fleet.shared = self.slots
        self.health.observe(gw.fleet.states)
        gw.health.leading = self.lease.leading
        gw.discovery.leading = self.lease.leading
        gw.discovery.on_round = self.catalog.publish

    async def start(self) -> None:
        """Listen first, then load the stored state (so nothing published in between is missed),
        then take part in the lease election before the first health round."""
        self._tasks.append(asyncio.create_task(self.link.listen(), name="cluster-listen"))
        with contextlib.suppress(TimeoutError):  # Redis down: serve on, the listener keeps trying
            await asyncio.wait_for(self.link.subscribed.wait(), 2.0)
        await self.lease.tick()
        await self.health.load()
        await self.catalog.load()
        if self.changes is not None:
            self.changes.attach()
        for name, coro in (
            ("cluster-health", self.health.run()),
            ("cluster-slots", self.slots.run()),
            ("cluster-tick", self._ticker()),
        ):
            self._tasks.append(asyncio.create_task(coro, name=name))

    async def _ticker(self) -> None:
        while True:
            await self.lease.tick()
            await self._heartbeat()
            await asyncio.sleep(TICK)

    async def _heartbeat(self) -> None:
        entry = orjson.dumps({**self.me, "seen": time.time(), "leader": self.lease.leading()})
        await self.link.run(lambda: self.link.redis.hset(self.workers_key, self.me["id"], entry))

    async def _reconnected(self) -> None:
        await self.health.load()
        await self.catalog.load()
        self.health.republish_all()
        await self.lease.tick()

    def _freed_elsewhere(self, name: str) -> None:
        self._gateway.fleet.freed_elsewhere(name)

    async def workers(self) -> list[dict[str, Any]]:
        """The fleet's live workers (heartbeat within ``STALE`` s), this one first."""
        stored = await self.link.run(lambda: self.link.redis.hgetall(self.workers_key))
        now = time.time()
        live: list[dict[str, Any]] = []
        stale: list[bytes] = []
        for member, raw in (stored or {}).items():
            try:
                entry = orjson.loads(raw)
            except orjson.JSONDecodeError:
                entry = None
            if not isinstance(entry, dict) or now - float(entry.get("seen") or 0) > STALE:
                stale.append(member)
                continue
            entry["this"] = entry.get("id") == self.me["id"]
            live.append(entry)
        if stale:
            await self.link.run(lambda: self.link.redis.hdel(self.workers_key, *stale))
        if not any(w["this"] for w in live):
            live.append({**self.me, "seen": now, "leader": self.lease.leading(), "this": True})
        live.sort(key=lambda w: (not w["this"], str(w.get("replica")), int(w.get("index") or 0)))
        return live

    async def view(self) -> dict[str, Any]:
        """The ``cluster`` section of ``/admin/health``."""
        workers = await self.workers()
        return {
            "shared": True,
            "redis": "degraded" if self.link.degraded else "ok",
            "redis_errors": self.link.errors,
            "leader": self.lease.leading(),
            "workers": workers,
        }

    def collect(self) -> Iterator[Metric]:
        """Prometheus families (this worker's; a ``worker`` label is not needed: one scrape, one worker)."""
        degraded = GaugeMetricFamily(
            "corral_cluster_degraded", "1 while the shared-state Redis is unreachable (local view in use)."
        )
        degraded.add_metric([], 1.0 if self.link.degraded else 0.0)
        yield degraded
        leader = GaugeMetricFamily("corral_cluster_leader", "1 while this worker holds the probe lease.")
        leader.add_metric([], 1.0 if self.lease.leading() else 0.0)
        yield leader
        errors = CounterMetricFamily(
            "corral_cluster_redis_errors", "Errors talking to the shared-state Redis."
        )
        errors.add_metric([], self.link.errors)
        yield errors
        refused = CounterMetricFamily(
            "corral_cluster_slot_refusals", "Slot requests refused because the fleet held max_parallel."
        )
        refused.add_metric([], self.slots.refused)
        yield refused
        received = CounterMetricFamily(
            "corral_cluster_messages_received", "Messages applied from other workers."
        )
        received.add_metric([], self.link.received)
        yield received

    def describe(self) -> list[Metric]:
        return []

    async def close(self) -> None:
        if self.changes is not None:
            self.changes.detach()
            await self.changes.drain()
        await self.slots.drain()
        await stop_tasks(self._tasks)
        self._tasks.clear()
        await self.lease.release()
        await self.link.run(lambda: self.link.redis.hdel(self.workers_key, self.me["id"]))
        await self.link.close()
