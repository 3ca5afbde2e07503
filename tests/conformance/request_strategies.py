"""Hypothesis strategies for request streams: 1-4 pipelined requests (valid, then mutated by
name), an optional tail (the start of one more request, or garbage), and the points at which
the stream is cut into writes.

Every request is a POST to the edge's recording route unless the ``other-method`` mutation
makes it another method or path (the conformance edge records every method in ``METHODS`` on
every origin-form path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

from tests.conformance.messages import HOT_PATH, VCHAR, Message, framing_fields, pieces, split_chunks
from tests.conformance.strategies import (
    CHUNK_MUTATIONS,
    FIELD_MUTATIONS,
    LATE,
    Mutation,
    byte_strings,
    derived_tags,
    fields,
    insert_field,
    to_length,
)

MAX_BODY = 1000  # the edge's body limit in these tests
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")  # HEAD has no answer body to match
QUERY_BYTES = bytes(b for b in VCHAR if b not in b"#")


def _split_line(msg: Message) -> tuple[bytes, bytes, bytes]:
    method, rest = msg.start.split(b" ", 1)
    target, version = rest.rsplit(b" ", 1)
    return method, target, version


def _set_version(msg: Message, version: bytes) -> None:
    method, target, _ = _split_line(msg)
    msg.start = method + b" " + target + b" " + version


def _version_10(draw: st.DrawFn, msg: Message) -> None:
    _set_version(msg, b"HTTP/1.0")
    if draw(st.booleans()):
        msg.drop_fields(b"host")  # optional in HTTP/1.0


def _version_minor(draw: st.DrawFn, msg: Message) -> None:
    _set_version(msg, draw(st.sampled_from([b"HTTP/1.2", b"HTTP/1.9", b"HTTP/3.5"])))


def _version_20(draw: st.DrawFn, msg: Message) -> None:
    _set_version(msg, b"HTTP/2.0")


def _version_09(draw: st.DrawFn, msg: Message) -> None:
    _set_version(msg, b"HTTP/0.9")


def _version_bad(draw: st.DrawFn, msg: Message) -> None:
    bad = [
        b"HTTP/1.10",
        b"HTTP/11",
        b"HTTP/1",
        b"http/1.1",
        b"HTTP/1.1/",
        b"HTTP/1.1 ",
        b"HTTP/a.b",
        b"HTP/1.1",
    ]
    _set_version(msg, draw(st.sampled_from(bad)))


def _method_unknown(draw: st.DrawFn, msg: Message) -> None:
    _, target, version = _split_line(msg)
    method = draw(st.sampled_from([b"post", b"Post", b"FOO", b"POST2", b"X-POST"]))
    msg.start = method + b" " + target + b" " + version


def _other_method(draw: st.DrawFn, msg: Message) -> None:
    """Another method of ``METHODS``, on the recording route or on another path."""
    _, target, version = _split_line(msg)
    method = draw(st.sampled_from([m.encode() for m in METHODS]))
    if draw(st.booleans()):
        target = (
            draw(st.sampled_from([b"/", b"/other", b"/v1/x/y", b"/a%20b", b"//x"])) + target[len(HOT_PATH) :]
        )
    msg.start = method + b" " + target + b" " + version


def _query_odd(draw: st.DrawFn, msg: Message) -> None:
    method, target, version = _split_line(msg)
    msg.start = (
        method + b" " + target.split(b"?")[0] + b"?" + draw(byte_strings(QUERY_BYTES, 0, 20)) + b" " + version
    )


def _target_ctl(draw: st.DrawFn, msg: Message) -> None:
    method, target, version = _split_line(msg)
    at = draw(st.integers(1, len(target)))
    byte = draw(st.sampled_from([b"\x00", b"\x01", b"\x7f", b"\xff", b"\t", b"\x0b", b" x", b"\x1b"]))
    msg.start = method + b" " + target[:at] + byte + target[at:] + b" " + version


def _request_line_spaces(draw: st.DrawFn, msg: Message) -> None:
    method, target, version = _split_line(msg)
    first, second = draw(st.sampled_from([(b"  ", b" "), (b" ", b"  "), (b"   ", b"  ")]))
    msg.start = method + first + target + second + version


def _request_line_tab(draw: st.DrawFn, msg: Message) -> None:
    method, target, version = _split_line(msg)
    msg.start = method + b"\t" + target + b" " + version


def _leading_crlf(draw: st.DrawFn, msg: Message) -> None:
    msg.prefix = b"\r\n" * draw(st.integers(1, 3))


def _host_missing(draw: st.DrawFn, msg: Message) -> None:
    msg.drop_fields(b"host")


def _host_dup(draw: st.DrawFn, msg: Message) -> None:
    insert_field(draw, msg, b"Host", draw(st.sampled_from([b"test", b"other", b"evil.example"])))


def _single_dup(draw: st.DrawFn, msg: Message) -> None:
    """A field that carries one value (a key) given twice."""
    name = draw(st.sampled_from([b"Authorization", b"X-Api-Key"]))
    insert_field(draw, msg, name, b"Bearer first")
    insert_field(draw, msg, draw(st.sampled_from([name, name.lower()])), b"Bearer second")


def _connection_close(draw: st.DrawFn, msg: Message) -> None:
    insert_field(draw, msg, b"Connection", draw(st.sampled_from([b"close", b"Close", b"CLOSE"])))


def _expect_continue(draw: st.DrawFn, msg: Message) -> None:
    insert_field(draw, msg, b"Expect", b"100-continue")


def _upgrade(draw: st.DrawFn, msg: Message) -> None:
    insert_field(draw, msg, b"Connection", b"Upgrade")
    insert_field(draw, msg, b"Upgrade", b"websocket")


def _body_limit(draw: st.DrawFn, msg: Message) -> None:
    """A Content-Length over the edge's limit (the bytes after the head are whatever follows)."""
    to_length(draw, msg)
    msg.set_field(b"content-length", b"%d" % draw(st.integers(MAX_BODY + 1, 10**15)))


