"""Fleet model management (admin scope): /api/pull, /api/delete and /api/copy fanned out.

Instances are chosen with ``?instance=a,b`` (or a body field ``instances``); by default every
Ollama instance corral manages (not Ollama Cloud, which cannot pull). Pull streams every
instance's progress lines merged, each tagged with ``"instance"``, then one summary line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from corral.errors import InvalidRequest, UpstreamError
from corral.gateway import Gateway
from corral.http.auth import Authenticator
from corral.http.openai_routes import read_json
from corral.http.request_ids import request_id
from corral.httpclient import TransportError
from corral.providers.ollama.provider import OllamaProvider, ndjson_batches
from corral.providers.upstream import error_detail
from corral.tasks import stop_tasks

NDJSON = "application/x-ndjson"
Event = tuple[str, dict[str, Any] | None, str | None, bool]  # instance, progress line, error, finished


def manageable(p: OllamaProvider) -> bool:
    return (urlsplit(p.cfg.base_url).hostname or "") not in ("ollama.com", "www.ollama.com")


class Management:
    def __init__(self, gateway: Callable[[web.Request], Gateway], auth: Authenticator, limit: int) -> None:
        self._gateway = gateway
        self._auth = auth
        self._limit = limit

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/api/pull", self.pull)
        app.router.add_delete("/api/delete", self.delete)
        app.router.add_post("/api/copy", self.copy)

    def _select(self, request: web.Request, body: dict[str, Any]) -> list[OllamaProvider]:
        gw = self._gateway(request)
        named = [n for v in request.query.getall("instance", []) for n in v.split(",") if n]
        if isinstance(body.get("instances"), list):
            named += [str(n) for n in body["instances"]]
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

    async def _body(self, request: web.Request) -> dict[str, Any]:
        request_id(request)
        self._auth.admin(request)
        _, body = await read_json(request, self._limit)
        return body

    async def pull(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        model = body.get("model") or body.get("name")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("model is required", param="model")
        targets = self._select(request, body)
        payload = {k: v for k, v in body.items() if k != "instances"} | {"model": model, "stream": True}
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=256)
        tasks = [asyncio.create_task(_pull_one(p, payload, queue)) for p in targets]
        stream = body.get("stream", True) is not False
        response: web.StreamResponse | None = None
        if stream:
            response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-cache"})
            await response.prepare(request)
        failures: dict[str, str] = {}
        finished = 0
        try:
            while finished < len(tasks):
                name, line, error, done = await queue.get()
                if done:
                    finished += 1
                    if error is not None:
                        failures[name] = error
                elif line is not None and response is not None:
                    await response.write(orjson.dumps({**line, "instance": name}) + b"\n")
        finally:
            await stop_tasks(tasks)
            gw = self._gateway(request)
            for p in targets:
                gw.refresh_soon(p.name)
        summary: dict[str, Any] = {"status": "success", "instances": [p.name for p in targets]}
        if failures:
            summary = {
                "error": "pull failed on " + "; ".join(f"{n}: {e}" for n, e in failures.items()),
                "instances": [p.name for p in targets],
            }
        if response is None:
            return web.Response(
                status=500 if failures else 200, body=orjson.dumps(summary), content_type="application/json"
            )
        await response.write(orjson.dumps(summary) + b"\n")
        await response.write_eof()
        return response

    async def delete(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        model = body.get("model") or body.get("name")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("model is required", param="model")
        return await self._fan_out(
            request, "DELETE", "/api/delete", {"model": model}, body, f'model "{model}" not found'
        )

    async def copy(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        source, destination = body.get("source"), body.get("destination")
        if not isinstance(source, str) or not isinstance(destination, str) or not source or not destination:
            raise InvalidRequest("source and destination are required", param="source")
        payload = {"source": source, "destination": destination}
        return await self._fan_out(request, "POST", "/api/copy", payload, body, f'model "{source}" not found')

    async def _fan_out(
        self,
        request: web.Request,
        method: str,
        path: str,
        payload: dict[str, Any],
        body: dict[str, Any],
        missing: str,
    ) -> web.Response:
        targets = self._select(request, body)
        results = await asyncio.gather(*(_call_one(p, method, path, payload) for p in targets))
        done = [p.name for p, (status, _) in zip(targets, results, strict=True) if status == 200]
        errors = {
            p.name: d for p, (status, d) in zip(targets, results, strict=True) if status not in (200, 404)
        }
        gw = self._gateway(request)
        for p in targets:
            gw.refresh_soon(p.name)
        if errors:
            text = "; ".join(f"{n}: {e}" for n, e in errors.items())
            return web.Response(
                status=502,
                body=orjson.dumps({"error": text, "done_on": done}),
                content_type="application/json",
            )
        if not done:
            return web.Response(
                status=404, body=orjson.dumps({"error": missing}), content_type="application/json"
            )
        return web.Response(
            body=orjson.dumps({"status": "success", "instances": done}), content_type="application/json"
        )


async def _pull_one(p: OllamaProvider, payload: dict[str, Any], queue: asyncio.Queue[Event]) -> None:
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
                        await queue.put((p.name, line, None, False))
        finally:
            resp.release()
    except UpstreamError as exc:
        error = exc.message
    except TransportError as exc:
        error = f"the connection broke during the pull ({exc})"
    except (orjson.JSONDecodeError, ValueError):
        error = "sent progress corral cannot read"
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
