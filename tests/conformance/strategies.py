"""The parts of the HTTP/1.1 strategies that requests and responses share: field names and
values, and the named mutations of fields (``FIELD_MUTATIONS``) and of chunked bodies
(``CHUNK_MUTATIONS``). ``request_strategies`` and ``response_strategies`` add the start-line
ones and build whole messages.

A message is built valid (``Message``), then named mutations change it; each adds its name to
the message's tags, so a test can tell which documented divergence from h11 may explain what
it sees. What each mutation means for corral (the same as h11, stricter, a known fault) is
decided by the test modules, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hypothesis import strategies as st

from tests.conformance.messages import (
    OBS_TEXT,
    TOKEN,
    VCHAR,
    Message,
    split_chunks,
)

Mutation = Callable[[st.DrawFn, Message], None]

# names the random fields never take: each has a mutation of its own
RESERVED = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"expect",
        b"upgrade",
        b"te",
        b"trailer",
        b"authorization",
        b"x-api-key",
        b"keep-alive",
    }
)
COMMON_NAMES = (b"Accept", b"User-Agent", b"X-Request-Id", b"Content-Type", b"Cache-Control", b"Cookie")
VALUE_BYTES = VCHAR + OBS_TEXT
NOISE = bytes(b for b in range(256) if b not in b" \t")  # trailing OWS has a test of its own
CONTROLS = b"\x01\x08\x0b\x0c\x1b\x1f\x7f"


def byte_strings(alphabet: bytes, min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(alphabet), min_size=min_size, max_size=max_size).map(bytes)


def field_name() -> st.SearchStrategy[bytes]:
    made = byte_strings(TOKEN, 1, 10).map(lambda name: b"X-" + name)
    return st.one_of(st.sampled_from(COMMON_NAMES), made).filter(lambda n: n.lower() not in RESERVED)


def field_value() -> st.SearchStrategy[bytes]:
    """A valid value: visible bytes and obs-text with inner spaces, no surrounding whitespace."""
    inner = st.lists(st.one_of(byte_strings(VALUE_BYTES, 1, 8), st.sampled_from([b" ", b"\t"])), max_size=4)
    return inner.map(lambda parts: b"".join(parts).strip(b" \t"))


def fields() -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    return st.lists(st.tuples(field_name(), field_value()), max_size=4)


def _pick(draw: st.DrawFn, msg: Message, *, skip: Sequence[bytes] = (b"host",)) -> int | None:
    """The index of a field a mutation may change (not one of ``skip``), or None."""
    choices = [i for i, (name, _) in enumerate(msg.fields) if name.lower() not in skip]
    return draw(st.sampled_from(choices)) if choices else None


def insert_field(draw: st.DrawFn, msg: Message, name: bytes, value: bytes) -> None:
    msg.fields.insert(draw(st.integers(0, len(msg.fields))), (name, value))


def to_chunked(draw: st.DrawFn, msg: Message) -> None:
    """Frame the body as chunked (if it is not already)."""
    if msg.framing == "chunked":
        return
    msg.drop_fields(b"content-length")
    msg.framing = "chunked"
    cuts = draw(st.lists(st.integers(0, max(len(msg.body), 1)), max_size=3))
    msg.chunks = split_chunks(msg.body, cuts)
    insert_field(draw, msg, b"Transfer-Encoding", b"chunked")


def to_length(draw: st.DrawFn, msg: Message, *, min_size: int = 0) -> None:
    """Frame the body with one Content-Length field (``min_size`` bytes of body at least)."""
    if msg.framing == "chunked":
        msg.drop_fields(b"transfer-encoding")
    if msg.framing != "length":
        msg.framing = "length"
        msg.body = msg.body or b""
        insert_field(draw, msg, b"Content-Length", b"0")
    if len(msg.body) < min_size:
        msg.body += b"b" * (min_size - len(msg.body))
    msg.set_field(b"content-length", b"%d" % len(msg.body))


# -- field mutations (requests and responses) ---------------------------------------------------


def _name_case(draw: st.DrawFn, msg: Message) -> None:
    flips = draw(st.lists(st.booleans(), min_size=24, max_size=24))
    msg.fields = [
        (bytes(c ^ 0x20 if flips[i % 24] and chr(c).isalpha() else c for i, c in enumerate(n)), v)
        for n, v in msg.fields
    ]


def _leading_ows(draw: st.DrawFn, msg: Message) -> None:
    if (i := _pick(draw, msg, skip=())) is not None:
        name, value = msg.fields[i]
        msg.fields[i] = (name, draw(byte_strings(b" \t", 1, 4)) + value)


def _trailing_ows(draw: st.DrawFn, msg: Message) -> None:
    if (i := _pick(draw, msg, skip=())) is not None:
        name, value = msg.fields[i]
        msg.fields[i] = (name, value + draw(byte_strings(b" \t", 1, 4)))


def _no_space(draw: st.DrawFn, msg: Message) -> None:  # "Name:value" is valid
    msg.fields = [(n, v.lstrip(b" \t")) for n, v in msg.fields]


def _empty_value(draw: st.DrawFn, msg: Message) -> None:
    insert_field(draw, msg, draw(field_name()), b"")


def _dup_field(draw: st.DrawFn, msg: Message) -> None:
    name, value = draw(field_name()), draw(field_value())
    insert_field(draw, msg, name, value)
    insert_field(draw, msg, name.lower(), draw(field_value()))


def _dup_cl_same(draw: st.DrawFn, msg: Message) -> None:
    to_length(draw, msg)
    insert_field(draw, msg, b"Content-Length", b"%d" % len(msg.body))


def _dup_cl_diff(draw: st.DrawFn, msg: Message) -> None:
    to_length(draw, msg, min_size=1)
    other = draw(st.integers(0, len(msg.body) - 1))
    insert_field(draw, msg, b"Content-Length", b"%d" % other)


def _cl_list(draw: st.DrawFn, msg: Message) -> None:
    to_length(draw, msg)
    n = b"%d" % len(msg.body)
    msg.set_field(b"content-length", draw(st.sampled_from([n + b", " + n, n + b"," + n])))


def _cl_bad(draw: st.DrawFn, msg: Message) -> None:
    to_length(draw, msg)
    n = b"%d" % len(msg.body)
    bad = [b"-" + n, b"+" + n, b"0x" + n, n + b" 0", b"", n + b"e0", b"1" + b"0" * 22, n + b"\x00"]
    msg.set_field(b"content-length", draw(st.sampled_from(bad)))


def _cl_te(draw: st.DrawFn, msg: Message) -> None:
    """Both Content-Length and Transfer-Encoding: chunked, the Content-Length right or wrong."""
    to_chunked(draw, msg)
    framed = len(msg.framed_body())
    insert_field(draw, msg, b"Content-Length", b"%d" % draw(st.sampled_from([framed, 0, 1, framed + 5])))


def _te_case(draw: st.DrawFn, msg: Message) -> None:
    to_chunked(draw, msg)
    msg.set_field(b"transfer-encoding", draw(st.sampled_from([b"Chunked", b"CHUNKED", b"cHuNkEd"])))


def _te_ows(draw: st.DrawFn, msg: Message) -> None:
    to_chunked(draw, msg)
    msg.set_field(b"transfer-encoding", draw(st.sampled_from([b"\tchunked", b"  chunked", b"\t chunked"])))


def _te_unknown(draw: st.DrawFn, msg: Message) -> None:
    """A coding that is not chunked, or chunked not last: the framing cannot be known."""
    to_chunked(draw, msg)
    values = [b"identity", b"xchunked", b"chunked, gzip", b"chunked, identity", b"deflate", b"chunk"]
    msg.set_field(b"transfer-encoding", draw(st.sampled_from(values)))


def _te_gzip_chunked(draw: st.DrawFn, msg: Message) -> None:
    """A coding before chunked, which corral does not decode."""
    to_chunked(draw, msg)
    msg.set_field(b"transfer-encoding", draw(st.sampled_from([b"gzip, chunked", b"deflate,chunked"])))


def _te_dup(draw: st.DrawFn, msg: Message) -> None:
    to_chunked(draw, msg)
    insert_field(draw, msg, b"Transfer-Encoding", b"chunked")


def _te_name_odd(draw: st.DrawFn, msg: Message) -> None:
    """A name that looks like Transfer-Encoding but is not it (or is not a valid name)."""
    to_chunked(draw, msg)
    odd = [b"Transfer-Encoding ", b"Transfer_Encoding", b"Transfer-Encodin", b"X-TE", b"Transfer-Encoding\t"]
    new = draw(st.sampled_from(odd))
    msg.fields = [(new if n.lower() == b"transfer-encoding" else n, v) for n, v in msg.fields]


def _space_before_colon(draw: st.DrawFn, msg: Message) -> None:
    if (i := _pick(draw, msg)) is not None:
        name, value = msg.fields[i]
        msg.fields[i] = (name + draw(st.sampled_from([b" ", b"\t"])), value)


def _obs_fold(draw: st.DrawFn, msg: Message) -> None:
    if (i := _pick(draw, msg, skip=())) is not None:
        msg.folds[i] = draw(st.sampled_from([b" ", b"\t", b"  "])) + draw(byte_strings(VCHAR, 1, 6))


def _bare_lf(draw: st.DrawFn, msg: Message) -> None:
    msg.eols[draw(st.integers(0, len(msg.fields) + 1))] = b"\n"


def _bare_cr(draw: st.DrawFn, msg: Message) -> None:
    msg.eols[draw(st.integers(0, len(msg.fields)))] = b"\r"


def _in_value(draw: st.DrawFn, msg: Message, byte: bytes) -> None:
    if (i := _pick(draw, msg)) is not None:
        name, value = msg.fields[i]
        at = draw(st.integers(0, len(value)))
        msg.fields[i] = (name, value[:at] + byte + value[at:] + b"v")  # never last: not trailing OWS


def _ctl_value(draw: st.DrawFn, msg: Message) -> None:
    _in_value(draw, msg, bytes([draw(st.sampled_from(CONTROLS))]))


def _nul_value(draw: st.DrawFn, msg: Message) -> None:
    _in_value(draw, msg, b"\x00")


def _bad_name(draw: st.DrawFn, msg: Message) -> None:
    if (i := _pick(draw, msg)) is not None:
        name, value = msg.fields[i]
        at = draw(st.integers(0, len(name)))
        byte = draw(st.sampled_from([b"\x00", b"\x01", b"(", b"/", b"@", b"\x7f", b"\xe9", b"[", b'"']))
        msg.fields[i] = (name[:at] + byte + name[at:], value)


def _empty_name(draw: st.DrawFn, msg: Message) -> None:
    insert_field(draw, msg, b"", draw(field_value()))


def _noise(draw: st.DrawFn, msg: Message) -> None:
    """One byte of a field line (not Host) replaced by any byte but SP or HTAB. Applied last, as
    it fixes the line's bytes."""
    if (i := _pick(draw, msg)) is not None:
        name, value = msg.fields[i]
        line = name + b":" + value
        at = draw(st.integers(0, len(line) - 1))
        msg.raw[i] = line[:at] + bytes([draw(st.sampled_from(NOISE))]) + line[at + 1 :]


