"""The provider conformance suite over an in-memory upstream: every upstream type, called from
every surface, through the real engine, with exactly what the client and the engine must see.

Each case names the upstream's behaviour (``upstreams.Behaviour``) and checks three things: what
the client gets (``harness.Seen``: the text, tool calls, finish, whether the answer said it was
complete, the in-band error), what corral learned (``reply.outcome``: the error, the usage) and
what the deployment's state says afterwards (failures, busy, misconfigured, slot freed).
"""

from __future__ import annotations

import time

import pytest

from corral.conversation.call import Endpoint, Surface
from corral.conversation.request import ToolCall
from corral.errors import CorralError, UpstreamError, UpstreamRejected, UpstreamTimeout
from tests.providers.conformance.harness import ALIAS, Rig, build, call
from tests.providers.conformance.upstreams import Behaviour

TYPES = ("ollama", "openai")
SURFACES = (Surface.OPENAI, Surface.OLLAMA)
PAIRS = [pytest.param(t, s, id=f"{t}-upstream-{s.value}-client") for t in TYPES for s in SURFACES]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def assert_freed(rig: Rig) -> None:
    assert rig.state.in_flight == 0, "the deployment's slot was not given back"


# -- answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ptype", "surface"), PAIRS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_text(ptype: str, surface: Surface, stream: bool) -> None:
    rig = build(ptype, Behaviour(text="Hello from the model"))
    reply, seen = await call(rig, surface, Endpoint.CHAT, stream=stream)
    assert seen.status == 200 and seen.error is None
    assert seen.text == "Hello from the model"
    assert seen.complete
    assert seen.finish == "stop"
    assert reply.outcome.error is None
    assert reply.served is not None and reply.served.provider == "up" and reply.served.model == "m"
    assert rig.state.consecutive_failures == 0
    assert_freed(rig)


