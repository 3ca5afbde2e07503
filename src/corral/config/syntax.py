"""What may go into an upstream request line or header: the config refuses anything else at load
time, and corral's HTTP client (``httpclient.pool``) enforces the same rules on every request."""

from __future__ import annotations

import re

REQUEST_PATH = re.compile(r"/[\x21-\x7e]*")  # printable ASCII, no spaces: cannot split the request line
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token
# Headers that frame the request: configuring them would corrupt the exchange.
FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer"})
