"""The CLI's client for a running gateway, on httpx: the control plane (admin API:
``$CORRAL_ADMIN_URL``, port 4001) for admin commands, the data plane (the client APIs:
``$CORRAL_URL``, port 4000) for ``corral pull`` and ``corral chat``.

Every failure is a ``CLIError`` whose message says what to do: which URL was tried and how to
point elsewhere, how to pass a key, what the gateway said.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

PLANES = {
    "admin": ("CORRAL_ADMIN_URL", "http://127.0.0.1:4001", "control plane"),
    "data": ("CORRAL_URL", "http://127.0.0.1:4000", "data plane"),
}
KEY_VARS = {
    "admin": ("CORRAL_ADMIN_KEY", "CORRAL_MASTER_KEY"),
    "data": ("CORRAL_API_KEY", "CORRAL_ADMIN_KEY", "CORRAL_MASTER_KEY"),
}


class CLIError(Exception):
    """A problem the user can fix; printed without a traceback."""


def default_url(env: Mapping[str, str], plane: str = "admin") -> str:
    """The control plane (admin API: $CORRAL_ADMIN_URL, port 4001) or the data plane (the
    client APIs, where `corral pull` and `corral chat` go: $CORRAL_URL, port 4000)."""
    var, fallback, _ = PLANES["data" if plane == "data" else "admin"]
    return env.get(var, fallback).rstrip("/")


def default_key(env: Mapping[str, str], home: Path, plane: str = "admin") -> str | None:
    for name in KEY_VARS["data" if plane == "data" else "admin"]:
        if env.get(name):
            return env[name]
    path = home / "master_key"
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def no_key_message(plane: str) -> str:
    if plane == "data":
        return (
            "No API key. Pass --key, or set CORRAL_API_KEY to a gateway key (`corral keys create`), "
            "or CORRAL_MASTER_KEY."
        )
    return "No admin key. Pass --key, or set CORRAL_MASTER_KEY (or CORRAL_ADMIN_KEY to an admin-scope key)."


class AdminClient:
    """A gateway's control plane (``plane="admin"``) or data plane (``plane="data"``)."""

    def __init__(
        self,
        url: str,
        key: str | None,
        timeout: float = 30.0,
        *,
        plane: str = "admin",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.plane = "data" if plane == "data" else "admin"
        if not self.url.startswith(("http://", "https://")):
            raise CLIError(f"--url must be an http:// or https:// URL, got {url!r}.")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def _headers(self, body: Any) -> dict[str, str]:
        if not self.key:
            raise CLIError(no_key_message(self.plane))
        headers = {"Authorization": f"Bearer {self.key}", "User-Agent": "corral-cli"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def request(self, method: str, path: str, body: Any = None) -> Any:
        headers = self._headers(body)
        content = json.dumps(body).encode() if body is not None else None
        try:
            response = self._http.request(method, path, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise CLIError(self.unreachable(exc)) from None
        if response.status_code >= 400:
            raise CLIError(http_error(response.status_code, response.content, self.plane))
        return response.json() if response.content else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    @contextmanager
    def stream(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None
    ) -> Iterator[httpx.Response]:
        """A streamed answer (status checked: an error status raises ``CLIError``)."""
        headers = self._headers(body)
        content = json.dumps(body).encode() if body is not None else None
        wait = httpx.Timeout(self.timeout if timeout is None else timeout, connect=10.0)
        try:
            with self._http.stream(method, path, content=content, headers=headers, timeout=wait) as response:
                if response.status_code >= 400:
                    raise CLIError(http_error(response.status_code, response.read(), self.plane))
                yield response
        except httpx.HTTPError as exc:
            raise CLIError(self.unreachable(exc)) from None

    def unreachable(self, exc: httpx.HTTPError) -> str:
        var, _, name = PLANES[self.plane]
        if isinstance(exc, httpx.TimeoutException):
            return f"corral's {name} at {self.url} did not answer in time ({type(exc).__name__})."
        reason = str(exc) or type(exc).__name__
        return (
            f"Cannot reach corral's {name} at {self.url} ({reason}). Is it running (`corral serve`)? "
            f"Point to it with --url or ${var}."
        )


def http_error(status: int, raw: bytes, plane: str = "admin") -> str:
    try:
        error = json.loads(raw)["error"]
        message = error["message"] if isinstance(error, dict) else str(error)
    except (ValueError, KeyError, TypeError):
        message = raw.decode(errors="replace").strip()[:300] or f"HTTP {status}"
    if status == 401:
        fix = (
            "Pass a gateway key with --key or CORRAL_API_KEY."
            if plane == "data"
            else "Pass the master key with --key or CORRAL_MASTER_KEY."
        )
        return f"The gateway refused the key ({message}). {fix}"
    if status == 403 and plane == "admin":
        return f"That key may not use the admin API ({message}). Use a key with admin scope."
    return f"HTTP {status}: {message}"


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    raw = env.get("CORRAL_HOME")
    return Path(raw).expanduser() if raw else Path.home() / ".corral"
