"""HTTP/1.1 messages kept as parts (start line, field lines, line ends, folds, framed body), so
a mutation can change one part, and the tags that say which mutations a message carries.

``render`` gives the bytes that go on the wire; ``render(oracle=True)`` the same bytes without
the empty lines a message may be preceded by, which RFC 9112 §2.2 tells a server to ignore and
h11 refuses (the one place the two byte streams differ; see ``test_edge_requests``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

CRLF = b"\r\n"
TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VCHAR = bytes(range(0x21, 0x7F))
OBS_TEXT = bytes(range(0x80, 0x100))
HOT_PATH = "/record"  # the edge's recording route (as is every other origin-form path)
STREAM_PATH = "/stream"  # the edge's streaming route, for the HTTP/1.0 answers


@dataclass
class Message:
    """One request or response. ``fields`` hold each value as sent (with any whitespace);
    ``eols`` replace the CRLF after a head line (0 is the start line, i the i-th field line,
    ``len(fields) + 1`` the empty line); ``folds`` add an obs-fold continuation line after a
    field line."""

    start: bytes
    fields: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    framing: str = "length"  # "length", "chunked" or "none" (no framing field at all)
    chunks: list[bytes] = field(default_factory=list)  # the payload split in chunks, when chunked
    sizes: dict[int, bytes] = field(default_factory=dict)  # how chunk i's size is written, if odd
    extensions: dict[int, bytes] = field(default_factory=dict)  # chunk i's extensions (";a=b")
    chunk_ends: dict[int, bytes] = field(default_factory=dict)  # what follows chunk i's data
    last_chunk: bytes = b"0\r\n"  # the last-chunk line, with its line end
    end: bytes = CRLF  # the empty line that ends a chunked body
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    eols: dict[int, bytes] = field(default_factory=dict)
    folds: dict[int, bytes] = field(default_factory=dict)
    raw: dict[int, bytes] = field(default_factory=dict)  # field line i as sent, when not "name:value"
    prefix: bytes = b""  # empty lines before the start line
    tags: set[str] = field(default_factory=set)
    interim: bytes = b""  # responses only: 1xx answers sent before this one

    def render(self, *, oracle: bool = False) -> bytes:
        lines = [self.start] + [self.raw.get(i, n + b":" + v) for i, (n, v) in enumerate(self.fields)]
        out = [b"" if oracle else self.prefix, self.interim]
        for i, line in enumerate(lines):
            out.append(line + self.eols.get(i, CRLF))
            if i >= 1 and i - 1 in self.folds:
                out.append(self.folds[i - 1] + CRLF)
        out.append(self.eols.get(len(lines), CRLF))
        out.append(self.framed_body())
        return b"".join(out)

    def framed_body(self) -> bytes:
        if self.framing != "chunked":
            return self.body
        out = []
        for i, data in enumerate(self.chunks):
            size = self.sizes.get(i, b"%x" % len(data))
            out.append(size + self.extensions.get(i, b"") + CRLF + data + self.chunk_ends.get(i, CRLF))
        out.append(self.last_chunk)
        out.extend(name + b": " + value + CRLF for name, value in self.trailers)
        out.append(self.end)
        return b"".join(out)

    def field_values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.fields if key.lower() == name.lower()]

    def set_field(self, name: bytes, value: bytes) -> None:
        """Replace the value of every field called ``name`` (case-insensitive)."""
        self.fields = [(k, value if k.lower() == name.lower() else v) for k, v in self.fields]

    def drop_fields(self, name: bytes) -> None:
        self.fields = [(k, v) for k, v in self.fields if k.lower() != name.lower()]


def framing_fields(message: Message) -> list[tuple[bytes, bytes]]:
    """The field that frames ``message``'s body as built (before any mutation)."""
    if message.framing == "length":
        return [(b"Content-Length", b"%d" % len(message.body))]
    if message.framing == "chunked":
        return [(b"Transfer-Encoding", b"chunked")]
    return []


def split_chunks(body: bytes, cuts: list[int]) -> list[bytes]:
    """``body`` cut at the given offsets (sorted, inside it), never into empty chunks: an empty
    chunk is the last chunk."""
    points = [0, *sorted({c for c in cuts if 0 < c < len(body)}), len(body)]
    return [body[a:b] for a, b in itertools.pairwise(points) if b > a]


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets: how a stream is written, one write per piece."""
    points = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]
