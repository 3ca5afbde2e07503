"""The data plane's route table: every client-facing route of every surface, looked up once
per request by the edge when a request head is complete.

A route names its handler (written against ``Exchange``), who may call it (checked from the
head alone, before any body byte is read or ``100 Continue`` is sent) and its surface, which
chooses the error envelope of everything answered on it: the one place that choice is made.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from corral.conversation.call import Surface
from corral.http.exchange import Exchange
from corral.keys.principal import Principal

Handler = Callable[[Exchange], Awaitable[None]]
Access = Literal["open", "key", "admin"]
# checks the key in a request head; raises AuthenticationFailed / PermissionDenied
Gate = Callable[[Mapping[str, str], bool], Principal]

# paths that belong to the control plane; asked for on the data plane, they get a 404 that
# names the control plane's address
CONTROL_PREFIXES = ("/admin", "/metrics", "/console")


@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler
    access: Access = "key"
    surface: Surface = Surface.OPENAI  # the API its answers, errors included, are written in


@dataclass(frozen=True, slots=True)
class Match:
    route: Route | None  # None: no route for this method (see ``allow``) or path
    allow: tuple[str, ...] = ()  # the methods the path has, when the method was wrong
    rest: str = ""  # what follows a prefix route's prefix (e.g. the model of /v1/models/<model>)


class RouteTable:
    """(method, path) -> route, plus prefix routes; built once when the app is built."""

    __slots__ = ("_exact", "_prefixes", "gate")

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self._exact: dict[str, dict[str, Route]] = {}
        self._prefixes: list[tuple[str, dict[str, Route]]] = []

    def add(self, methods: Iterable[str], path: str, route: Route) -> None:
        by_method = self._exact.setdefault(path, {})
        for method in methods:
            by_method[method] = route

    def add_prefix(self, methods: Iterable[str], prefix: str, route: Route) -> None:
        """Every path that starts with ``prefix`` and has more after it."""
        by_method: dict[str, Route] = {}
        for method in methods:
            by_method[method] = route
        self._prefixes.append((prefix, by_method))

    def match(self, method: str, path: str) -> Match:
        by_method = self._exact.get(path)
        rest = ""
        if by_method is None:
            for prefix, routes in self._prefixes:
                if path.startswith(prefix) and len(path) > len(prefix):
                    by_method, rest = routes, path[len(prefix) :]
                    break
            else:
                return Match(None)
        route = by_method.get(method)
        if route is None and method == "HEAD":
            route = by_method.get("GET")
        if route is None:
            allowed = set(by_method)
            if "GET" in allowed:
                allowed.add("HEAD")
            return Match(None, tuple(sorted(allowed)))
        return Match(route, rest=rest)

    def paths(self) -> list[str]:
        return sorted(self._exact)


def surface_of_path(path: str) -> Surface:
    """The surface whose envelope answers a request that matched no route (or was refused
    before its route was looked up): Ollama's under /api/, Anthropic's under /v1/messages, the
    Responses API's under /v1/responses, else OpenAI's."""
    if path.startswith("/api/"):
        return Surface.OLLAMA
    if path.startswith("/v1/messages"):
        return Surface.MESSAGES
    if path.startswith("/v1/responses"):
        return Surface.RESPONSES
    return Surface.OPENAI


def control_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in CONTROL_PREFIXES)