REQUEST_MUTATIONS: dict[str, Mutation] = {
    **FIELD_MUTATIONS,
    **CHUNK_MUTATIONS,
    "version-1.0": _version_10,
    "version-minor": _version_minor,
    "version-2.0": _version_20,
    "version-0.9": _version_09,
    "version-bad": _version_bad,
    "method-unknown": _method_unknown,
    "other-method": _other_method,
    "query-odd": _query_odd,
    "target-ctl": _target_ctl,
    "request-line-spaces": _request_line_spaces,
    "request-line-tab": _request_line_tab,
    "leading-crlf": _leading_crlf,
    "host-missing": _host_missing,
    "host-dup": _host_dup,
    "single-dup": _single_dup,
    "connection-close": _connection_close,
    "expect-continue": _expect_continue,
    "upgrade": _upgrade,
    "body-limit": _body_limit,
}


# the line is not 3 words after these, so they come last, in this order: each one before the tab
# still finds the line's parts between spaces (found by the long profile once request-line-spaces
# was generated: a tab then another of these left no space to split the line at)
_LINE_LAST = ("target-ctl", "request-line-spaces", "request-line-tab")
EXCLUSIVE = (
    frozenset({"version-1.0", "version-minor", "version-2.0", "version-0.9", "version-bad"}),
    frozenset({"method-unknown", "other-method"}),
)


def exclusive(names: list[str], keep: Sequence[str]) -> list[str]:
    """``names`` with at most one of each group of mutations that undo each other (the one in
    ``keep`` if any, else the first)."""
    out: list[str] = []
    for name in names:
        group = next((g for g in EXCLUSIVE if name in g), frozenset())
        taken = [n for n in out if n in group]
        if not taken:
            out.append(name)
        elif name in keep:
            out = [n for n in out if n not in group] + [name]
    return out


@st.composite
def request(
    draw: st.DrawFn, mutations: Sequence[str], *, forced: Sequence[str] = (), max_mutations: int = 2
) -> Message:
    """A valid POST to the recording route, then ``forced`` and up to ``max_mutations`` more of
    ``mutations``."""
    body = draw(st.binary(max_size=48))
    framing = draw(st.sampled_from(["length", "length", "chunked", "none"]))
    query = draw(st.one_of(st.just(b""), byte_strings(b"abc=&%20", 1, 8).map(lambda q: b"?" + q)))
    msg = Message(b"POST " + HOT_PATH.encode() + query + b" HTTP/1.1", framing=framing)
    msg.body = b"" if framing == "none" else body
    if framing == "chunked":
        msg.chunks = split_chunks(body, draw(st.lists(st.integers(0, len(body)), max_size=4)))
    extra = draw(fields())
    msg.fields = list(draw(st.permutations([(b"Host", b"test"), *extra, *framing_fields(msg)])))
    more = st.lists(st.sampled_from(sorted(mutations)), max_size=max_mutations, unique=True)
    chosen = exclusive(sorted({*forced, *(draw(more) if mutations else [])}), keep=forced)
    for name in sorted(
        chosen, key=lambda n: (n in LATE or n in _LINE_LAST, _LINE_LAST.index(n) if n in _LINE_LAST else -1)
    ):
        REQUEST_MUTATIONS[name](draw, msg)
        msg.tags.add(name)
    msg.tags |= derived_tags(msg)
    return msg


@dataclass
class Stream:
    """What one connection sends: its requests, then ``tail`` (bytes that do not make a whole
    request), written in ``writes``."""

    messages: list[Message]
    tail: bytes
    writes: list[bytes]

    @property
    def wire(self) -> bytes:
        return b"".join(self.writes)

    @property
    def oracle(self) -> bytes:
        return b"".join(m.render(oracle=True) for m in self.messages) + self.tail

    @property
    def tags(self) -> set[str]:
        return set().union(*(m.tags for m in self.messages))


@st.composite
def stream(
    draw: st.DrawFn, mutations: Sequence[str], *, forced: str | None = None, max_requests: int = 4
) -> Stream:
    """1 to ``max_requests`` requests (one of them mutated by ``forced``, if given), a tail, and
    the writes it all goes out in."""
    count = draw(st.integers(1, max_requests))
    target = draw(st.integers(0, count - 1)) if forced else -1
    more = 1 if forced else 2
    messages = [
        draw(request(mutations, forced=[forced] if forced and i == target else [], max_mutations=more))
        for i in range(count)
    ]
    kind = draw(st.sampled_from(["none", "none", "none", "partial", "garbage"]))
    tail = b""
    if kind == "partial":
        whole = draw(request([])).render()
        tail = whole[: draw(st.integers(1, len(whole) - 1))]
    elif kind == "garbage":
        tail = draw(st.binary(min_size=1, max_size=24).filter(lambda b: b[:1] not in (b"\r", b"\n")))
    data = b"".join(m.render() for m in messages) + tail
    cuts = draw(st.lists(st.integers(1, max(len(data) - 1, 1)), max_size=6))
    return Stream(messages, tail, pieces(data, cuts))
