"""GET /metrics (Prometheus text format) and the accounting parts built at start.

With the control plane, ``accounting`` also starts the usage writer and the budget seeder
(``corral.accounting.budgets``: the current budget windows' spend, read from the usage table in
the background, so a restart does not reset budgets).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from aiohttp import web
from aiohttp.typedefs import Handler

from corral.accounting.accountant import Accountant
from corral.accounting.budgets import BudgetSeeder
from corral.config.schema import Config
from corral.control.plane import SYNC_INTERVAL, ControlPlane
from corral.gateway import Gateway
from corral.http.auth import Authenticator
from corral.identity import WorkerIdentity
from corral.limits import make_limiter
from corral.metrics import Metrics
from corral.metrics.fleet import FleetMetrics
from corral.tasks import stop_tasks
from corral.usage.prices import PriceTable
from corral.usage.sink import StoreSink
from corral.usage.writer import UsageWriter

if TYPE_CHECKING:
    from corral.http.parts import Parts

SPILL_FILE = "usage-spill.jsonl"


def spill_name(me: WorkerIdentity) -> str:
    """The spill file of this worker: one per worker index, so workers never share one and a
    restarted worker replays what its predecessor left (worker 0 keeps the single process's)."""
    return SPILL_FILE if me.index == 0 else f"usage-spill.worker-{me.index}.jsonl"


class Accounting(NamedTuple):
    accountant: Accountant
    metrics: Metrics
    budgets: BudgetSeeder | None  # None without the control plane (no usage table to read)
    fleet: FleetMetrics | None = None  # one of several workers: /metrics shows them all


@contextlib.asynccontextmanager
async def accounting(
    config: Config, env: Mapping[str, str], gateway: Gateway, plane: ControlPlane | None, home: Path | None
) -> AsyncIterator[Accounting]:
    """Build metrics, limits, the usage writer and the budget seeder; on exit flush usage and
    close them."""
    metrics = Metrics()
    prefix = env.get("CORRAL_REDIS_PREFIX", "corral:")  # replicas that share limits share the prefix
    me = WorkerIdentity.from_env(env)
    limiter = make_limiter(config.redis_url or env.get("CORRAL_REDIS_URL"), prefix=prefix, workers=me.workers)
    writer = None
    sink = None
    budgets = None
    if plane is not None and home is not None:
        sink = StoreSink(plane.store.engine)
        writer = UsageWriter(sink, home / spill_name(me))
    if plane is not None:
        budgets = BudgetSeeder(
            limiter,
            plane.store.engine,
            plane.keys.records,
            config.user_limits,
            spill_drained=writer.spill_drained if writer is not None else None,
        )

    def provider_type(name: str) -> str | None:
        """The provider's type, from its deployment state (swapped with the config)."""
        state = gateway.fleet.states.get(name)
        return state.type if state is not None else None

    acct = Accountant(
        writer=writer,
        metrics=metrics,
        limiter=limiter,
        prices=PriceTable.from_config(config.prices),
        provider_type=provider_type,
        user_limits=config.user_limits,
    )

    def refresh() -> None:
        for state in gateway.fleet.states.values():
            metrics.set_deployment_state(state.name, state.status())
        if writer is not None:
            st = writer.stats
            metrics.set_usage_writer(
                queue_depth=st.queue_depth,
                dropped=st.dropped,
                spilled=st.spilled,
                written=st.written,
                replayed=st.replayed,
                rejected=st.rejected,
                sink_errors=st.sink_errors,
            )
        ls = limiter.stats
        metrics.set_limiter(rejected=ls.rejected, fail_open=ls.fail_open, errors=ls.errors)
        if gateway.engine.affinity is not None:
            a = gateway.engine.affinity.stats
            metrics.set_affinity(
                hits=a.hits, misses=a.misses, repins=a.repins, spills=a.spills, shared_errors=a.shared_errors
            )

    metrics.on_render(refresh)
    tasks: list[asyncio.Task[None]] = []
    try:
        if writer is not None:
            tasks.append(asyncio.create_task(writer.run(), name="usage-writer"))
        if budgets is not None and plane is not None:
            plane.store.keys.subscribe(budgets.wake)
            tasks.append(asyncio.create_task(budgets.run(SYNC_INTERVAL), name="budget-seeder"))
        fleet = None
        if me.workers > 1 and me.run_dir is not None:
            fleet = FleetMetrics(metrics, me.run_dir, me.index, me.workers)
            tasks.append(asyncio.create_task(fleet.run(), name="metrics-snapshot"))
        yield Accounting(acct, metrics, budgets, fleet)
    finally:
        if fleet is not None:
            fleet.remove()
        if budgets is not None and plane is not None:
            plane.store.keys.unsubscribe(budgets.wake)
        await acct.drain()
        if writer is not None:
            await writer.close()
        await stop_tasks(tasks)
        if sink is not None:
            sink.close()  # after the writer's last batch
        await limiter.close()


def metrics_route(auth: Authenticator, parts: Parts, protected: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        if protected:
            auth.admin(request)
        fleet = parts.fleet_metrics
        metrics: Metrics | FleetMetrics = parts.metrics if fleet is None else fleet
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})

    return handler
