"""A connection to a supervisor's ports is accepted by a serving worker or refused, never left
waiting in a queue no one accepts from: while the first worker starts, and while no worker runs
(all died, a restart pending). Real sockets, the real ``Supervisor``, a stand-in worker
(``fake_worker.py``) that the test lets serve when it chooses.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

pytestmark = pytest.mark.timeout(120)
FAKE = Path(__file__).with_name("fake_worker.py")
T = TypeVar("T")


def until(what: str, probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    """Poll ``probe`` until it returns something, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def attempt(port: int) -> str:
    """``refused``, ``reset`` (accepted by the kernel, then dropped) or ``pid <n>`` (answered);
    ``hung`` when a connection was accepted and nothing came within 5 s."""
    with socket.socket() as sock:
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", port))
            line = sock.makefile("rb").readline()
        except ConnectionRefusedError:
            return "refused"
        except ConnectionResetError:
            return "reset"
        except TimeoutError:
            return "hung"
    return f"pid {int(line)}" if line.strip() else "reset"


class Supervised:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKE), "supervise", str(directory)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ),
        )  # fmt: skip
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        ports = until("the ports", lambda: next((s for s in self.lines if s.startswith("ports ")), None))
        self.data, self.admin = (int(p) for p in ports.split()[1:])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def started(self, besides: set[int] = frozenset()) -> int:  # type: ignore[assignment]
        """The pid of a worker that has started (and is waiting to be released)."""

        def found() -> int | None:
            pids = {int(p.name.split("-")[1]) for p in self.dir.glob("started-*")} - besides
            return min(pids) if pids else None

        return until("a worker to start", found)

    def release(self, pid: int) -> None:
        (self.dir / f"release-{pid}").touch()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Supervised]:
    running = Supervised(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def test_connections_are_refused_until_a_worker_serves(supervised: Supervised) -> None:
    first = supervised.started()
    assert attempt(supervised.data) == "refused"  # bound, but no worker listens yet
    assert attempt(supervised.admin) == "refused"
    supervised.release(first)
    assert until("the worker to answer", lambda: attempt(supervised.data) == f"pid {first}" or None)


def test_while_no_worker_runs_connections_are_refused_then_served_on_the_same_port(
    supervised: Supervised,
) -> None:
    first = supervised.started()
    supervised.release(first)
    until("the first worker to answer", lambda: attempt(supervised.data) == f"pid {first}" or None)

    os.kill(first, signal.SIGKILL)  # the only worker dies; its restart is pending
    seen: list[str] = []

    def refused() -> bool | None:
        seen.append(attempt(supervised.data))
        return seen[-1] == "refused" or None

    until("connections to be refused while no worker runs", refused)
    assert "hung" not in seen and not any(s.startswith("pid") for s in seen), seen

    second = supervised.started(besides={first})  # the restart, not serving yet
    assert attempt(supervised.data) == "refused" and attempt(supervised.admin) == "refused"
    supervised.release(second)
    until("the restarted worker to answer", lambda: attempt(supervised.data) == f"pid {second}" or None)
    assert any("connections are refused until one listens again" in line for line in supervised.lines)
