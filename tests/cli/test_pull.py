"""``corral pull``: progress per instance and a summary, against emulated Ollama instances."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread


def pull(gw: GatewayServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    return subprocess.run(
        [sys.executable, "-m", "corral", "pull", *args, "--url", gw.url, "--key", gw.key],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_pull_onto_every_instance_and_onto_one() -> None:
    a, b = OllamaEmulator(), OllamaEmulator(registry=[{"name": "llama3.2"}])
    with ServerThread(a.app) as sa, ServerThread(b.app) as sb:
        config = make_config(
            {
                "providers": [
                    {"name": "gpu1", "type": "ollama", "base_url": sa.url},
                    {"name": "gpu2", "type": "ollama", "base_url": sb.url},
                ]
            }
        )
        with GatewayServer(config) as gw:
            everywhere = pull(gw, "phi4-mini")
            one = pull(gw, "gemma3", "--instance", "gpu1")
    assert everywhere.returncode == 1  # gpu2's registry does not have phi4-mini
    assert "pulled on 1 of 2 instance(s): gpu1" in everywhere.stdout
    assert "gpu2: pull model manifest: file does not exist" in everywhere.stdout
    assert "phi4-mini:latest" in a.models and "phi4-mini:latest" not in b.models
    assert one.returncode == 0 and "gemma3: pulled on 1 of 1 instance(s): gpu1" in one.stdout
    assert "gpu1" in one.stdout and "success" in one.stdout
    assert "gemma3:latest" not in b.models
