"""A small client for a running gateway's admin API, used by the CLI commands.

Standard library only (urllib), so CLI commands start fast. Errors say what to do.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class CLIError(Exception):
    """A problem the user can fix; printed without a traceback."""


def default_url(env: Mapping[str, str], plane: str = "admin") -> str:
    """The control plane (admin API: $CORRAL_ADMIN_URL, port 4001) or the data plane (the
    client APIs, where `corral pull` goes: $CORRAL_URL, port 4000)."""
    if plane == "data":
        return env.get("CORRAL_URL", "http://127.0.0.1:4000").rstrip("/")
    return env.get("CORRAL_ADMIN_URL", "http://127.0.0.1:4001").rstrip("/")


def default_key(env: Mapping[str, str], home: Path) -> str | None:
    for name in ("CORRAL_ADMIN_KEY", "CORRAL_MASTER_KEY"):
        if env.get(name):
            return env[name]
    path = home / "master_key"
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


class AdminClient:
    def __init__(self, url: str, key: str | None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        if not self.key:
            raise CLIError("No admin key. Pass --key, or set CORRAL_MASTER_KEY (or CORRAL_ADMIN_KEY).")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310 - http(s) only
        req.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise CLIError(_http_error(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CLIError(
                f"Cannot reach corral at {self.url} ({reason}). Is it running (`corral serve`)? "
                "Point to it with --url or CORRAL_URL."
            ) from None
        return json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)


def _http_error(exc: urllib.error.HTTPError) -> str:
    try:
        message = json.loads(exc.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = exc.reason
    if exc.code == 401:
        return (
            f"The gateway refused the key ({message}). Pass the master key with --key or CORRAL_MASTER_KEY."
        )
    if exc.code == 403:
        return f"That key may not use the admin API ({message}). Use a key with admin scope."
    return f"HTTP {exc.code}: {message}"


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    raw = env.get("CORRAL_HOME")
    return Path(raw).expanduser() if raw else Path.home() / ".corral"