def _many_fields(draw: st.DrawFn, msg: Message) -> None:
    """More field lines than corral allows (128)."""
    for n in range(draw(st.integers(129, 140))):
        msg.fields.append((b"X-F%d" % n, b"v"))


FIELD_MUTATIONS: dict[str, Mutation] = {
    "name-case": _name_case,
    "leading-ows": _leading_ows,
    "trailing-ows": _trailing_ows,
    "no-space": _no_space,
    "empty-value": _empty_value,
    "dup-field": _dup_field,
    "dup-cl-same": _dup_cl_same,
    "dup-cl-diff": _dup_cl_diff,
    "cl-list": _cl_list,
    "cl-bad": _cl_bad,
    "cl-te": _cl_te,
    "te-case": _te_case,
    "te-ows": _te_ows,
    "te-unknown": _te_unknown,
    "te-gzip-chunked": _te_gzip_chunked,
    "te-dup": _te_dup,
    "te-name-odd": _te_name_odd,
    "space-before-colon": _space_before_colon,
    "obs-fold": _obs_fold,
    "bare-lf": _bare_lf,
    "bare-cr": _bare_cr,
    "ctl-value": _ctl_value,
    "nul-value": _nul_value,
    "bad-name": _bad_name,
    "empty-name": _empty_name,
    "noise": _noise,
    "many-fields": _many_fields,
}

