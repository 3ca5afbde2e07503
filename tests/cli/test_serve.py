"""``corral serve`` as a user runs it: a real process, its key file, its refusals, its shutdown."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.emulators.ollama import OllamaEmulator
from tests.support.servers import ServerThread, free_port

CORRAL = [sys.executable, "-m", "corral"]


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "OLLAMA_"))}
    env.update({"CORRAL_HOME": str(home), "OLLAMA_HOST": f"127.0.0.1:{free_port()}", **extra})
    return env


@contextmanager
def serving(args: list[str], env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str, float]]:
    port = free_port()
    admin_port = free_port()
    proc = subprocess.Popen(
        [*CORRAL, "serve", "--port", str(port), "--admin-port", str(admin_port), *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    started = time.monotonic()
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() - started > 15:
                raise AssertionError(f"corral did not start:\n{proc.communicate(timeout=5)[0]}")
            time.sleep(0.02)
        yield proc, url, time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)


def admin_url_printed(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """The startup output up to the control plane's line (printed before the first request is
    served), and the address on it."""
    assert proc.stdout is not None
    marker = "control plane (admin API, metrics) on "
    seen = ""
    while marker not in seen:
        line = proc.stdout.readline()
        assert line, f"corral ended its output without naming the control plane:\n{seen}"
        seen += line
    return seen, seen.split(marker, 1)[1].split()[0]


def test_first_start_creates_a_0600_key_prints_it_once_and_serves_both_planes(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    with serving(["--demo"], env) as (proc, url, _ready_after):
        key = (tmp_path / "master_key").read_text().strip()
        auth = {"Authorization": f"Bearer {key}"}
        resp = httpx.post(
            url + "/v1/chat/completions",
            headers=auth,
            json={"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert resp.json()["choices"][0]["message"]["content"] == "Echo: hi"
        # the admin API lives on the control plane only, at the address printed at start; the data
        # plane names the settings, never the address
        started, admin_url = admin_url_printed(proc)
        on_data = httpx.get(url + "/admin/keys", headers=auth)
        assert on_data.status_code == 404 and "admin.port" in on_data.json()["error"]["message"]
        assert admin_url.startswith("http://127.0.0.1:") and admin_url not in on_data.text
        assert httpx.get(admin_url + "/admin/keys", headers=auth).status_code == 200
        assert httpx.get(admin_url + "/v1/models", headers=auth).status_code == 404
    out = started + (proc.stdout.read() if proc.stdout else "")
    assert f"control plane (admin API, metrics) on {admin_url}" in out
    assert stat.S_IMODE((tmp_path / "master_key").stat().st_mode) == 0o600
    assert out.count(key) == 1
    with serving(["--demo"], env) as (proc, _url, _t):
        pass
    again = proc.stdout.read() if proc.stdout else ""
    assert key not in again and "Master key: from file" in again


def test_non_loopback_bind_without_a_key_is_refused(tmp_path: Path) -> None:
    out = subprocess.run(
        [*CORRAL, "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 2
    assert "CORRAL_MASTER_KEY" in out.stderr and "127.0.0.1" in out.stderr
    assert not (tmp_path / "master_key").exists()


def test_config_error_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("providers:\n  - {name: a, type: ollama, base_url: 'http://x', timout: 5}\n")
    out = subprocess.run(
        [*CORRAL, "serve", "--config", str(config)],
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 2
    assert str(config) in out.stderr and "providers[0].timout" in out.stderr and "timeout" in out.stderr


def test_check_validates_a_config(tmp_path: Path) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text("providers:\n  - {name: gpu, type: ollama, base_url: 'http://10.0.0.5:11434'}\n")
    out = subprocess.run(
        [*CORRAL, "check", "--config", str(config)],
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 0 and "OK" in out.stdout and "gpu" in out.stdout


@pytest.mark.timeout(60)
def test_sigterm_drains_an_in_flight_stream(tmp_path: Path) -> None:
    emu = OllamaEmulator(token_delay=0.2)
    with ServerThread(emu.app) as upstream:
        config = tmp_path / "c.yaml"
        config.write_text(f"providers:\n  - {{name: slow, type: ollama, base_url: '{upstream.url}'}}\n")
        key = "k" * 32
        with serving(["--config", str(config)], env_for(tmp_path, CORRAL_MASTER_KEY=key)) as (proc, url, _):
            body: list[str] = []
            first = threading.Event()

            def consume() -> None:
                with httpx.stream(
                    "POST",
                    url + "/v1/chat/completions",
                    headers={"Authorization": f"Bearer {key}"},
                    json={
                        "model": "slow/llama3.2",
                        "stream": True,
                        "messages": [{"role": "user", "content": "one two three four five"}],
                    },
                    timeout=30,
                ) as resp:
                    for line in resp.iter_lines():
                        body.append(line)
                        first.set()

            reader = threading.Thread(target=consume)
            reader.start()
            assert first.wait(10)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            with pytest.raises(httpx.TransportError):  # the listener is closed to new requests
                httpx.get(url + "/healthz", timeout=1)
            reader.join(20)
            assert proc.wait(20) == 0
    events = [line.removeprefix("data: ") for line in body if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Echo: one two three four five"
