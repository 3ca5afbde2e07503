"""What the console's Models page shows beyond ``model_rows``: for each discovered model, its
size and quantization, where it is loaded right now (and until when, at which context), its
price, and, for Ollama models, the context length and capabilities from ``/api/show``.

Ollama's model list (``/api/tags``) has no context length, so ``ModelDetails`` asks each
instance's ``/api/show`` once per model digest (a few at a time, each bounded by
``SHOW_TIMEOUT``) and remembers the answer; a model that is pulled again under a new digest is
asked again. The asks run in the background: a listing waits for them at most
``LISTING_WAIT``, shows what has arrived, and the rest fills in for a later listing, so a
hanging or slow instance never holds a listing up for longer. A failed ask (an error, a
timeout, an answer corral cannot read) is remembered too, and not asked again for
``RETRY_FAILED_AFTER``. Both memories are bounded (oldest first).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from corral.accounting.accountant import Accountant
from corral.gateway import Gateway
from corral.http.admin.models import capabilities, context_length
from corral.providers.ollama.provider import OllamaProvider

SHOW_TIMEOUT = 3.0  # seconds for one /api/show
LISTING_WAIT = 2.0  # seconds a listing waits for asks in flight
RETRY_FAILED_AFTER = 300.0  # seconds before a failed ask is made again
AT_ONCE = 8
MAX_REMEMBERED = 10_000

Show = tuple[int | None, list[str]]  # context length, capabilities
Key = tuple[str, str, str]  # provider, model, digest


class ModelDetails:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._known: OrderedDict[Key, Show] = OrderedDict()
        self._failed: OrderedDict[Key, float] = OrderedDict()  # when the ask failed
        self._asking: dict[Key, asyncio.Task[Show | None]] = {}
        self._gate: asyncio.Semaphore | None = None
        self._clock = clock

    async def add_to(self, acct: Accountant | None, gateway: Gateway, rows: list[dict[str, Any]]) -> None:
        """Fill in the extra fields of the discovered rows of ``rows``, in place."""
        infos = {
            (entry.name, info.id): info.details
            for entry in gateway.catalog.providers.values()
            for info in gateway.catalog.models_of(entry.name)
        }
        waiting: list[tuple[dict[str, Any], asyncio.Task[Show | None]]] = []
        now = self._clock()
        for row in rows:
            if row.get("type") != "discovered":
                continue
            provider, model = str(row["provider"]), str(row["model"])
            details = infos.get((provider, model), {})
            nested = details.get("details")
            inner: Mapping[str, Any] = nested if isinstance(nested, Mapping) else {}
            row["size"] = details.get("size") if isinstance(details.get("size"), int) else None
            row["quantization"] = inner.get("quantization_level")
            row["parameter_size"] = inner.get("parameter_size")
            row["family"] = inner.get("family")
            row.update(_loaded(gateway, provider, model))
            state = gateway.fleet.states.get(provider)
            ptype = state.type if state else None
            price = acct.prices.price_for(model, ptype, provider) if acct is not None else None
            row["price"] = None if price is None else {"input": price.input, "output": price.output}
            client = gateway.providers.get(provider)
            if isinstance(client, OllamaProvider):
                key = (provider, model, str(details.get("digest", "")))
                known = self._known.get(key)
                if known is not None:
                    _apply(row, known)
                elif not self._failed_lately(key, now):
                    waiting.append((row, self._ask(client, key)))
        if waiting:
            await asyncio.wait({task for _, task in waiting}, timeout=LISTING_WAIT)
            for row, task in waiting:
                show = task.result() if task.done() and not task.cancelled() else None
                if show is not None:
                    _apply(row, show)

    async def close(self) -> None:
        """Stop the asks in flight (the app is shutting down)."""
        tasks = list(self._asking.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _failed_lately(self, key: Key, now: float) -> bool:
        failed = self._failed.get(key)
        if failed is not None and now - failed >= RETRY_FAILED_AFTER:
            del self._failed[key]
            return False
        return failed is not None

    def _ask(self, client: OllamaProvider, key: Key) -> asyncio.Task[Show | None]:
        """The ask for ``key`` in flight, or a new one: one at a time per model, listings share it."""
        task = self._asking.get(key)
        if task is None:
            task = self._asking[key] = asyncio.create_task(self._fetch(client, key))
            task.add_done_callback(lambda _: self._asking.pop(key, None))
        return task

    async def _fetch(self, client: OllamaProvider, key: Key) -> Show | None:
        if self._gate is None:
            self._gate = asyncio.Semaphore(AT_ONCE)
        show = await self._show(self._gate, client, key[1])
        if show is None:
            _remember(self._failed, key, self._clock())
        else:
            _remember(self._known, key, show)
        return show

    @staticmethod
    async def _show(gate: asyncio.Semaphore, client: OllamaProvider, model: str) -> Show | None:
        async with gate:
            try:
                async with asyncio.timeout(SHOW_TIMEOUT):
                    resp = await client.manage("POST", client.cfg.path("show"), {"model": model})
                    try:
                        raw = await resp.read(4 * 1024 * 1024)
                        status = resp.status
                    finally:
                        resp.release()
            except Exception:  # an instance that cannot say is shown without the field
                return None
        if status != 200:
            return None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return (context_length(data), capabilities(data)) if isinstance(data, dict) else None


def _remember(memory: OrderedDict[Key, Any], key: Key, value: Any) -> None:
    memory.pop(key, None)
    while len(memory) >= MAX_REMEMBERED:
        memory.popitem(last=False)
    memory[key] = value


def _apply(row: dict[str, Any], show: Show) -> None:
    ctx, caps = show
    row["context_length"] = row.get("context_length") or ctx
    row["capabilities"] = row.get("capabilities") or caps


def _loaded(gateway: Gateway, provider: str, model: str) -> dict[str, Any]:
    state = gateway.fleet.states.get(provider)
    for entry in state.running if state is not None else ():
        if entry.get("name") == model or entry.get("model") == model:
            ctx = entry.get("context_length")
            return {
                "loaded": True,
                "loaded_until": entry.get("expires_at") if isinstance(entry.get("expires_at"), str) else None,
                "loaded_context": ctx if isinstance(ctx, int) else None,
            }
    return {"loaded": False, "loaded_until": None, "loaded_context": None}
