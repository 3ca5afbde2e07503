"""The translation goldens, run through corral's surface and upstream adapters.

Every case in ``tests/agents/goldens`` goes client API -> conversation model -> upstream API
(requests) or back (answers, streams), with the adapters of the ``/v1/messages`` and
``/v1/responses`` surfaces and of the ``anthropic`` provider type. Written before those
adapters (issue #15, phase 1): until ``corral.conversation.anthropic`` and
``corral.conversation.responses`` exist this module is skipped, saying so.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Protocol

import pytest

from tests.agents import goldens

REASON = "needs the Messages/Responses surface adapters (phase 2)"
ADAPTERS = ("corral.conversation.anthropic", "corral.conversation.responses", "tests.agents.translate")


def _present(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent package is missing too
        return False


if not all(_present(name) for name in ADAPTERS):
    pytest.skip(REASON, allow_module_level=True)


class Translator(Protocol):
    """What phase 2 plugs in: one function per kind of case, over the real adapters.

    ``request`` returns the upstream body, or raises corral's ``InvalidRequest`` (its status,
    error type, ``param`` and message are what ``error`` cases check); ``answer`` returns the
    client's whole answer; ``stream`` feeds ``upstream_stream`` through the upstream adapter's
    stream reader and the surface's writer and returns the client's events, parsed.
    """

    def request(self, case: dict[str, Any]) -> dict[str, Any]: ...
    def answer(self, case: dict[str, Any]) -> dict[str, Any]: ...
    def stream(self, case: dict[str, Any]) -> list[Any]: ...


def translator() -> Translator:
    from tests.agents import translate  # phase 2: wires the adapters to the case format

    return translate.Adapters()


CASES = goldens.cases()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden(case: dict[str, Any]) -> None:
    through = translator()
    subset = case.get("match") == "subset"
    if "error" in case:
        from corral.errors import CorralError

        with pytest.raises(CorralError) as refused:
            through.request(case)
        want = case["error"]
        assert refused.value.status == want["status"]
        assert refused.value.error_type == want["type"]
        if "param" in want:
            assert refused.value.param == want["param"]
        for word in want["contains"]:
            assert word in str(refused.value)
        return
    if case["kind"] == "request":
        actual: Any = through.request(case)
    elif case["kind"] == "answer":
        actual = through.answer(case)
    else:
        events = through.stream(case)
        normalize = {
            "anthropic_messages": goldens.messages_events,
            "openai_responses": goldens.responses_events,
            "openai_chat": goldens.chat_chunks,
        }[case["surface"]]
        actual = normalize(events)
    problem = goldens.mismatch(case["expected"], actual, subset)
    assert problem is None, f"{case['file']} {case['name']}: {problem}"
