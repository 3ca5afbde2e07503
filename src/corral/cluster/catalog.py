"""The discovered catalog shared by the lease holder: what each provider serves, once per fleet.

After each discovery round the lease holder publishes every provider's model list (and its
discovery status) and stores it in ``<prefix>:cluster:catalog``; the other workers, which do
not ask the upstreams themselves, apply it to their catalog and discovery status (and count
their first round as done, for ``/readyz``), and learn what it learned of each model (its
capabilities and context length, ``routing.capabilities.ModelFacts``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import orjson

from corral.cluster.link import RedisLink
from corral.conversation.call import ModelInfo

if TYPE_CHECKING:
    from corral.gateway import Gateway


class CatalogShare:
    def __init__(self, link: RedisLink, gateway: Callable[[], Gateway]) -> None:
        self._link = link
        self._gateway = gateway
        self.hash = link.key("catalog")
        self.applied = 0
        link.on("c", self._received)

    def entries(self) -> dict[str, dict[str, Any]]:
        gw = self._gateway()
        out: dict[str, dict[str, Any]] = {}
        for name, status in gw.discovery.status.items():
            if status.checked_at is None:
                continue
            out[name] = {
                "d": name,
                "at": status.checked_at,
                "ok": status.ok,
                "err": status.error,
                "m": [asdict(m) for m in gw.catalog.models_of(name)],
                "f": self._facts(gw, name),
            }
        return out

    @staticmethod
    def _facts(gw: Gateway, provider: str) -> dict[str, list[Any]]:
        fit = gw.engine.fit
        if fit is None:
            return {}
        return {
            model: [sorted(f.capabilities) if f.capabilities is not None else None, f.context_length]
            for model, f in fit.facts.learned_of(provider).items()
        }

    async def publish(self) -> None:
        entries = self.entries()
        if not entries:
            return

        async def send() -> None:
            async with self._link.redis.pipeline(transaction=False) as pipe:
                pipe.publish(self._link.channel, self._link.message("c", c=list(entries.values())))
                pipe.hset(self.hash, mapping={n: orjson.dumps(e) for n, e in entries.items()})
                pipe.expire(self.hash, 86400)
                await pipe.execute()

        await self._link.run(send)

    def _received(self, msg: dict[str, Any]) -> None:
        entries = msg.get("c")
        if isinstance(entries, list):
            self.apply([e for e in entries if isinstance(e, dict)])

    def apply(self, entries: list[dict[str, Any]]) -> None:
        gw = self._gateway()
        for entry in entries:
            name = str(entry.get("d"))
            status = gw.discovery.status.get(name)
            if status is None or not isinstance(entry.get("m"), list):
                continue
            if status.checked_at is not None and status.checked_at > float(entry.get("at") or 0):
                continue  # ours is newer (e.g. a refresh after a missing model)
            models = [ModelInfo(**m) for m in entry["m"] if isinstance(m, dict) and "id" in m]
            gw.catalog.update(name, models)
            facts, fit = entry.get("f"), gw.engine.fit
            if isinstance(facts, dict) and fit is not None:
                for model, learned in facts.items():
                    if isinstance(learned, list) and len(learned) == 2:
                        caps, context = learned
                        caps = [str(c) for c in caps] if isinstance(caps, list) else None
                        fit.facts.learn(name, model, caps, context if isinstance(context, int) else None)
            status.checked_at = float(entry.get("at") or time.time())
            status.ok, status.error, status.models = bool(entry.get("ok")), entry.get("err"), len(models)
            self.applied += 1
        if entries:
            gw.discovery.first_round.set()

    async def load(self) -> None:
        stored = await self._link.run(lambda: self._link.redis.hgetall(self.hash))
        entries = []
        for raw in (stored or {}).values():
            try:
                entry = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        if entries:
            self.apply(entries)
