"""``corral serve --workers N`` as a real process for the tests: start, wait, look, stop.

A ``Replica`` runs the command with its own environment, reads its output in a thread (an
event is set when the addresses are printed, i.e. when every worker listens) and finds its
workers through ``/proc/<pid>/task/<pid>/children``. ``Load`` sends requests from a few
threads, each on a new connection, and keeps every outcome with its times.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

READY = "control plane (admin API, metrics) on "
KEY = "sk-test-" + "w" * 32


class Replica:
    def __init__(
        self, home: Path, config: Path, port: int, admin_port: int, env: dict[str, str], workers: str = "2"
    ) -> None:
        self.home, self.config, self.port, self.admin_port = home, config, port, admin_port
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "OLLAMA_"))}
        self.env.update(
            {"CORRAL_HOME": str(home), "CORRAL_MASTER_KEY": KEY, "OLLAMA_HOST": "127.0.0.1:9", **env}
        )
        self.workers = workers
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.ended = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, *extra: str) -> Replica:
        self.lines, self.ready, self.ended = [], threading.Event(), threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "corral", "serve", "--config", str(self.config), "--workers", self.workers,
             "--port", str(self.port), "--admin-port", str(self.admin_port), *extra],
            env=self.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)
            if line.startswith(("Master key: from", "Use it as:")) and READY in self.output:
                self.ready.set()  # the last line of the announcement
        self.ended.set()

    def wait_ready(self, timeout: float = 180) -> Replica:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.2):
            if self.ended.is_set() or time.monotonic() > deadline:
                raise AssertionError(f"corral did not start:\n{self.output}")
        return self

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def workers_now(self) -> set[int]:
        """The supervisor's children now (its workers)."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return set()
        return {int(p) for p in text.split()}

    def health(self) -> dict[str, object]:
        """/admin/health on a new connection (so any worker may answer)."""
        resp = httpx.get(
            self.admin_url + "/admin/health", headers={"Authorization": f"Bearer {KEY}"}, timeout=10
        )
        resp.raise_for_status()
        body: dict[str, object] = resp.json()
        return body

    def terminate(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.ended.wait(10)
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in self.workers_now():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` (each call does real I/O to the gateway) until true, within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Outcome:
    started: float
    ended: float
    ok: bool
    error: str = ""


@dataclass
class Load:
    """``threads`` clients sending ``send(url)`` in a loop (each on a new connection) until
    ``stop()`` or ``limit`` requests; ``urls`` in turn, the next one when a connection is refused."""

    urls: list[str]
    send: Callable[[str], None]
    threads: int = 4
    limit: int = 2000
    retry_refused: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for i in range(self.threads):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def _run(self, i: int) -> None:
        turn = i
        while not self._stop.is_set() and len(self.outcomes) < self.limit:
            started = time.monotonic()
            for attempt in range(20 if self.retry_refused else 1):
                url = self.urls[(turn + attempt) % len(self.urls)]
                try:
                    self.send(url)
                except httpx.ConnectError as exc:
                    if self.retry_refused and attempt < 19:
                        continue
                    self._add(Outcome(started, time.monotonic(), False, f"{type(exc).__name__}: {exc}"))
                except (httpx.HTTPError, AssertionError, ValueError, KeyError) as exc:
                    self._add(Outcome(started, time.monotonic(), False, f"{type(exc).__name__}: {exc}"))
                else:
                    self._add(Outcome(started, time.monotonic(), True))
                break
            turn += 1

    def _add(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def succeeded_since(self, at: float) -> int:
        with self._lock:
            return sum(1 for o in self.outcomes if o.ok and o.started >= at)

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._workers:
            thread.join(60)
        assert not any(t.is_alive() for t in self._workers), "a load thread did not finish"
        return list(self.outcomes)
