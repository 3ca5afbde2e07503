"""The parts both listeners serve from, and their lifecycle: corral's own, not a web framework's.

``Parts`` holds what the app factory builds at once (the config, this worker's identity, the
request-body budget both planes count in, the key-guess throttle) and what ``running()``
starts inside the event loop: the control plane (store, gateway keys), the gateway (upstream
clients, catalog, discovery), the link to other replicas through Redis, and accounting (the
accountant, metrics, the usage writer, the budget seeder).

The data plane's routes (served by ``corral.edge``) and the control plane's aiohttp application
are each given this one object when they are built, and read it directly; neither plane reads
the other. ``running()`` starts the parts in order and stops them in reverse, on an
``AsyncExitStack``, so a part that started is stopped even when a later one fails to start.
``corral.server.Listener`` enters it before either listener opens and leaves it after both
have drained: the control plane stops applying changes, usage is flushed, the gateway's
upstream pools close, and the store closes last (the usage flush writes to it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from corral.accounting.accountant import Accountant
from corral.accounting.budgets import BudgetSeeder
from corral.config.schema import Config
from corral.control.plane import WATCH_INTERVAL, ControlPlane
from corral.gateway import Gateway, SlotShare
from corral.http.auth import Authenticator
from corral.http.bodies import BodyBudget
from corral.http.guesses import GuessThrottle
from corral.http.observability import accounting
from corral.identity import WorkerIdentity
from corral.metrics import Metrics
from corral.metrics.fleet import FleetMetrics
from corral.usage.catalog_sync import CatalogSync


class NotStarted(RuntimeError):
    """A part that exists only while ``Parts.running()`` is entered was asked for outside it."""

    def __init__(self, part: str) -> None:
        super().__init__(
            f"{part} runs only while the app's parts do: enter `async with app.running()` (as "
            "corral.server.Listener does) before serving the routes, and stop serving before it exits."
        )


class Parts:
    """What the planes share. ``gateway`` and ``metrics`` exist while ``running()`` is entered;
    ``control`` is None without a data directory, ``accountant`` None until started."""

    __slots__ = (
        "_auth", "_gateway", "_given", "_home", "_metrics", "accountant", "body_budget", "budgets",
        "catalog_sync", "config", "control", "env", "fleet_metrics", "identity", "throttle",
    )  # fmt: skip

    def __init__(
        self,
        config: Config,
        auth: Authenticator,
        *,
        home: Path | None = None,
        env: Mapping[str, str] | None = None,
        gateway: Gateway | None = None,
    ) -> None:
        self.config = config
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.identity = WorkerIdentity.from_env(self.env)  # this worker: host, pid, index
        self.body_budget = BodyBudget(config.server.max_buffered_bytes)  # both planes' bodies together
        self.throttle = GuessThrottle()  # wrong keys per address, on every control-plane route
        self.control: ControlPlane | None = None
        self.accountant: Accountant | None = None
        self.budgets: BudgetSeeder | None = None
        self.fleet_metrics: FleetMetrics | None = None  # one of several workers: /metrics shows all
        self.catalog_sync: CatalogSync | None = None  # with the control plane: the stored catalog
        self._auth = auth
        self._home = home
        self._given = gateway
        self._gateway: Gateway | None = None
        self._metrics: Metrics | None = None

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            raise NotStarted("the gateway")
        return self._gateway

    @property
    def metrics(self) -> Metrics:
        if self._metrics is None:
            raise NotStarted("metrics")
        return self._metrics

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Parts]:
        """Start every part; on exit flush usage and stop them, the last started first."""
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self._forget)  # run last: nothing is handed out once stopped
            config, env, me = self.config, self.env, self.identity
            plane = None
            effective = config
            if self._home is not None:
                plane = await ControlPlane.open(config, self._home, env)
                stack.push_async_callback(plane.close)
                self._auth.keys = plane.keys
                self.control = plane
                effective = await plane.effective()
            shared = config.redis_url or env.get("CORRAL_REDIS_URL")  # workers share state through it
            split = SlotShare() if shared else SlotShare(me.index, me.workers)  # shared: in Redis
            gw = self._given or Gateway.create(effective, slots=split)
            stack.push_async_callback(gw.close)
            self._gateway = gw
            cluster = None
            if shared:
                from corral.cluster.node import Cluster  # redis is loaded only when used

                prefix = env.get("CORRAL_REDIS_PREFIX", "corral:")  # as the limiter's
                cluster = Cluster.open(shared, prefix, me, env, gw, plane)
                stack.push_async_callback(cluster.close)
                gw.share_pins(shared, prefix)  # session affinity's pins, under <prefix>:affinity:
                await cluster.start()
            await gw.start()
            if plane is not None:
                # without Redis, other workers' and replicas' admin changes are seen in the audit log
                alone = me.workers == 1 and plane.store.dialect == "sqlite"
                plane.start(gw, watch=None if shared or alone else WATCH_INTERVAL)
                stack.push_async_callback(plane.stop)  # no config change while the rest stops
            acct = await stack.enter_async_context(accounting(config, env, gw, plane, self._home))
            self.accountant = acct.accountant
            self._metrics = acct.metrics
            self.budgets = acct.budgets
            self.fleet_metrics = acct.fleet
            if cluster is not None:
                acct.metrics.registry.register(cluster)
            if plane is not None:  # prices and listings from the stored catalog, kept fresh
                sync = CatalogSync(plane.store.catalog, acct.accountant.prices)
                self.catalog_sync = await stack.enter_async_context(sync.running())
            yield self

    def _forget(self) -> None:
        self.control = None
        self.accountant = None
        self.budgets = None
        self.fleet_metrics = None
        self.catalog_sync = None
        self._gateway = None
        self._metrics = None


__all__ = ["NotStarted", "Parts"]
