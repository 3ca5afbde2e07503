"""The corral container as the rendered Deployment runs it, on this machine: the image's
``corral serve`` with the Deployment's arguments (``--workers`` expanded from the CPU limit as
the kubelet expands it), its environment, the ConfigMap's corral.yaml and the Secret's keys
(test values) on a real PostgreSQL and Redis, in front of an Ollama emulator.

What differs from the pod, and why: the listeners bind 127.0.0.1 (``--host``/``--admin-host``)
instead of the pod's addresses, and the providers' ``base_url`` points at the emulator instead
of the cluster's Ollama (tests send nothing off this machine)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from corral.security.crypto import generate_key
from tests.deploy.manifests import render
from tests.deploy.test_kubernetes import _cpus
from tests.emulators.ollama import OllamaEmulator
from tests.support.servers import ServerThread, free_port

MASTER = "sk-deploy-pod-test-master-key-0123456789"


def pod_env(container: dict[str, Any], home: Path, secret: dict[str, str], prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "OLLAMA_"))}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item["valueFrom"].get("resourceFieldRef", {}).get("resource") == "limits.cpu":
            env[item["name"]] = str(_cpus(container["resources"]["limits"]["cpu"]))
        else:
            raise AssertionError(f"an env source the test does not know: {item}")
    env["CORRAL_HOME"] = str(home)  # the emptyDir
    env["CORRAL_REDIS_PREFIX"] = prefix  # this test's own keys
    env.update(secret)  # envFrom: the Secret, patched
    return env


def pod_args(container: dict[str, Any], env: dict[str, str], config: Path) -> list[str]:
    args = [a.replace("$(CORRAL_WORKERS)", env["CORRAL_WORKERS"]) for a in container["args"]]
    args[args.index("--config") + 1] = str(config)
    return args


def until_ready(proc: subprocess.Popen[str], url: str, allowed: float) -> httpx.Response:
    """/readyz's first 200, within ``allowed`` seconds (what the startup probe allows)."""
    deadline = time.monotonic() + allowed
    while True:
        try:
            answer = httpx.get(url + "/readyz", timeout=2)
            if answer.status_code == 200:
                return answer
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the pod's command never became ready:\n{proc.communicate(timeout=10)[0]}")
        time.sleep(0.1)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("overlay", ["overlays/postgres-redis", "overlays/monitoring"])
def test_the_pods_command_serves_with_its_config_map_and_secret(
    overlay: str, postgres_url: str, redis_prefix: tuple[str, str], tmp_path: Path
) -> None:
    rendering = render(overlay)
    container = rendering.gateway()
    grace = rendering.one("Deployment", "corral")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    ollama = OllamaEmulator()
    with ServerThread(ollama.app) as upstream:
        config = yaml.safe_load(rendering.config_text())
        for provider in config["providers"]:
            provider["base_url"] = upstream.url
        config_file = tmp_path / "etc" / "corral" / "corral.yaml"
        config_file.parent.mkdir(parents=True)
        config_file.write_text(yaml.safe_dump(config))
        secret = {
            "CORRAL_MASTER_KEY": MASTER,
            "CORRAL_ENCRYPTION_KEY": generate_key(),
            "CORRAL_DATABASE_URL": postgres_url,
            "CORRAL_REDIS_URL": redis_prefix[0],
            "OLLAMA_API_KEY": "ollama-cloud-test-key",
        }
        home = tmp_path / "home"
        home.mkdir(mode=0o700)
        env = pod_env(container, home, secret, f"{redis_prefix[1]}:")
        port, admin_port = free_port(), free_port()
        argv = [
            *pod_args(container, env, config_file),
            "--host", "127.0.0.1", "--port", str(port), "--admin-host", "127.0.0.1",
            "--admin-port", str(admin_port),
        ]  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "corral", "serve", *argv],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        data, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
        try:
            startup = container["startupProbe"]
            ready = until_ready(proc, data, startup["periodSeconds"] * startup["failureThreshold"])
            assert ready.json()["status"] == "ready" and ready.json()["store"] == "ok"
            assert httpx.get(data + "/healthz", timeout=5).status_code == 200
            answer = httpx.post(
                data + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {MASTER}"},
                json={"model": "ollama/llama3.2", "messages": [{"role": "user", "content": "hi"}]},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-corral-provider"] == "ollama"
            metrics = httpx.get(admin + "/metrics", timeout=10)
            if overlay == "overlays/monitoring":  # what Prometheus gets: no key needed
                assert metrics.status_code == 200 and "corral_" in metrics.text
            else:
                assert metrics.status_code == 401
                keyed = httpx.get(admin + "/metrics", headers={"Authorization": f"Bearer {MASTER}"})
                assert keyed.status_code == 200
            health = httpx.get(admin + "/admin/health", headers={"Authorization": f"Bearer {MASTER}"})
            worker = health.json()["worker"]  # one worker of as many as the CPU limit, supervised
            assert worker["workers"] == int(env["CORRAL_WORKERS"]) == 2
            assert worker["supervisor_pid"] == proc.pid
            assert not (home / "master_key").exists()  # the key comes from the Secret
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)  # what the kubelet sends after preStop
            output, _ = proc.communicate(timeout=grace)
            took = time.monotonic() - started
            assert proc.returncode == 0, output
            assert pre_stop + took < grace
            assert MASTER not in output and secret["CORRAL_ENCRYPTION_KEY"] not in output
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