@pytest.mark.parametrize(("ptype", "surface"), PAIRS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_tool_calls(ptype: str, surface: Surface, stream: bool) -> None:
    call_ = ToolCall("get_weather", {"city": "Paris"}, "call_1", 0)
    rig = build(ptype, Behaviour(text="", tool_calls=[call_], finish="tool_calls"))
    tools = [WEATHER]
    _, seen = await call(rig, surface, Endpoint.CHAT, stream=stream, tools=tools)
    assert rig.sent["tools"] == tools  # the definitions reach the upstream unchanged
    assert seen.complete and seen.error is None
    (got,) = seen.tool_calls
    assert got["function"]["name"] == "get_weather"
    arguments = got["function"]["arguments"]
    if surface is Surface.OPENAI:
        assert seen.finish == "tool_calls"
        assert isinstance(arguments, str) and arguments.replace(" ", "") == '{"city":"Paris"}'
        assert got["id"] == "call_1"
    else:
        assert seen.finish == "stop"  # Ollama's done_reason
        assert arguments == {"city": "Paris"}


@pytest.mark.parametrize(("ptype", "surface"), PAIRS)
async def test_images_reach_the_upstream_in_its_own_form(ptype: str, surface: Surface) -> None:
    rig = build(ptype, Behaviour(text="a red dot"))
    if surface is Surface.OPENAI:
        parts = [
            {"type": "text", "text": "what is it?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        ]
        message = {"role": "user", "content": parts}
    else:
        message = {"role": "user", "content": "what is it?", "images": [PNG]}
    _, seen = await call(rig, surface, Endpoint.CHAT, stream=False, messages=[message])
    assert seen.text == "a red dot"
    sent = rig.sent["messages"][0]
    if ptype == "ollama":
        assert sent["images"] == [PNG] and sent["content"] == "what is it?"
    else:
        assert sent["content"][0] == {"type": "text", "text": "what is it?"}
        assert sent["content"][1]["image_url"]["url"] == f"data:image/png;base64,{PNG}"


@pytest.mark.parametrize(("ptype", "surface"), PAIRS)
async def test_reasoning_streams_to_the_client(ptype: str, surface: Surface) -> None:
    rig = build(ptype, Behaviour(reasoning="First I think", text="then I answer"))
    _, seen = await call(rig, surface, Endpoint.CHAT, stream=True)
    assert (seen.reasoning, seen.text) == ("First I think", "then I answer")
    assert seen.complete


@pytest.mark.parametrize(("ptype", "surface"), PAIRS)
async def test_embeddings(ptype: str, surface: Surface) -> None:
    rig = build(ptype, Behaviour(vectors=[[0.25, -0.5, 1.0], [1.0, 0.0, 0.5]]))
    _, seen = await call(rig, surface, Endpoint.EMBEDDING, stream=False)
    assert seen.vectors == [[0.25, -0.5, 1.0], [1.0, 0.0, 0.5]]
    assert_freed(rig)


# -- the upstream says no -----------------------------------------------------------------------


@pytest.mark.parametrize(("ptype", "surface"), PAIRS)
async def test_a_capability_refusal_is_named_on_the_error(ptype: str, surface: Surface) -> None:
    """The routing learns from ``UpstreamRejected.capability``; only a 400 saying so sets it."""
    rig = build(ptype, Behaviour(status=400, error='"m" does not support tools'))
    with pytest.raises(UpstreamRejected) as info:
        await call(rig, surface, Endpoint.CHAT, stream=False)
    assert info.value.capability == "tools"
    rig = build(ptype, Behaviour(status=400, error="no such thing"))
    with pytest.raises(UpstreamRejected) as other:
        await call(rig, surface, Endpoint.CHAT, stream=False)
    assert other.value.capability is None


@pytest.mark.parametrize(("ptype", "surface"), PAIRS)
@pytest.mark.parametrize(
    ("status", "client_status"), [(400, 400), (401, 502), (404, 404), (429, 429), (503, 503)]
)
async def test_error_statuses(ptype: str, surface: Surface, status: int, client_status: int) -> None:
    rig = build(ptype, Behaviour(status=status, error="no such thing"))
    with pytest.raises(UpstreamRejected) as info:
        await call(rig, surface, Endpoint.CHAT, stream=True)
    err = info.value
    assert (err.upstream_status, err.http_status) == (status, client_status)
    assert "Upstream 'up'" in err.message
    now = time.monotonic()
    state = rig.state
    assert bool(state.misconfigured) is (status == 401)
    assert state.is_busy(now) is (status in (429, 503))
    assert rig.refreshed == (["up"] if status == 404 else [])
    assert state.consecutive_failures == 0  # none of these says the deployment is down
    assert_freed(rig)


# -- the upstream fails -------------------------------------------------------------------------


@pytest.mark.parametrize(("ptype", "surface"), PAIRS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_hang_before_the_first_byte(ptype: str, surface: Surface, stream: bool) -> None:
    rig = build(ptype, Behaviour(fault="hang_before"))
    with pytest.raises(UpstreamTimeout) as info:
        await call(rig, surface, Endpoint.CHAT, stream=stream)
    assert info.value.http_status == 504
    assert rig.state.consecutive_failures == 1
    assert_freed(rig)


@pytest.mark.parametrize(("ptype", "surface"), PAIRS)
@pytest.mark.parametrize(("fault", "says"), [("stall", "timed out"), ("drop", "broke the connection")])
async def test_a_stream_that_fails_midway_ends_in_band(
    ptype: str, surface: Surface, fault: str, says: str
) -> None:
    rig = build(ptype, Behaviour(text="one two three four five six", fault=fault, after=2))  # type: ignore[arg-type]
    reply, seen = await call(rig, surface, Endpoint.CHAT, stream=True)
    assert seen.status == 200  # the head went out with the first token
    assert seen.text and seen.text != "one two three four five six"
    assert not seen.complete, "an interrupted answer reported as complete"
    assert seen.error is not None and says in seen.error and "incomplete" in seen.error
    assert reply.outcome.error is not None
    assert rig.state.consecutive_failures == 1
    assert_freed(rig)


@pytest.mark.parametrize(("ptype", "surface"), PAIRS)
async def test_a_whole_answer_that_stalls_is_a_timeout(ptype: str, surface: Surface) -> None:
    rig = build(ptype, Behaviour(text="one two three four", fault="stall", after=1))
    with pytest.raises(CorralError) as info:
        await call(rig, surface, Endpoint.CHAT, stream=False)
    assert info.value.http_status in (502, 504)
    assert rig.state.consecutive_failures == 1
    assert_freed(rig)


@pytest.mark.parametrize("surface", SURFACES, ids=["openai-client", "ollama-client"])
@pytest.mark.parametrize("fault", ["done_no_finish_drop", "done_no_finish", "done_then_drop"])
async def test_done_is_not_complete_until_the_body_ends_well(surface: Surface, fault: str) -> None:
    """llama-cpp-python interrupting a generation sends the role chunk, [DONE], and drops the
    connection: the client must see an error, and nothing before it that says complete. Passed
    through (an OpenAI client) the role chunk is already out: the error comes in-band. Through the
    model (an Ollama client) nothing was, so the engine may still fail over: the call raises."""
    rig = build("openai", Behaviour(fault=fault))  # type: ignore[arg-type]
    if surface is Surface.OLLAMA and fault != "done_then_drop":
        with pytest.raises(UpstreamError) as info:
            await call(rig, surface, Endpoint.CHAT, stream=True)
        assert info.value.code == "upstream_stream_interrupted" and "Upstream 'up'" in info.value.message
    else:
        reply, seen = await call(rig, surface, Endpoint.CHAT, stream=True)
        assert not seen.complete, f"reported complete: {seen.raw!r}"
        assert seen.error is not None
        assert reply.outcome.error is not None
    assert rig.state.consecutive_failures == 1
    assert_freed(rig)


@pytest.mark.parametrize(("ptype", "surface"), PAIRS)
async def test_a_client_that_leaves_cuts_the_upstream_off(ptype: str, surface: Surface) -> None:
    rig = build(ptype, Behaviour(text="one two three four five six"))
    from corral.conversation.call import Call
    from tests.providers.conformance.harness import body_for

    body = body_for(surface, Endpoint.CHAT, True)
    import orjson

    reply = await rig.engine.handle(Call(Endpoint.CHAT, body, orjson.dumps(body), ALIAS, True, "r", surface))
    assert reply.chunks is not None
    await anext(reply.chunks)  # the client got its first token, then hung up
    await reply.chunks.aclose()  # type: ignore[attr-defined]
    assert rig.pool is not None and rig.pool.answers[-1].closed  # the upstream stops generating
    assert rig.state.consecutive_failures == 0  # the deployment did nothing wrong
    assert_freed(rig)


# -- what corral learns ---------------------------------------------------------------------------


@pytest.mark.parametrize(("ptype", "surface"), PAIRS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_the_requested_model_name_is_echoed(ptype: str, surface: Surface, stream: bool) -> None:
    rig = build(ptype, Behaviour())
    _, seen = await call(rig, surface, Endpoint.CHAT, stream=stream)
    assert seen.model == ALIAS  # the upstream answered as "m"; x-corral-model says that


@pytest.mark.parametrize(("ptype", "surface"), PAIRS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_usage_is_the_upstreams(ptype: str, surface: Surface, stream: bool) -> None:
    rig = build(ptype, Behaviour(text="a b c d"))
    reply, _ = await call(rig, surface, Endpoint.CHAT, stream=stream)
    usage = reply.outcome.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.estimated) == (12, 4, False)  # type: ignore[union-attr]


# -- the demo provider: no upstream, so no faults -------------------------------------------------


@pytest.mark.parametrize("surface", SURFACES, ids=["openai-client", "ollama-client"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_demo_answers_every_surface(surface: Surface, stream: bool) -> None:
    rig = build("demo", Behaviour())
    _, seen = await call(rig, surface, Endpoint.CHAT, stream=stream, model="up/echo")
    assert seen.text == "Echo: Say hello"
    assert seen.complete and seen.error is None
    assert_freed(rig)
