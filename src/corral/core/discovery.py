"""Background discovery: ask each provider which models it serves and update the catalog.

Runs off the request path on an interval. A provider that fails keeps its last known
catalog; its error is kept (without secrets) for /readyz and logs. A provider that ``skip``
names (its requests in flight make progress, and a listing could disturb them) is not asked
then and keeps its last catalog. What a provider may list is bounded: its answer by
``upstream.LISTING_BYTES`` (the provider reads it), the models in it by ``MAX_MODELS``.

Discovery also learns what each model can do (``routing.capabilities.ModelFacts``): from the
listing (Ollama's ``/api/tags`` has ``capabilities``; vLLM's ``/v1/models`` has
``max_model_len``) and, for Ollama-type providers (Ollama Cloud too), from ``/api/show``: the
capabilities and ``model_info["<arch>.context_length"]``. A model is shown once per digest (a
model pulled again is shown again), ``SHOW_AT_ONCE`` at a time, each within the discovery
timeout, at most ``SHOW_PER_ROUND`` per provider and round (the rest in the next rounds); a
failed show is not asked again for ``SHOW_RETRY`` seconds. All of it off the request path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from corral.conversation.call import ModelInfo
from corral.errors import CorralError
from corral.providers.base import Provider
from corral.providers.ollama.provider import OllamaProvider
from corral.routing.capabilities import ModelFacts
from corral.routing.catalog import Catalog

log = logging.getLogger("corral.discovery")
MAX_MODELS = 10_000  # per provider: a hostile or broken upstream cannot fill the catalog
SHOW_AT_ONCE = 4  # /api/show asks in flight per provider
SHOW_PER_ROUND = 64  # models shown per provider and discovery round
SHOW_RETRY = 300.0  # seconds before a failed show is asked again
SHOW_BYTES = 4 * 1024 * 1024  # the most of one /api/show answer read
MAX_SHOWN = 100_000  # (provider, model, digest) remembered


@dataclass(slots=True)
class ProviderStatus:
    checked_at: float | None = None
    ok: bool = False
    error: str | None = None
    models: int = 0


class Discovery:
    def __init__(
        self,
        catalog: Catalog,
        providers: Mapping[str, Provider],
        static: Mapping[str, tuple[str, ...] | None],
        *,
        interval: float,
        timeout: float,
        skip: Callable[[str], bool] | None = None,
        facts: ModelFacts | None = None,
    ) -> None:
        self._catalog = catalog
        self._providers = providers
        self._static = static
        self._interval = interval
        self._timeout = timeout
        self._skip = skip
        self.status: dict[str, ProviderStatus] = {name: ProviderStatus() for name in providers}
        self.facts = facts
        self._shown: dict[tuple[str, str, str], float] = {}  # -> when shown (0: failed at that time)
        self.first_round = asyncio.Event()
        # with corral.cluster: only the probe-lease holder asks the upstreams, then publishes
        self.leading: Callable[[], bool] | None = None
        self.on_round: Callable[[], Awaitable[None]] | None = None

    async def refresh_all(self) -> None:
        await asyncio.gather(*(self.refresh(name) for name in self._providers))
        self.first_round.set()

    async def refresh(self, name: str) -> None:
        status = self.status[name]
        static = self._static.get(name)
        if static is not None:
            models = [ModelInfo(id=m, owned_by=name) for m in static]
            self._catalog.update(name, models)
            status.checked_at, status.ok, status.error, status.models = time.time(), True, None, len(models)
            return
        if self._skip is not None and self._skip(name):
            return  # busy and progressing: keep the last catalog
        try:
            async with asyncio.timeout(self._timeout):
                models = await self._providers[name].list_models()
        except CorralError as exc:
            self._failed(name, exc.message)
        except TimeoutError:
            self._failed(name, f"Upstream '{name}' did not list its models within {self._timeout:g} s")
        else:
            if len(models) > MAX_MODELS:
                self._failed(
                    name,
                    f"Upstream '{name}' listed {len(models)} models; corral keeps at most {MAX_MODELS} "
                    "per provider. List the ones to serve under providers[].models.",
                )
                return
            self._catalog.update(name, models)
            status.checked_at, status.ok, status.error, status.models = time.time(), True, None, len(models)
            await self._learn(name, models)

    async def _learn(self, name: str, models: list[ModelInfo]) -> None:
        """What the listed models can do: from the listing, then /api/show for new digests."""
        facts = self.facts
        if facts is None:
            return
        for info in models:
            caps = info.details.get("capabilities")
            ctx = info.details.get("max_model_len") or info.details.get("context_length")
            facts.learn(
                name,
                info.id,
                [str(c) for c in caps] if isinstance(caps, list) else None,
                ctx if isinstance(ctx, int) and not isinstance(ctx, bool) and ctx > 0 else None,
            )
        provider = self._providers.get(name)
        if not isinstance(provider, OllamaProvider):
            return
        now = time.monotonic()
        todo = []
        for info in models:
            key = (name, info.id, str(info.details.get("digest", "")))
            when = self._shown.get(key)
            if when is None or (when < 0 and now + when >= SHOW_RETRY):
                todo.append(key)
            if len(todo) >= SHOW_PER_ROUND:
                break
        gate = asyncio.Semaphore(SHOW_AT_ONCE)
        await asyncio.gather(*(self._show(provider, key, gate, facts) for key in todo))

    async def _show(
        self, provider: OllamaProvider, key: tuple[str, str, str], gate: asyncio.Semaphore, facts: ModelFacts
    ) -> None:
        name, model, _ = key
        data: Any = None
        async with gate:
            try:
                async with asyncio.timeout(self._timeout):
                    resp = await provider.manage("POST", provider.cfg.path("show"), {"model": model})
                    try:
                        raw = await resp.read(SHOW_BYTES)
                        ok = resp.status == 200
                    finally:
                        resp.release()
                data = orjson.loads(raw) if ok else None
            except Exception as exc:  # an instance that cannot say keeps what its listing said
                log.debug("show %s on %s failed: %s", model, name, exc)
        if len(self._shown) >= MAX_SHOWN:
            self._shown.pop(next(iter(self._shown)))
        if not isinstance(data, dict):
            self._shown[key] = -time.monotonic()  # failed then: asked again after SHOW_RETRY
            return
        self._shown[key] = time.monotonic()
        caps = data.get("capabilities")
        facts.learn(name, model, [str(c) for c in caps] if isinstance(caps, list) else None, _context(data))

    def _failed(self, name: str, message: str) -> None:
        status = self.status[name]
        if status.ok or status.error != message:
            log.warning("discovery failed: %s", message)
        status.checked_at, status.ok, status.error = time.time(), False, message

    async def run(self) -> None:
        while True:
            try:
                if self.leading is None or self.leading():
                    await self.refresh_all()
                    if self.on_round is not None:
                        await self.on_round()
            except Exception:  # a bug must not stop discovery for good
                log.exception("discovery round failed")
            await asyncio.sleep(self._interval)


def _context(show: dict[str, Any]) -> int | None:
    """The model's context length from /api/show: ``model_info["<arch>.context_length"]``."""
    info = show.get("model_info")
    if not isinstance(info, dict):
        return None
    arch = info.get("general.architecture")
    value = info.get(f"{arch}.context_length") if isinstance(arch, str) else None
    if value is None:
        value = next((v for k, v in info.items() if str(k).endswith(".context_length")), None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
