"""The console's files, read once from the package (``corral/console/static``) and served from
memory under a build id: ``/console/assets/<build>/<path>``.

The build id is a hash of every file, so an asset's URL changes whenever any file changes and
assets can be cached for a year (``immutable``); the HTML shell, which names the build, is
never cached. Each asset also has an ``ETag`` (its own hash) and, for text larger than a
kilobyte, a gzip copy made at start.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from aiohttp import web

TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
SHELL = "index.html"
BUILD_MARK = "{{build}}"
YEAR = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str


def _walk(root: Traversable, prefix: str = "") -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            found += _walk(entry, name + "/")
        elif not entry.name.startswith("."):
            found.append((name, entry.read_bytes()))
    return found


class Assets:
    """Every file of the console by path, the build id, and the shell page."""

    def __init__(self, files: list[tuple[str, bytes]]) -> None:
        whole = hashlib.sha256()
        self.files: dict[str, Asset] = {}
        shell = b""
        for name, body in files:
            whole.update(name.encode() + b"\0" + body + b"\0")
            if name == SHELL:
                shell = body
                continue
            suffix = name[name.rfind(".") :] if "." in name else ""
            kind = TYPES.get(suffix)
            if kind is None:
                continue  # only known kinds are served (never, e.g., an SVG or an HTML page)
            packed = (
                gzip.compress(body, 9, mtime=0) if kind.startswith("text/") and len(body) > 1024 else None
            )
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            self.files[name] = Asset(body, packed, kind, etag)
        self.build = whole.hexdigest()[:16]
        self.shell = shell.replace(BUILD_MARK.encode(), self.build.encode())

    @classmethod
    def from_package(cls) -> Assets:
        return cls(_walk(resources.files("corral.console") / "static"))

    def response(self, request: web.Request, build: str, path: str) -> web.StreamResponse:
        asset = self.files.get(path)
        if asset is None or build != self.build:
            raise web.HTTPNotFound()
        headers = {"ETag": asset.etag, "Cache-Control": YEAR, "Vary": "Accept-Encoding"}
        if request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers=headers)
        body = asset.body
        if asset.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
            body = asset.gzipped
            headers["Content-Encoding"] = "gzip"
        headers["Content-Type"] = asset.content_type
        return web.Response(body=body, headers=headers)
