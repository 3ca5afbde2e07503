"""Build and run a real corral gateway in-process, on a loopback port, from a config."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from corral.config import Config
from corral.config.loader import parse_config
from corral.gateway import Gateway
from corral.http.app import create_app
from tests.support.servers import ServerThread

MASTER_KEY = "sk-test-master-0123456789abcdef"


def make_config(
    data: Mapping[str, Any] | str, *, demo: bool = False, env: Mapping[str, str] | None = None
) -> Config:
    parsed = yaml.safe_load(data) if isinstance(data, str) else dict(data)
    return parse_config(parsed, source="test.yaml", env=env or {}, demo=demo)


class GatewayServer(ServerThread):
    """A gateway on loopback. With ``home`` the control plane runs too (a SQLite store there, or
    the database ``env`` names in CORRAL_DATABASE_URL)."""

    def __init__(
        self,
        config: Config,
        key: str = MASTER_KEY,
        *,
        home: Path | None = None,
        env: Mapping[str, str] | None = None,
        loop: str = "asyncio",
    ) -> None:
        super().__init__(lambda: create_app(config, key, home=home, env=dict(env or {})), loop=loop)
        self.key = key
        self.config = config

    @property
    def gateway(self) -> Gateway:
        assert self.app is not None
        return self.app.parts.gateway

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def start(self) -> GatewayServer:
        super().start()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10) -> None:
        """Wait until the first discovery round is done (readyz leaves 'starting')."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = httpx.get(self.url + "/readyz").json()["status"]
            if status != "starting":
                return
            time.sleep(0.02)
        raise TimeoutError("gateway did not finish its first discovery round")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def __enter__(self) -> GatewayServer:
        return self.start()


def write_config(tmp: Path, text: str) -> Path:
    path = tmp / "corral.yaml"
    path.write_text(text)
    return path
