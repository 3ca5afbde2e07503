"""What the console's Models page shows beyond ``model_rows``: for each discovered model, its
size and quantization, where it is loaded right now (and until when, at which context), its
price, and, for Ollama models, the context length and capabilities from ``/api/show``.

Ollama's model list (``/api/tags``) has no context length, so ``ModelDetails`` asks each
instance's ``/api/show`` once per model digest (a few at a time, each bounded by a timeout)
and remembers the answer; a model that is pulled again under a new digest is asked again.
The memory is bounded; a failed ask leaves the field empty and is retried on a later listing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson

from corral.gateway import Gateway
from corral.http.admin.models import capabilities, context_length
from corral.http.serving import ACCOUNTANT
from corral.providers.ollama.provider import OllamaProvider

SHOW_TIMEOUT = 3.0
AT_ONCE = 8
MAX_REMEMBERED = 10_000

Show = tuple[int | None, list[str]]  # context length, capabilities


class ModelDetails:
    def __init__(self) -> None:
        self._known: dict[tuple[str, str, str], Show] = {}

    async def add_to(self, app: Mapping[Any, Any], gateway: Gateway, rows: list[dict[str, Any]]) -> None:
        """Fill in the extra fields of the discovered rows of ``rows``, in place."""
        infos = {
            (entry.name, info.id): info.details
            for entry in gateway.catalog.providers.values()
            for info in gateway.catalog.models_of(entry.name)
        }
        acct = app.get(ACCOUNTANT)
        missing: list[tuple[dict[str, Any], OllamaProvider, tuple[str, str, str]]] = []
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
                if known is None:
                    missing.append((row, client, key))
                else:
                    _apply(row, known)
        if missing:
            gate = asyncio.Semaphore(AT_ONCE)
            found = await asyncio.gather(*(self._show(gate, client, key[1]) for _, client, key in missing))
            for (row, _, key), show in zip(missing, found, strict=True):
                if show is None:
                    continue
                if len(self._known) >= MAX_REMEMBERED:
                    self._known.clear()
                self._known[key] = show
                _apply(row, show)

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
