"""Faults the differential suite found in the upstream client's response parsing, with the bytes
that show them. One not fixed yet is a strict xfail, so it fails (and must be unmarked, and its
entry dropped from ``test_client_responses.KNOWN_FAULTS``) once the client is fixed; the fixed
ones stay as tests. None is open today.
"""

from __future__ import annotations

import pytest

from corral.httpclient import BadResponse
from tests.conformance.harness import Fetched, Script, Upstream

R = b"HTTP/1.1 200 OK\r\n"


def refused(got: Fetched, what: str) -> None:
    """A BadResponse that names the upstream's fault, on a connection not used again."""
    assert isinstance(got.error, BadResponse), f"{got.error!r} for {got}"
    assert what in str(got.error), str(got.error)
    assert got.connections == 2  # the second request had to connect again


# found by the differential suite: the client took a transfer coding other than chunked (gzip,
# identity, a coding before chunked, chunked twice) and handed the still-coded bytes over as the
# body ('Transfer-Encoding: gzip' was read to the close as if it were plain); h11 refuses them,
# and corral sends 'Accept-Encoding: identity' so no upstream should: fixed (BadResponse on any
# Transfer-Encoding but exactly 'chunked'), kept as a regression test
@pytest.mark.parametrize(
    "head",
    [
        b"Transfer-Encoding: gzip\r\n\r\n\x1f\x8b\x08\x00",
        b"Transfer-Encoding: identity\r\n\r\nok",
        b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ],
)
@pytest.mark.parametrize("keep", [False, True])
async def test_transfer_codings_other_than_chunked_are_refused(
    upstream: Upstream, head: bytes, keep: bool
) -> None:
    got = await upstream.fetch(Script([R + head], keep=keep))
    refused(got, "Transfer-Encoding")


# found by the differential suite: the client read a status code below 100 ('HTTP/1.1 099 OK')
# as an answer; h11 refuses it (RFC 9110 §15: no class 0 exists): fixed, kept
@pytest.mark.parametrize("code", [b"099", b"000", b"042"])
async def test_a_status_below_100_is_refused(upstream: Upstream, code: bytes) -> None:
    got = await upstream.fetch(
        Script([b"HTTP/1.1 " + code + b" OK\r\nContent-Length: 2\r\n\r\nok"], keep=True)
    )
    refused(got, "status " + code.decode())


# found by the differential suite: llhttp let a NUL through in the reason phrase
# ('HTTP/1.1 200 O\x00K') and the client read the answer; h11 refuses it, and VT and FF too
# (RFC 9112 §4: reason-phrase is HTAB, SP, VCHAR, obs-text): fixed, kept. The client refuses
# the other control bytes as well, as RFC 9112 does (h11 lets them through).
@pytest.mark.parametrize("byte", [b"\x00", b"\x0b", b"\x0c", b"\x01", b"\x1f", b"\x7f"])
@pytest.mark.parametrize("split", [False, True])
async def test_a_nul_in_the_reason_phrase_is_refused(upstream: Upstream, byte: bytes, split: bool) -> None:
    data = b"HTTP/1.1 200 O" + byte + b"K\r\nContent-Length: 2\r\n\r\nok"
    writes = [data[:15], data[15:]] if split else [data]
    got = await upstream.fetch(Script(writes, keep=True))
    refused(got, "reason phrase")


@pytest.mark.parametrize("reason", [b"", b" OK", b"O\tK", b"\xe9t\xe9", b"Fine  Thanks \t"])
async def test_a_reason_phrase_of_vchar_sp_htab_and_obs_text_is_read(
    upstream: Upstream, reason: bytes
) -> None:
    got = await upstream.fetch(
        Script([b"HTTP/1.1 200 " + reason + b"\r\nContent-Length: 2\r\n\r\nok"], keep=True)
    )
    assert (got.error, got.status, got.body, got.connections) == (None, 200, b"ok", 1)


# found by the differential suite: the client kept the whitespace after a field value
# ('Content-Type: application/json ' was read with the space); RFC 9112 §5.1 excludes it, h11
# strips it: fixed, kept
@pytest.mark.parametrize(
    ("head", "name", "value"),
    [
        (
            b"Content-Type: application/json \r\nContent-Length: 2\r\n\r\nok",
            "content-type",
            "application/json",
        ),
        (b"Retry-After: 5\t\r\nContent-Length: 2\r\n\r\nok", "retry-after", "5"),
        (b"Transfer-Encoding: chunked  \r\n\r\n2\r\nok\r\n0\r\n\r\n", "transfer-encoding", "chunked"),
    ],
)
@pytest.mark.parametrize("keep", [False, True])
async def test_trailing_whitespace_is_not_part_of_a_value(
    upstream: Upstream, head: bytes, name: str, value: str, keep: bool
) -> None:
    got = await upstream.fetch(Script([R + head], keep=keep))
    assert got.error is None, got.error
    assert (got.headers.get(name), got.body) == (value, b"ok")
    assert got.connections == (1 if keep else 2)


# found with the above: 'Transfer-Encoding: chunked' followed by a tab is not framed chunked by
# llhttp (its coding parser takes SP after a coding, not HTAB, so it reads an unknown coding and
# the body to the close), while h11 strips the tab and reads the body chunked. Stripping the tab
# from the value would hand over the chunk framing as the body (or wait for a close that a
# keep-alive upstream never sends), so the client refuses the answer: stricter than h11
# (``STRICTER["te-tab"]``), as the edge is, whose llhttp refuses such a request.
@pytest.mark.parametrize("ows", [b"\t", b" \t", b"\t "])
@pytest.mark.parametrize("keep", [False, True])
async def test_a_tab_after_transfer_encoding_is_refused(upstream: Upstream, ows: bytes, keep: bool) -> None:
    head = b"Transfer-Encoding: chunked" + ows + b"\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    got = await upstream.fetch(Script([R + head], keep=keep))
    refused(got, "Transfer-Encoding")


# found by the differential suite: a chunked answer with the coding not in lower case and cut
# short was read as a whole answer (the close taken for a close-delimited end): fixed, kept
@pytest.mark.parametrize(
    "data",
    [
        R + b"Transfer-Encoding: Chunked\r\n\r\n5\r\nhel",
        R + b"Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n",
        R + b"Transfer-Encoding: cHuNkEd\r\n\r\n",
    ],
)
async def test_a_chunked_answer_cut_short_is_an_error_whatever_the_case(
    upstream: Upstream, data: bytes
) -> None:
    got = await upstream.fetch(Script([data], keep=False))
    assert got.error is not None, f"read status {got.status}, body {got.body!r} from a cut answer"
