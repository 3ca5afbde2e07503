"""The yardstick: a bare aiohttp forwarder, as small as a forwarder can be.

The core issue's targets were set against "a bare 40-line aiohttp forwarder" measured on the
same machine (about 5,000 req/s with 0.5 ms added). Machines, and a shared machine from one day
to the next, differ by more than corral's own cost, so the bench runs this forwarder in the same
run, on the same core, and reports corral against it.

It does the least a gateway must: read the body, POST it to the same path upstream through one
pooled session, and relay the answer (streamed chunk by chunk when the upstream streams). No
auth, no routing, no translation, no accounting.
"""

from __future__ import annotations

import argparse

import aiohttp
import uvloop
from aiohttp import web


def make_app(upstream: str) -> web.Application:
    app = web.Application()

    async def open_session(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(
            upstream, connector=aiohttp.TCPConnector(limit=0), auto_decompress=False
        )

    async def close_session(app: web.Application) -> None:
        await app["session"].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        session: aiohttp.ClientSession = request.app["session"]
        async with session.post(request.path, data=body, headers={"Content-Type": "application/json"}) as up:
            ctype = up.headers.get("Content-Type", "application/json")
            if "stream" not in ctype and "ndjson" not in ctype:
                return web.Response(status=up.status, body=await up.read(), content_type=ctype.split(";")[0])
            out = web.StreamResponse(status=up.status, headers={"Content-Type": ctype})
            await out.prepare(request)
            async for chunk in up.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/healthz", healthz)
    app.router.add_post("/{tail:.*}", forward)
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:18081")
    args = parser.parse_args()
    uvloop.install()
    web.run_app(make_app(args.upstream), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
