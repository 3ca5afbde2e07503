"""Running one call at the edge, for both surfaces: admit it (limits), hand it to the engine,
write the reply, and account for it once, when it is really over (a stream's end included)."""

from __future__ import annotations

import asyncio
import time

from corral.core.call import Call
from corral.core.streams import Relay
from corral.errors import ClientClosed, CorralError
from corral.http.exchange import Exchange
from corral.http.keepalive import Pinger
from corral.http.parts import Parts
from corral.keys.principal import Principal
from corral.routing.affinity import session_of


async def run_call(
    ex: Exchange,
    parts: Parts,
    call: Call,
    who: Principal,
    started: float,
    power: str | None = None,
    pinger: Pinger | None = None,  # a stream kept alive while its upstream is slow to start
) -> None:
    call.session = session_of(ex.headers)  # for session affinity
    engine = parts.gateway.engine
    acct = parts.accountant
    if acct is None:
        pending = engine.handle(call, power, who.tier)
        await ex.write(await (pinger.answer(pending) if pinger is not None else pending))
        return
    ticket = await acct.admit(who, call, started)
    ticket.engine_started = time.monotonic()
    try:
        pending = engine.handle(call, power, who.tier)
        reply = await (pinger.answer(pending) if pinger is not None else pending)
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
