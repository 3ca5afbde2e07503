"""What every admin route shares: the authenticator, the running gateway and control plane,
one lock that serialises configuration changes, JSON replies, and the admin-only errors.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from corral.config.schema import Config
from corral.control.plane import ControlPlane
from corral.errors import CorralError, InvalidRequest
from corral.gateway import Gateway
from corral.http.auth import Authenticator
from corral.http.parts import Parts
from corral.keys.principal import Principal


class Conflict(InvalidRequest):
    """The change contradicts the current state (HTTP 409): a name the config file manages,
    or an object something else still refers to."""

    status = 409


class NoControlPlane(CorralError):
    """The gateway runs without a data directory, so nothing can be changed through the API."""

    status = 503
    error_type = "server_error"

    def __init__(self) -> None:
        super().__init__(
            "This gateway runs without its control plane (no data directory), so providers, aliases "
            "and keys cannot be managed through the API. Start it with `corral serve`.",
            code="control_plane_disabled",
        )


def config_managed(kind: str, name: str) -> Conflict:
    return Conflict(
        f"The {kind} '{name}' is managed by the config file, so it is read-only through the API. "
        "Change it in the YAML file and restart corral, or use another name.",
        code="managed_by_config",
        param="name",
    )


def reply(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def listing(rows: list[dict[str, Any]]) -> web.Response:
    return reply({"object": "list", "data": rows})


@dataclass
class AdminContext:
    auth: Authenticator
    parts: Parts  # the running gateway and control plane, shared with the data plane
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one config change at a time

    def admin(self, request: web.Request) -> Principal:
        """Admin scope or 401/403: the first call of every admin handler."""
        return self.auth.admin(request)

    def gateway(self, request: web.Request) -> Gateway:
        return self.parts.gateway

    def base_config(self, request: web.Request) -> Config:
        """The YAML configuration: the control plane's base, else the running gateway's."""
        plane = self.parts.control
        return plane.base if plane is not None else self.parts.gateway.config

    def plane(self, request: web.Request) -> ControlPlane:
        plane = self.parts.control
        if plane is None:
            raise NoControlPlane()
        return plane