# -- chunked body mutations (requests and responses) --------------------------------------------


def _chunk_index(draw: st.DrawFn, msg: Message) -> int:
    to_chunked(draw, msg)
    if not msg.chunks:
        msg.chunks = [draw(byte_strings(VCHAR, 1, 8))]
        msg.body = msg.chunks[0]
    return draw(st.integers(0, len(msg.chunks) - 1))


def _chunk_size_form(draw: st.DrawFn, msg: Message) -> None:
    i = _chunk_index(draw, msg)
    digits = b"%X" % len(msg.chunks[i]) if draw(st.booleans()) else b"%x" % len(msg.chunks[i])
    msg.sizes[i] = b"0" * draw(st.integers(0, 16 - len(digits))) + digits


def _chunk_size_ws(draw: st.DrawFn, msg: Message) -> None:
    i = _chunk_index(draw, msg)
    msg.sizes[i] = b"%x" % len(msg.chunks[i]) + draw(st.sampled_from([b" ", b"\t", b"  "]))


def _chunk_size_bad(draw: st.DrawFn, msg: Message) -> None:
    i = _chunk_index(draw, msg)
    n = b"%x" % len(msg.chunks[i])
    bad = [b"+" + n, b"-" + n, b"0x" + n, b" " + n, n + b"g", b"", b"1" + b"0" * 16, b"f" * 17, b"-0"]
    msg.sizes[i] = draw(st.sampled_from(bad))


