"""The limits of a request head, defined once for both listeners (the edge on the data plane,
aiohttp on the control plane)."""

from __future__ import annotations

MAX_HEAD = 64 * 1024  # request line and headers, bytes (and chunked trailers, counted apart)
MAX_HEADERS = 128  # header fields (and trailer fields)
CHUNK_OVERHEAD = 32  # framing bytes allowed per chunk (size line and CRLFs) before trailers count
# headers that carry one value: given twice, a request is ambiguous (which key? which host?)
SINGLE_HEADERS = frozenset({"authorization", "x-api-key", "host", "content-length", "x-corral-power"})
