"""Hypothesis strategies for one upstream answer to a GET: a valid response (status, reason,
fields, a body framed by Content-Length, chunked or the connection's close), then mutations by
name, optional 1xx answers before it, an optional tail after it, and the writes it goes out in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

from tests.conformance.messages import OBS_TEXT, VCHAR, Message, framing_fields, pieces, split_chunks
from tests.conformance.strategies import (
    CHUNK_MUTATIONS,
    FIELD_MUTATIONS,
    LATE,
    Mutation,
    byte_strings,
    derived_tags,
    fields,
    insert_field,
)

REASONS = (b"OK", b"", b"Fine Thanks", b"\xe9t\xe9", b"Non-Authoritative Information")


def _split_status(msg: Message) -> tuple[bytes, bytes, bytes]:
    version, rest = msg.start.split(b" ", 1)
    code, _, reason = rest.partition(b" ")
    return version, code, reason


def _status(msg: Message, *, version: bytes | None = None, code: bytes | None = None) -> None:
    old_version, old_code, reason = _split_status(msg)
    msg.start = (version or old_version) + b" " + (code or old_code) + b" " + reason


def _version_10(draw: st.DrawFn, msg: Message) -> None:
    _status(msg, version=b"HTTP/1.0")


def _version_10_keep_alive(draw: st.DrawFn, msg: Message) -> None:
    _status(msg, version=b"HTTP/1.0")
    insert_field(draw, msg, b"Connection", b"keep-alive")


def _version_minor(draw: st.DrawFn, msg: Message) -> None:
    _status(msg, version=draw(st.sampled_from([b"HTTP/1.2", b"HTTP/1.9"])))


def _version_20(draw: st.DrawFn, msg: Message) -> None:
    _status(msg, version=b"HTTP/2.0")


def _version_bad(draw: st.DrawFn, msg: Message) -> None:
    bad = [b"HTTP/1.10", b"HTTP/11", b"http/1.1", b"HTTP/1.1/", b"HTP/1.1", b"HTTP/a.b", b"ICY"]
    _status(msg, version=draw(st.sampled_from(bad)))


def _status_odd(draw: st.DrawFn, msg: Message) -> None:
    """Codes outside the registered ones that are still three digits from 1xx to 9xx."""
    _status(msg, code=draw(st.sampled_from([b"299", b"599", b"600", b"999", b"418", b"207"])))


def _status_bad(draw: st.DrawFn, msg: Message) -> None:
    _status(msg, code=draw(st.sampled_from([b"2000", b"20", b"2x0", b"", b"-200", b"20 0", b"+20"])))


def _status_0xx(draw: st.DrawFn, msg: Message) -> None:
    _status(msg, code=draw(st.sampled_from([b"099", b"000", b"042"])))


def _no_body_status(draw: st.DrawFn, msg: Message) -> None:
    """204 or 304: no body whatever the fields say (a 304 may carry the representation's length)."""
    code = draw(st.sampled_from([b"204", b"304"]))
    _status(msg, code=code)
    msg.body, msg.chunks = b"", []
    if code == b"304" and msg.framing == "length" and draw(st.booleans()):
        msg.set_field(b"content-length", b"%d" % draw(st.integers(1, 500)))


def _reason_odd(draw: st.DrawFn, msg: Message) -> None:
    version, code, _ = _split_status(msg)
    reason = draw(byte_strings(VCHAR + OBS_TEXT + b" \t", 0, 16))
    msg.start = version + b" " + code + (b"" if draw(st.booleans()) and not reason else b" " + reason)


def _reason_nul(draw: st.DrawFn, msg: Message) -> None:
    version, code, reason = _split_status(msg)
    msg.start = version + b" " + code + b" " + reason + b"\x00x"


def _interim(draw: st.DrawFn, msg: Message) -> None:
    options = [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
    ]
    msg.interim = b"".join(draw(st.lists(st.sampled_from(options), min_size=1, max_size=2)))


def _connection_close(draw: st.DrawFn, msg: Message) -> None:
    insert_field(draw, msg, b"Connection", draw(st.sampled_from([b"close", b"Close"])))


def _close_delimited(draw: st.DrawFn, msg: Message) -> None:
    """No Content-Length and not chunked: the body ends when the connection does."""
    msg.drop_fields(b"content-length")
    msg.drop_fields(b"transfer-encoding")
    if msg.framing == "chunked":
        msg.body = b"".join(msg.chunks)
    msg.framing = "none"


def _te_not_chunked(draw: st.DrawFn, msg: Message) -> None:
    """A transfer coding other than chunked on a close-delimited body, which corral does not decode."""
    _close_delimited(draw, msg)
    insert_field(draw, msg, b"Transfer-Encoding", draw(st.sampled_from([b"gzip", b"identity", b"deflate"])))


def _upgrade_101(draw: st.DrawFn, msg: Message) -> None:
    msg.start = b"HTTP/1.1 101 Switching Protocols"
    insert_field(draw, msg, b"Upgrade", b"websocket")
    insert_field(draw, msg, b"Connection", b"Upgrade")


RESPONSE_MUTATIONS: dict[str, Mutation] = {
    **FIELD_MUTATIONS,
    **CHUNK_MUTATIONS,
    "version-1.0": _version_10,
    "version-1.0-keep-alive": _version_10_keep_alive,
    "version-minor": _version_minor,
    "version-2.0": _version_20,
    "version-bad": _version_bad,
    "status-odd": _status_odd,
    "status-bad": _status_bad,
    "status-0xx": _status_0xx,
    "no-body-status": _no_body_status,
    "reason-odd": _reason_odd,
    "reason-nul": _reason_nul,
    "interim": _interim,
    "connection-close": _connection_close,
    "close-delimited": _close_delimited,
    "te-not-chunked": _te_not_chunked,
    "upgrade-101": _upgrade_101,
}
# mutations whose fields must be in place before another one reads them
_FIRST = ("close-delimited", "te-not-chunked", "no-body-status")


@dataclass
class Answer:
    """What the upstream writes for the first request: ``message`` then ``tail``."""

    message: Message
    tail: bytes
    writes: list[bytes]
    keep: bool  # the upstream keeps the connection open if the answer allows it

    @property
    def oracle(self) -> bytes:
        return self.message.render(oracle=True) + self.tail

    @property
    def tags(self) -> set[str]:
        return self.message.tags | ({"tail"} if self.tail else set())


EXCLUSIVE = (
    frozenset(
        {
            "version-1.0",
            "version-1.0-keep-alive",
            "version-minor",
            "version-2.0",
            "version-bad",
            "upgrade-101",
        }
    ),
    frozenset({"status-odd", "status-bad", "status-0xx", "no-body-status", "upgrade-101"}),
    *(frozenset({"close-delimited", "te-not-chunked", name}) for name in CHUNK_MUTATIONS),
)


def exclusive(names: list[str], keep: str | None) -> list[str]:
    """``names`` with at most one of each group of mutations that undo each other."""
    out: list[str] = []
    for name in sorted(names, key=lambda n: n != keep):  # the forced one first
        if not any(name in group and any(n in group for n in out) for group in EXCLUSIVE):
            out.append(name)
    return out


@st.composite
def answer(draw: st.DrawFn, mutations: Sequence[str], *, forced: str | None = None) -> Answer:
    """A valid 200 answer, then ``forced`` and up to two (one, with ``forced``) of ``mutations``."""
    body = draw(st.binary(max_size=64))
    framing = draw(st.sampled_from(["length", "length", "chunked"]))
    reason = draw(st.sampled_from(REASONS))
    msg = Message(b"HTTP/1.1 200 " + reason, framing=framing, body=body)
    if framing == "chunked":
        msg.chunks = split_chunks(body, draw(st.lists(st.integers(0, len(body)), max_size=4)))
    msg.fields = list(draw(st.permutations([*draw(fields()), *framing_fields(msg)])))
    more = draw(st.lists(st.sampled_from(sorted(mutations)), max_size=1 if forced else 2, unique=True))
    chosen = exclusive(sorted({*([forced] if forced else []), *more}), forced)
    for name in sorted(chosen, key=lambda n: (n not in _FIRST, n in LATE)):
        RESPONSE_MUTATIONS[name](draw, msg)
        msg.tags.add(name)
    msg.tags |= derived_tags(msg)
    tail = b""
    if draw(st.integers(0, 9)) == 0:
        tail = draw(
            st.sampled_from([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra", b"junk", b"HTTP/1.1 2"])
        )
    data = msg.render() + tail
    cuts = draw(st.lists(st.integers(1, max(len(data) - 1, 1)), max_size=5))
    return Answer(msg, tail, pieces(data, cuts), keep=draw(st.booleans()))
