"""The upstream client's response parser against h11's, on generated answers.

The property: the upstream writes one answer to ``GET /first`` (a valid one or a mutation of
it, in random pieces, maybe after 1xx answers and before a tail of extra bytes), then keeps the
connection or closes it. Whatever h11 refuses, corral's client fails on (a ``TransportError``,
never a silently "successful" parse); what both accept has the same status, fields and body; and
the connection is reused for a second request exactly when h11 says it may be (and the upstream
kept it), the second answer always being the upstream's own (no desync).

Documented differences:

- ``STRICTER``: h11 accepts these and corral's client fails on them; allowed.
- ``REUSE``: the two disagree about keeping the connection, in the safe direction or because h11
  does not implement what corral does; allowed as described.
- ``KNOWN_FAULTS``: corral gets these wrong today, each pinned by a strict xfail in
  ``test_client_findings``. A key that names a mutation is not generated; every entry's
  signature filters out an answer that reaches the fault another way. Drop the entry once the
  fault is fixed.

Representation differences, normalised: fields by lower-case name with repeats joined by ", "
(``oracle.joined``), Transfer-Encoding in lower case (h11 lower-cases it), 1xx answers skipped
by both, trailers kept out of the fields by both. Empty lines before the status line are given
to h11 removed: llhttp skips them, h11 refuses them, and neither is wrong for a client (RFC 9112
§2.2 asks robustness of servers only); corral's leniency here cannot desync it, since it skips
only CR/LF before a status line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

from tests.conformance import oracle
from tests.conformance.harness import SECOND, Fetched, Script, Upstream
from tests.conformance.messages import Message
from tests.conformance.profiles import budget
from tests.conformance.response_strategies import RESPONSE_MUTATIONS, Answer, answer

STRICTER = {
    "dup-cl-same": "two equal Content-Length fields (h11 folds equal ones)",
    "cl-list": "'Content-Length: 5, 5'",
    "cl-te": "Content-Length with Transfer-Encoding (h11 lets chunked win): the smuggling vector",
    "obs-fold": "obs-fold (RFC 9112 §5.2 lets a client reject or replace it; h11 replaces)",
    "bare-lf": "a bare LF as a line end (RFC 9112 §2.2: MAY accept; h11 does)",
    "chunk-bare-lf": "a bare LF ending the last chunk or the chunked body",
    "ctl-value": "control bytes but HTAB in a value (RFC 9110 §5.5: invalid; h11 refuses only NUL)",
    "chunk-size-ws": "whitespace after a chunk size",
    "chunk-ext-odd": "chunk extensions with a space before the name, empty, or with controls/obs-text",
    "version-minor": "HTTP/1.2-1.9 (h11 takes any digit.digit)",
    "noise": "one byte of a field line replaced by any byte: only the safety direction is checked",
    "te-tab": "a tab after a Transfer-Encoding value: llhttp does not frame it chunked (h11 does), so "
    "the answer is refused rather than read with its chunk framing as the body",
}
REUSE = {
    "version-2.0": "an 'HTTP/2.0' status line: corral never reuses the connection, h11 would",
    "version-1.0-keep-alive": "HTTP/1.0 with Connection: keep-alive: corral may reuse it (RFC 7230 "
    "§A.1.2); h11 does not implement 1.0 keep-alive",
}


@dataclass(frozen=True)
class Fault:
    test: str
    hits: Callable[[bytes], bool]


# none today: the last ones (codings but chunked, a status under 100, a NUL in the reason,
# whitespace after a value, a cut chunked answer not in lower case) are fixed and kept in
# test_client_findings
KNOWN_FAULTS: dict[str, Fault] = {}
GENERATED = sorted(set(RESPONSE_MUTATIONS) - set(KNOWN_FAULTS))


def clear_of_known_faults(a: Answer) -> bool:
    return not any(fault.hits(a.oracle) for fault in KNOWN_FAULTS.values())


def check(a: Answer, keep: bool, expected: oracle.Response, got: Fetched) -> None:
    tags = a.tags
    if not expected.status:
        assert got.error is not None, (
            f"h11 refuses the answer ({expected.error}) but corral read status {got.status}, "
            f"fields {got.headers}, body {got.body!r}"
        )
    elif got.error is not None:
        why = tags & STRICTER.keys()
        assert why, f"corral failed ({got.error!r}) on an answer h11 reads, for no documented reason"
    else:
        assert got.status == expected.status, (got.status, expected.status)
        fields = dict(got.headers)
        if "transfer-encoding" in fields:
            fields["transfer-encoding"] = fields["transfer-encoding"].lower()
        assert fields == oracle.joined(expected.fields), f"fields: corral {fields} h11 {expected.fields}"
        assert got.body == expected.body, f"body: corral {got.body!r} h11 {expected.body!r}"
    assert got.second == SECOND[-6:], f"the second request got {got.second!r}: a desync"
    if got.error is not None or not keep:
        assert got.connections == 2, "a connection reused after a failed or closed answer"
    elif expected.keep_alive:
        assert got.connections == 1 or tags & REUSE.keys(), "a reusable connection was not reused"
    else:
        assert got.connections == 2 or tags & REUSE.keys(), "a connection h11 must close was reused"


async def differ(upstream: Upstream, a: Answer) -> None:
    note(f"wire: {b''.join(a.writes)!r}\nwrites: {a.writes!r}\ntags: {sorted(a.tags)}")
    first = oracle.response(a.oracle, closed=False)
    # the upstream keeps the connection only when the answer ends by itself and allows it (an
    # HTTP/1.0 keep-alive answer does, though h11 would not reuse it)
    allows = first.keep_alive or "version-1.0-keep-alive" in a.tags
    keep = a.keep and bool(first.status) and allows and not first.leftover
    expected = first if keep else oracle.response(a.oracle, closed=True)
    got = await upstream.fetch(Script(a.writes, keep))
    reads = "fails" if got.error else f"reads on {got.connections} connection(s)"
    event(f"h11 {'reads' if expected.status else 'refuses'}; corral {reads}")
    note(f"h11: {expected}\ncorral: {got}")
    check(a, keep, expected, got)


@pytest.mark.parametrize("mutation", GENERATED)
@budget(6)
@given(data=st.data())
async def test_each_mutation_is_read_as_h11_does(
    upstream: Upstream, mutation: str, data: st.DataObject
) -> None:
    answers = answer(GENERATED, forced=mutation).filter(clear_of_known_faults)
    await differ(upstream, data.draw(answers, label="answer"))


@budget(250)
@given(a=answer(GENERATED).filter(clear_of_known_faults))
async def test_answers_are_read_as_h11_does(upstream: Upstream, a: Answer) -> None:
    await differ(upstream, a)


# -- the classic cases, as explicit examples -------------------------------------------------------

R = b"HTTP/1.1 200 OK\r\n"
CLASSIC: list[tuple[str, bytes, bool, bytes | None, int]] = [
    # (name, bytes, kept open by the upstream, the body corral reads (None: it fails), connections);
    # a name that is also a mutation's (cl-te, obs-fold...) is that documented divergence
    ("content-length", R + b"Content-Length: 2\r\n\r\nok", True, b"ok", 1),
    (
        "chunked",
        R + b"Transfer-Encoding: chunked\r\n\r\n1\r\no\r\n1;x=y\r\nk\r\n0\r\nX-T: 1\r\n\r\n",
        True,
        b"ok",
        1,
    ),
    ("close-delimited", R + b"\r\nok", False, b"ok", 2),
    ("http10", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", True, b"ok", 2),
    ("connection-close", R + b"Connection: close\r\nContent-Length: 2\r\n\r\nok", True, b"ok", 2),
    (
        "interim-then-200",
        b"HTTP/1.1 100 Continue\r\n\r\n" + R + b"Content-Length: 2\r\n\r\nok",
        True,
        b"ok",
        1,
    ),
    ("204-with-bytes-after", b"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\nok", True, b"", 2),
    (
        "extra-answer-after",
        R + b"Content-Length: 2\r\n\r\nok" + R + b"Content-Length: 3\r\n\r\nbad",
        True,
        b"ok",
        2,
    ),
    ("cl-cl-different", R + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nok!", False, None, 2),
    ("cl-cl-same", R + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nok", False, None, 2),
    ("cl-te", R + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", False, None, 2),
    ("negative-cl", R + b"Content-Length: -1\r\n\r\nok", False, None, 2),
    (
        "chunk-size-overflow",
        R + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nok\r\n0\r\n\r\n",
        False,
        None,
        2,
    ),
    ("chunk-size-sign", R + b"Transfer-Encoding: chunked\r\n\r\n+2\r\nok\r\n0\r\n\r\n", False, None, 2),
    ("chunk-data-no-crlf", R + b"Transfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n", False, None, 2),
    ("truncated-chunked", R + b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", False, None, 2),
    ("truncated-length", R + b"Content-Length: 5\r\n\r\nok", False, None, 2),
    ("bare-lf", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", False, None, 2),
    ("obs-fold", R + b"X-A: one\r\n two\r\nContent-Length: 2\r\n\r\nok", False, None, 2),
    ("nul-in-value", R + b"X-A: a\x00b\r\nContent-Length: 2\r\n\r\nok", False, None, 2),
    ("status-4-digits", b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok", False, None, 2),
    (
        "switching-protocols",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
        True,
        None,
        2,
    ),
    ("not-http", b"SSH-2.0-OpenSSH_9.6\r\n", False, None, 2),
]


@pytest.mark.parametrize("split", ["whole", "bytewise"])
@pytest.mark.parametrize(
    ("name", "data", "keep", "body", "connections"), CLASSIC, ids=[c[0] for c in CLASSIC]
)
async def test_classic_cases(
    upstream: Upstream, name: str, data: bytes, keep: bool, body: bytes | None, connections: int, split: str
) -> None:
    """Each answer written at once, and one byte per write: what corral reads (or that it fails),
    whether the connection is reused, and what h11 makes of the same bytes."""
    writes = [data] if split == "whole" else [data[i : i + 1] for i in range(len(data))]
    got = await upstream.fetch(Script(writes, keep))
    if body is None:
        assert got.error is not None, got
    else:
        assert (got.error, got.body) == (None, body)
    assert got.connections == connections
    assert got.second == SECOND[-6:]
    expected = oracle.response(data, closed=not keep)
    a = Answer(Message(b"", tags={name, "dup-cl-same" if name == "cl-cl-same" else name}), b"", writes, keep)
    kept = keep and bool(expected.status) and expected.keep_alive and not expected.leftover
    check(a, kept, expected if kept else oracle.response(data, closed=True), got)
