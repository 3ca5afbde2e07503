"""The app's parts are corral's own: the data plane serves from them with no aiohttp
application set up, and ``Parts.running()`` stops what it started when a later part fails."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from corral.control.plane import ControlPlane
from corral.edge.server import EdgeServer
from corral.gateway import Gateway
from corral.http.app import create_app
from corral.http.parts import NotStarted
from corral.server import CertificateError, Listener
from tests.support.gateway import MASTER_KEY, make_config

ASK = {"model": "demo/echo", "messages": [{"role": "user", "content": "hello there"}]}


async def test_the_data_plane_serves_from_the_parts_with_no_aiohttp_app_set_up(tmp_path: Path) -> None:
    app = create_app(make_config({}, demo=True), MASTER_KEY, home=tmp_path, env={})
    with pytest.raises(NotStarted):
        app.parts.gateway  # noqa: B018 - the gateway exists only while the parts run
    async with app.running():
        edge = EdgeServer(app.data, 1 << 20, budget=app.parts.body_budget)
        await edge.start("127.0.0.1", 0)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.port}", timeout=10) as client:
                headers = {"Authorization": f"Bearer {MASTER_KEY}"}
                answer = await client.post("/v1/chat/completions", json=ASK, headers=headers)
                ready = await client.get("/readyz")
        finally:
            await edge.close(1.0)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "Echo: hello there"
        assert ready.json()["store"] == "ok"  # the control plane's store, read by the data plane
        accountant = app.parts.accountant
        assert accountant is not None and app.parts.control is not None
        await accountant.drain()
        assert app.parts.metrics.render().count(b"corral_requests_total{") >= 1
    assert not app.control.frozen  # aiohttp never set the control plane's app up
    with pytest.raises(NotStarted, match=r"async with app\.running"):
        app.parts.gateway  # noqa: B018 - stopped: the closed gateway is not handed out
    assert app.parts.accountant is None and app.parts.control is None


async def test_a_part_that_fails_to_start_stops_those_started_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config({}, demo=True)
    gateway = Gateway.create(config)
    stopped: list[str] = []

    async def refuse() -> None:
        raise OSError("the gateway could not start")

    async def closed_gateway() -> None:
        stopped.append("gateway")

    real_close = ControlPlane.close

    async def closed_plane(self: ControlPlane) -> None:
        stopped.append("control plane")
        await real_close(self)

    monkeypatch.setattr(gateway, "start", refuse)
    monkeypatch.setattr(gateway, "close", closed_gateway)
    monkeypatch.setattr(ControlPlane, "close", closed_plane)
    app = create_app(config, MASTER_KEY, home=tmp_path, env={}, gateway=gateway)
    with pytest.raises(OSError, match="could not start"):
        async with app.running():
            pytest.fail("the parts must not run when one of them failed to start")
    assert stopped == ["gateway", "control plane"]  # the last started first


async def test_a_bad_certificate_fails_before_any_part_starts(tmp_path: Path) -> None:
    config = make_config(
        {"admin": {"tls_cert": str(tmp_path / "missing.pem"), "tls_key": str(tmp_path / "missing.key")}},
        demo=True,
    )
    app = create_app(config, MASTER_KEY, home=tmp_path, env={})
    before = asyncio.all_tasks()
    with pytest.raises(CertificateError, match=r"admin\.tls_cert"):
        await Listener.open(app, "127.0.0.1", 0, 1.0, admin_port=0)
    assert asyncio.all_tasks() == before  # no discovery, usage writer or config sync left behind
    assert not app.parts.control  # the store was never opened


async def test_the_control_plane_stops_applying_changes_before_the_gateway_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    stop, close = ControlPlane.stop, Gateway.close

    async def stopped(self: ControlPlane) -> None:
        order.append("control plane stops")
        await stop(self)

    async def closed(self: Gateway) -> None:
        order.append("gateway closes")
        await close(self)

    monkeypatch.setattr(ControlPlane, "stop", stopped)
    monkeypatch.setattr(Gateway, "close", closed)
    app = create_app(make_config({}, demo=True), MASTER_KEY, home=tmp_path, env={})
    async with app.running():
        assert order == []
    # no reload can reach a gateway that is closing: its reload and watch tasks ended first
    assert order[:2] == ["control plane stops", "gateway closes"]
