"""Fleet model management (admin scope): /api/pull, /api/delete and /api/copy fanned out.

Instances are chosen with ``?instance=a,b`` (or a body field ``instances``); by default every
Ollama instance corral manages (not Ollama Cloud, which cannot pull). Pull streams every
instance's progress lines merged, each tagged with ``"instance"``, then one summary line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson

from corral.core.call import Reply, Surface
from corral.errors import InvalidRequest, UpstreamError
from corral.http.auth import Authenticator
from corral.http.exchange import Exchange
from corral.http.json_body import parse_json
from corral.http.parts import Parts
from corral.http.replies import json_reply
from corral.http.routes import Route, RouteTable
from corral.httpclient import TransportError
from corral.providers.ollama.provider import OllamaProvider, ndjson_batches
from corral.providers.upstream import error_detail
from corral.tasks import stop_tasks

NDJSON = "application/x-ndjson"
Event = tuple[str, bytes | None, str | None, bool]  # instance, progress line (tagged), error, finished
UNREADABLE = "sent progress corral cannot read"
log = logging.getLogger("corral.http")


def manageable(p: OllamaProvider) -> bool:
    return (urlsplit(p.cfg.base_url).hostname or "") not in ("ollama.com", "www.ollama.com")


class Management:
    def __init__(self, parts: Parts, auth: Authenticator, limit: int) -> None:
        self._parts = parts  # the gateway is taken from it on each request (built at startup)
        self._auth = auth
        self._limit = limit

    def add_to(self, table: RouteTable) -> None:
        table.add(["POST"], "/api/pull", Route(self.pull, access="admin", surface=Surface.OLLAMA))
        table.add(["DELETE"], "/api/delete", Route(self.delete, access="admin", surface=Surface.OLLAMA))
        table.add(["POST"], "/api/copy", Route(self.copy, access="admin", surface=Surface.OLLAMA))

    def _select(self, ex: Exchange, body: dict[str, Any]) -> list[OllamaProvider]:
        gw = self._parts.gateway
        named = [n for v in ex.query_values("instance") for n in v.split(",") if n]
        if "instances" in body:
            given = body["instances"]
            if not isinstance(given, list) or not all(isinstance(n, str) for n in given):
                raise InvalidRequest(
                    "'instances' must be a list of instance names (strings), e.g. [\"gpu-a\"]; "
                    "leave it out to use every Ollama instance.",
                    param="instances",
                )
            named += given
        ollamas = {n: p for n, p in gw.providers.items() if isinstance(p, OllamaProvider)}
        if named:
            unknown = [n for n in named if n not in ollamas]
            if unknown:
                raise InvalidRequest(
                    f"no Ollama instance named {', '.join(unknown)}; "
                    f"instances: {', '.join(sorted(ollamas)) or '(none)'}",
                    param="instance",
                )
            return [ollamas[n] for n in dict.fromkeys(named)]
        chosen = [p for p in ollamas.values() if manageable(p)]
        if not chosen:
            raise InvalidRequest("there is no Ollama instance to manage (Ollama Cloud cannot pull)")
        return chosen

    async def _body(self, ex: Exchange) -> dict[str, Any]:
        if ex.principal is None:  # the route is admin-only: the edge checked the key from the head
            self._auth.admin(ex)
        return parse_json(await ex.body(self._limit))

    async def pull(self, ex: Exchange) -> None:
        body = await self._body(ex)
        model = body.get("model") or body.get("name")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("model is required", param="model")
        targets = self._select(ex, body)
        payload = {k: v for k, v in body.items() if k != "instances"} | {"model": model, "stream": True}
        lines = self._pull(targets, payload)
        if body.get("stream", True) is not False:
            await ex.write(Reply(chunks=lines, content_type=NDJSON, headers={"Cache-Control": "no-cache"}))
            return
        last = b""
        async for line in lines:  # the summary is the last line
            last = line
        summary = orjson.loads(last)
        await ex.write(json_reply(summary, status=500 if "error" in summary else 200))

    async def _pull(self, targets: list[OllamaProvider], payload: dict[str, Any]) -> AsyncIterator[bytes]:
        """Every instance's progress lines, each tagged with its instance, then one summary line."""
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=256)
        tasks = [asyncio.create_task(_pull_one(p, payload, queue)) for p in targets]
        failures: dict[str, str] = {}
        finished = 0
        try:
            while finished < len(tasks):
                name, line, error, done = await queue.get()
                if done:
                    finished += 1
                    if error is not None:
                        failures[name] = error
                elif line is not None:
                    yield line
        finally:
            await stop_tasks(tasks)
            gw = self._parts.gateway
            for p in targets:
                gw.refresh_soon(p.name)
        summary: dict[str, Any] = {"status": "success", "instances": [p.name for p in targets]}
        if failures:
            summary = {
                "error": "pull failed on " + "; ".join(f"{n}: {e}" for n, e in failures.items()),
                "instances": [p.name for p in targets],
            }
        yield orjson.dumps(summary) + b"\n"

    async def delete(self, ex: Exchange) -> None:
        body = await self._body(ex)
        model = body.get("model") or body.get("name")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("model is required", param="model")
        await self._fan_out(ex, "DELETE", "/api/delete", {"model": model}, body, f'model "{model}" not found')

    async def copy(self, ex: Exchange) -> None:
        body = await self._body(ex)
        source, destination = body.get("source"), body.get("destination")
        if not isinstance(source, str) or not isinstance(destination, str) or not source or not destination:
            raise InvalidRequest("source and destination are required", param="source")
        payload = {"source": source, "destination": destination}
        await self._fan_out(ex, "POST", "/api/copy", payload, body, f'model "{source}" not found')

    async def _fan_out(
        self,
        ex: Exchange,
        method: str,
        path: str,
        payload: dict[str, Any],
        body: dict[str, Any],
        missing: str,
    ) -> None:
        targets = self._select(ex, body)
        results = await asyncio.gather(*(_call_one(p, method, path, payload) for p in targets))
        done = [p.name for p, (status, _) in zip(targets, results, strict=True) if status == 200]
        errors = {
            p.name: d for p, (status, d) in zip(targets, results, strict=True) if status not in (200, 404)
        }
        gw = self._parts.gateway
        for p in targets:
            gw.refresh_soon(p.name)
        if errors:
            text = "; ".join(f"{n}: {e}" for n, e in errors.items())
            await ex.write(json_reply({"error": text, "done_on": done}, status=502))
        elif not done:
            await ex.write(json_reply({"error": missing}, status=404))
        else:
            await ex.write(json_reply({"status": "success", "instances": done}))


