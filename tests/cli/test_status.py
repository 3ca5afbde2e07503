"""``corral status`` against a running gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread, free_port


def status(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["CORRAL_HOME"] = "/nonexistent-corral-home"
    return subprocess.run(
        [sys.executable, "-m", "corral", "status", *args], capture_output=True, text=True, timeout=30, env=env
    )


def test_status_shows_each_deployment_and_its_state() -> None:
    emu = OllamaEmulator()
    emu.loaded["llama3.2:latest"] = 4096
    with ServerThread(emu.app) as up:
        config = make_config(
            {
                "providers": [
                    {"name": "gpu", "type": "ollama", "base_url": up.url},
                    {"name": "laptop", "type": "ollama", "base_url": f"http://127.0.0.1:{free_port()}"},
                ]
            }
        )
        with GatewayServer(config) as gw:
            gw.call(lambda: gw.gateway.health.check_all())
            table = status("--url", gw.admin_url, "--key", gw.key)
            raw = status("--url", gw.admin_url, "--key", gw.key, "--json")
            wrong = status("--url", gw.admin_url, "--key", "nope")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "TYPE", "STATE"]
    gpu = next(line for line in lines if line.startswith("gpu"))
    laptop = next(line for line in lines if line.startswith("laptop"))
    assert "healthy" in gpu and "llama3.2:latest" in gpu
    assert "ejected" in laptop and "unreachable" in laptop
    states = {d["name"]: d["state"] for d in json.loads(raw.stdout)["deployments"]}
    assert states == {"gpu": "healthy", "laptop": "ejected"}
    assert wrong.returncode == 1 and "refused the key" in wrong.stderr


def test_status_says_when_corral_is_not_running() -> None:
    out = status("--url", f"http://127.0.0.1:{free_port()}", "--key", "k")
    assert out.returncode == 1 and "Is it running" in out.stderr
