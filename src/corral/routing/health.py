"""Active health checks: probe every deployment on an interval, off the request path.

Probes never load a model (Ollama: /api/version and /api/ps; OpenAI-type: the health path,
/models by default). A passing probe brings an ejected deployment back, a failing one counts
toward ejection, 401/403 marks it misconfigured. /api/ps feeds warm-aware routing.

A deployment whose requests in flight make progress (a chunk within the window, or a first
token still within its deadline) is evidently alive: passive health covers it, as in Envoy's
outlier detection, and an active check would only disturb it (llama-cpp-python's server aborts
the generation in progress when any other request arrives). So it is not probed then, and a
probe that timed out while its requests progressed does not count against it. Ollama is still
probed: it answers /api/version and /api/ps beside a generation, and /api/ps feeds warm routing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from corral.config.schema import RouterConfig
from corral.providers.base import Provider
from corral.routing.state import DeploymentState

log = logging.getLogger("corral.health")


PROBED_WHILE_BUSY = frozenset({"ollama"})  # types whose probes never disturb a generation


class HealthMonitor:
    def __init__(
        self,
        providers: Mapping[str, Provider],
        states: Mapping[str, DeploymentState],
        cfg: RouterConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._providers = providers
        self._states = states
        self._cfg = cfg
        self.clock = clock
        # silent longer than a probe interval (and a probe's timeout): stalled, probe it
        self._window = max(cfg.health_interval, cfg.health_timeout)
        # False while another worker of the fleet holds the probe lease and probes for all
        self.leading: Callable[[], bool] | None = None

    def leave_alone(self, name: str) -> bool:
        """True while ``name``'s requests in flight make progress and a request to it could
        disturb them: skip active checks and discovery then, keep their last results."""
        state = self._states.get(name)
        return (
            state is not None
            and state.type not in PROBED_WHILE_BUSY
            and state.progressing(self.clock(), self._window)
        )

    async def check(self, name: str) -> None:
        state = self._states[name]
        if self.leave_alone(name):
            return
        try:
            async with asyncio.timeout(self._cfg.health_timeout):
                probe = await self._providers[name].probe()
        except TimeoutError:
            if state.progressing(self.clock(), self._window):
                log.info("health check of %s timed out while its requests progress: not counted", name)
                return
            state.record_check(
                False, None, f"Upstream '{name}' health check timed out after {self._cfg.health_timeout:g} s."
            )
            state.record_failure(time.monotonic(), state.last_error or "", self._cfg, eject_now=True)
            return
        was = state.last_check_ok
        if probe.ok:
            state.record_check(True, probe.latency_ms, None)
            if probe.loaded is not None:
                state.loaded = dict(probe.loaded)
            state.running = probe.running or ()
            state.version = probe.version or state.version
        elif probe.misconfigured:
            state.record_check(False, probe.latency_ms, probe.error)
            state.record_misconfigured(probe.error or "misconfigured")
        else:
            state.record_check(False, probe.latency_ms, probe.error)
            state.record_failure(
                time.monotonic(), probe.error or "health check failed", self._cfg, eject_now=True
            )
        if was is not None and was != probe.ok:
            log.warning(
                "deployment %s is now %s%s", name, state.status(), f": {probe.error}" if probe.error else ""
            )

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(name) for name in self._providers))

    async def run(self) -> None:
        while True:
            try:
                if self.leading is None or self.leading():
                    await self.check_all()
            except Exception:  # a bug must not stop health checking for good
                log.exception("health round failed")
            await asyncio.sleep(self._cfg.health_interval)