async def _pull_one(p: OllamaProvider, payload: dict[str, Any], queue: asyncio.Queue[Event]) -> None:
    """One instance's pull, its progress lines onto ``queue`` (tagged, encoded), then its end:
    every way it can fail (any exception) is that instance's failure, never a success."""
    error: str | None = None
    try:
        resp = await p.manage("POST", "/api/pull", payload)
        try:
            if resp.status >= 400:
                error = f"HTTP {resp.status}: {error_detail(await resp.read(65536))}"
                return
            async for lines in ndjson_batches(resp.chunks()):
                for raw in lines:
                    line = orjson.loads(raw)
                    if isinstance(line, dict) and isinstance(line.get("error"), str):
                        error = line["error"]
                        return
                    if isinstance(line, dict):
                        try:  # e.g. nested deeper than orjson writes: unreadable progress
                            tagged = orjson.dumps({**line, "instance": p.name}) + b"\n"
                        except orjson.JSONEncodeError:
                            error = UNREADABLE
                            return
                        await queue.put((p.name, tagged, None, False))
        finally:
            resp.release()
    except UpstreamError as exc:
        error = exc.message
    except TransportError as exc:
        error = f"the connection broke during the pull ({exc})"
    except (orjson.JSONDecodeError, ValueError):
        error = UNREADABLE
    except orjson.JSONEncodeError:
        error = "corral could not forward the request: a value in it is nested too deeply to encode"
    except Exception as exc:
        log.exception("the pull on %s failed unexpectedly", p.name)
        error = f"corral could not run the pull ({type(exc).__name__}); its log has the details"
    finally:
        await queue.put((p.name, None, error, True))


async def _call_one(p: OllamaProvider, method: str, path: str, payload: dict[str, Any]) -> tuple[int, str]:
    try:
        resp = await p.manage(method, path, payload)
    except UpstreamError as exc:
        return 502, exc.message
    try:
        raw = await resp.read(65536)
        return resp.status, error_detail(raw) if resp.status != 200 else ""
    except TransportError as exc:
        return 502, f"the connection broke before the answer was complete ({exc})"
    finally:
        resp.release()
