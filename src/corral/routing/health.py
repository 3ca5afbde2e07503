"""Active health checks: probe every deployment on an interval, off the request path.

Probes never load a model (Ollama: /api/version and /api/ps; OpenAI-type: the health path,
/models by default). A passing probe brings an ejected deployment back, a failing one counts
toward ejection, 401/403 marks it misconfigured. /api/ps feeds warm-aware routing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from corral.config.schema import RouterConfig
from corral.providers.base import Provider
from corral.routing.state import DeploymentState

log = logging.getLogger("corral.health")


class HealthMonitor:
    def __init__(
        self, providers: Mapping[str, Provider], states: Mapping[str, DeploymentState], cfg: RouterConfig
    ) -> None:
        self._providers = providers
        self._states = states
        self._cfg = cfg

    async def check(self, name: str) -> None:
        state = self._states[name]
        try:
            async with asyncio.timeout(self._cfg.health_timeout):
                probe = await self._providers[name].probe()
        except TimeoutError:
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
                await self.check_all()
            except Exception:  # a bug must not stop health checking for good
                log.exception("health round failed")
            await asyncio.sleep(self._cfg.health_interval)