def _chunk_size_wrong(draw: st.DrawFn, msg: Message) -> None:
    i = _chunk_index(draw, msg)
    size = len(msg.chunks[i])
    msg.sizes[i] = b"%x" % draw(st.integers(1, size + 8).filter(lambda n: n != size))


def _chunk_zero_mid(draw: st.DrawFn, msg: Message) -> None:
    """A zero-size chunk before the last data: it ends the body there."""
    i = _chunk_index(draw, msg)
    msg.chunks.insert(i, b"")
    msg.sizes = {}


def _chunk_ext(draw: st.DrawFn, msg: Message) -> None:
    i = _chunk_index(draw, msg)
    msg.extensions[i] = draw(
        st.sampled_from([b";a=b", b";a", b';a="x y"', b";a=b;c=d", b";name=" + b"v" * 40])
    )


def _chunk_ext_odd(draw: st.DrawFn, msg: Message) -> None:
    i = _chunk_index(draw, msg)
    msg.extensions[i] = draw(st.sampled_from([b"; a=b", b";", b";a=\x01", b";a=\xff", b";a=\x00", b";a b"]))


def _chunk_end_bad(draw: st.DrawFn, msg: Message) -> None:
    i = _chunk_index(draw, msg)
    msg.chunk_ends[i] = draw(st.sampled_from([b"", b"XX", b"\n", b"\r", b" \r\n", b"\r\r\n"]))


def _chunk_size_lf(draw: st.DrawFn, msg: Message) -> None:
    i = _chunk_index(draw, msg)
    msg.extensions[i] = msg.extensions.get(i, b"") + b"\n"  # the size line's CRLF becomes "\n\r\n"


def _chunk_bare_lf(draw: st.DrawFn, msg: Message) -> None:
    """The last-chunk line, the empty line after it, or both, ended by a bare LF."""
    to_chunked(draw, msg)
    which = draw(st.sampled_from(["last", "end", "both"]))
    if which in ("last", "both"):
        msg.last_chunk = b"0\n"
    if which in ("end", "both"):
        msg.end = b"\n"


def _last_chunk_zeros(draw: st.DrawFn, msg: Message) -> None:
    to_chunked(draw, msg)
    msg.last_chunk = draw(st.sampled_from([b"000\r\n", b"0;x=y\r\n", b"00000000\r\n"]))


SENSITIVE = (b"Authorization", b"X-Api-Key", b"Host", b"Cookie", b"Content-Type", b"X-Request-Id")


def _trailers(draw: st.DrawFn, msg: Message) -> None:
    to_chunked(draw, msg)
    names = st.one_of(st.sampled_from(SENSITIVE), field_name())
    msg.trailers = draw(st.lists(st.tuples(names, field_value()), min_size=1, max_size=3))


CHUNK_MUTATIONS: dict[str, Mutation] = {
    "chunk-size-form": _chunk_size_form,
    "chunk-size-ws": _chunk_size_ws,
    "chunk-size-bad": _chunk_size_bad,
    "chunk-size-wrong": _chunk_size_wrong,
    "chunk-zero-mid": _chunk_zero_mid,
    "chunk-ext": _chunk_ext,
    "chunk-ext-odd": _chunk_ext_odd,
    "chunk-end-bad": _chunk_end_bad,
    "chunk-size-lf": _chunk_size_lf,
    "chunk-bare-lf": _chunk_bare_lf,
    "last-chunk-zeros": _last_chunk_zeros,
    "trailers": _trailers,
}
LATE = ("obs-fold", "bare-lf", "bare-cr", "noise")  # index-based: after every field is in place


def derived_tags(msg: Message) -> set[str]:
    """Tags that mutations earn together: a zero-size chunk (which ends the body) followed by a
    bare LF is a body ending in a bare LF; a field line that starts with whitespace (an empty
    name, then a space before the colon) is an obs-fold; a tab after a Transfer-Encoding value
    (trailing whitespace on a chunked message's field) is ``te-tab``."""
    tags = set()
    if any(
        name.lower() == b"transfer-encoding" and b"\t" in value[len(value.rstrip(b" \t")) :]
        for name, value in msg.fields
    ):
        tags.add("te-tab")
    if any(not data and msg.chunk_ends.get(i) == b"\n" for i, data in enumerate(msg.chunks)):
        tags.add("chunk-bare-lf")
    if any(name[:1] in (b" ", b"\t") for name, _ in msg.fields):
        tags.add("obs-fold")
    return tags
