"""Running one call at the edge, for both surfaces: admit it (limits), hand it to the engine,
write the reply, and account for it once, when it is really over (a stream's end included)."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from corral.accounting.accountant import Accountant
from corral.core.call import Call
from corral.core.engine import Engine
from corral.core.streams import Relay
from corral.errors import ClientClosed, CorralError
from corral.http.exchange import Exchange
from corral.keys.principal import Principal

ACCOUNTANT = web.AppKey("accountant", Accountant)


async def run_call(
    ex: Exchange, engine: Engine, call: Call, who: Principal, started: float, power: str | None = None
) -> None:
    acct = ex.app.get(ACCOUNTANT)
    if acct is None:
        await ex.write(await engine.handle(call, power))
        return
    ticket = await acct.admit(who, call, started)
    ticket.engine_started = time.monotonic()
    try:
        reply = await engine.handle(call, power)
    except CorralError as exc:
        acct.finish(ticket, call, None, exc)
        raise
    except asyncio.CancelledError:  # the client hung up (or the server is stopping) mid-call
        acct.finish(
            ticket, call, None, ClientClosed("the client closed the connection", code="client_closed")
        )
        raise
    except BaseException:
        acct.finish(ticket, call, None, CorralError("internal error"))
        raise
    if isinstance(reply.chunks, Relay):

        def over() -> None:
            ticket.engine_done = time.monotonic()
            acct.finish(ticket, call, reply, None)

        reply.chunks.then(over)
        await ex.write(reply)
        return
    ticket.engine_done = time.monotonic()
    try:
        await ex.write(reply)
    finally:
        acct.finish(ticket, call, reply, None)
