"""The supervisor of ``corral serve --workers N``: it starts N workers, restarts them, stops them.

It is a plain synchronous process (no event loop, no upstream traffic): it owns the listening
sockets (``corral.supervisor.sockets``), starts each worker as ``corral serve`` in a fresh
interpreter (spawned, not forked, so no state of the supervisor leaks into a worker) with its
index in the environment (``corral.identity``), and then only waits, on one ``select`` over the
ready pipe and the signal wake-up pipe, with a bounded timeout.

* The sockets listen only while a worker serves on them (``corral.supervisor.sockets``): when
  the last live worker has exited, the supervisor stops the listening, so clients are refused
  (and retry elsewhere) instead of waiting in a queue no one accepts from.
* A worker that exits while the supervisor is not stopping is logged with its exit status and
  started again after a back-off (``BACKOFF`` doubled per quick death of that index, up to
  ``MAX_BACKOFF``; a worker that stayed up ``STABLE`` seconds starts the count again).
* More than ``CRASH_LIMIT`` deaths within ``CRASH_WINDOW`` seconds, over all workers, is a
  crash loop: the supervisor stops the others and exits 1.
* SIGTERM or SIGINT is forwarded as SIGTERM to every worker: each stops listening, drains its
  streams and flushes usage within ``server.shutdown_timeout``; a worker still running
  ``KILL_GRACE`` seconds after that is killed, and the supervisor exits 1. A second Ctrl-C
  (SIGINT a second or more after the first) kills the workers at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from corral.identity import COUNT_ENV, INDEX_ENV, RUN_DIR_ENV, SUPERVISOR_ENV
from corral.metrics.fleet import snapshot_path
from corral.supervisor.sockets import env_for, unlisten

log = logging.getLogger("corral.supervisor")

BACKOFF = 0.25  # seconds before restarting a worker after its first quick death
MAX_BACKOFF = 10.0
STABLE = 30.0  # a worker up this long resets its back-off
CRASH_LIMIT = 5  # deaths within CRASH_WINDOW beyond which the supervisor gives up
CRASH_WINDOW = 60.0
KILL_GRACE = 5.0  # seconds past the shutdown timeout before a worker is killed
START_TIMEOUT = 120.0  # all first workers must be listening within this
TICK = 1.0  # the longest the supervisor waits without looking at its workers
FORCE_AFTER = 1.0  # a second Ctrl-C this long after the first kills the workers


@dataclass(slots=True)
class _Worker:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ready: bool = False
    quick_deaths: int = 0
    restart_at: float | None = None


@dataclass(slots=True)
class _Pipes:
    ready_r: int
    ready_w: int
    lifeline_r: int
    lifeline_w: int
    wake_r: int
    wake_w: int
    buffer: bytes = b""

    @classmethod
    def open(cls) -> _Pipes:
        ready_r, ready_w = os.pipe()
        lifeline_r, lifeline_w = os.pipe()
        wake_r, wake_w = os.pipe()
        for fd in (ready_r, wake_r, wake_w):
            os.set_blocking(fd, False)
        return cls(ready_r, ready_w, lifeline_r, lifeline_w, wake_r, wake_w)

    def close(self) -> None:
        for fd in (self.ready_r, self.ready_w, self.lifeline_r, self.lifeline_w, self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class Supervisor:
    """Run ``command`` (a ``corral serve`` command line) as ``workers`` workers on the sockets."""

    command: Sequence[str]
    env: Mapping[str, str]
    workers: int
    data: socket.socket
    admin: socket.socket
    shutdown_timeout: float
    run_dir: str
    clock: Callable[[], float] = time.monotonic
    _fleet: list[_Worker] = field(default_factory=list)
    _deaths: deque[float] = field(default_factory=deque)
    _signals: list[tuple[int, float]] = field(default_factory=list)  # (signal, when)

    def run(self, on_ready: Callable[[], None]) -> int:
        """Serve until a signal (0, or 1 if a worker had to be killed) or a crash loop (1)."""
        pipes = _Pipes.open()
        previous = self._install(pipes.wake_w)
        try:
            return self._loop(pipes, on_ready)
        finally:
            self._stop_all(signal.SIGKILL)  # only workers still running after everything else
            self._restore(previous)
            pipes.close()

    def _loop(self, pipes: _Pipes, on_ready: Callable[[], None]) -> int:
        self._fleet = [_Worker(i) for i in range(self.workers)]
        for worker in self._fleet:
            self._spawn(worker, pipes)
        announced = False
        start_deadline = self.clock() + START_TIMEOUT
        while True:
            self._wait(pipes)
            if self._signals:
                return self._shutdown(pipes)
            now = self.clock()
            if self._reap(now):
                log.error(
                    "workers keep dying: %d exits within %.0f s. Stopping; see the workers' errors above.",
                    len(self._deaths), CRASH_WINDOW,
                )  # fmt: skip
                self._shutdown(pipes)
                return 1
            if not self._refuse_while_none_runs():
                self._shutdown(pipes)
                return 1
            for worker in self._fleet:
                if worker.restart_at is not None and now >= worker.restart_at:
                    self._spawn(worker, pipes)
            if not announced and all(w.ready for w in self._fleet):
                announced = True
                on_ready()
            if not announced and now > start_deadline:
                log.error("the workers did not all start listening within %.0f s; stopping", START_TIMEOUT)
                self._shutdown(pipes)
                return 1

    def _spawn(self, worker: _Worker, pipes: _Pipes) -> None:
        env = {
            **self.env,
            INDEX_ENV: str(worker.index),
            COUNT_ENV: str(self.workers),
            SUPERVISOR_ENV: str(os.getpid()),
            RUN_DIR_ENV: self.run_dir,
            **env_for(self.data, self.admin, pipes.ready_w, pipes.lifeline_r),
        }
        fds = (self.data.fileno(), self.admin.fileno(), pipes.ready_w, pipes.lifeline_r)
        worker.proc = subprocess.Popen(list(self.command), env=env, pass_fds=fds)  # noqa: S603 - our own command
        worker.started, worker.ready, worker.restart_at = self.clock(), False, None
        log.info("worker %d started (pid %d)", worker.index, worker.proc.pid)

    def _wait(self, pipes: _Pipes) -> None:
        """Until a signal, a ready line or the next due restart (at most ``TICK``)."""
        due = [w.restart_at for w in self._fleet if w.restart_at is not None]
        timeout = max(0.0, min([TICK, *(d - self.clock() for d in due)]))
        readable, _, _ = select.select([pipes.ready_r, pipes.wake_r], [], [], timeout)
        if pipes.wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(pipes.wake_r, 512)
        if pipes.ready_r in readable:
            with contextlib.suppress(BlockingIOError):
                pipes.buffer += os.read(pipes.ready_r, 4096)
            *lines, pipes.buffer = pipes.buffer.split(b"\n")
            pids = {int(line) for line in lines if line.strip().isdigit()}
            for worker in self._fleet:
                if worker.proc is not None and worker.proc.pid in pids:
                    worker.ready = True
                    log.info("worker %d (pid %d) is listening", worker.index, worker.proc.pid)

    def _reap(self, now: float) -> bool:
        """Note exited workers and schedule their restarts; True when it is a crash loop."""
        for worker in self._fleet:
            if worker.proc is None or worker.proc.poll() is None:
                continue
            code, pid = worker.proc.returncode, worker.proc.pid
            worker.proc = None
            worker.quick_deaths = 1 if now - worker.started >= STABLE else worker.quick_deaths + 1
            delay = min(MAX_BACKOFF, BACKOFF * 2 ** (worker.quick_deaths - 1))
            worker.restart_at = now + delay
            log.warning(
                "worker %d (pid %d) %s; starting it again in %.2f s",
                worker.index, pid, describe_exit(code), delay,
            )  # fmt: skip
            self._deaths.append(now)
            snapshot_path(self.run_dir, worker.index).unlink(missing_ok=True)  # its gauges are gone
        while self._deaths and self._deaths[0] < now - CRASH_WINDOW:
            self._deaths.popleft()
        return len(self._deaths) > CRASH_LIMIT

    def _refuse_while_none_runs(self) -> bool:
        """With no worker process alive, nobody holds the sockets but this process: stop their
        listening (queued connections are reset, new ones refused) until the next worker serves
        and listens again. Only then, so no worker can be accepting on them meanwhile. False if
        a port was lost."""
        if any(w.proc is not None for w in self._fleet):
            return True
        try:
            stopped = [unlisten(sock) for sock in (self.data, self.admin)]
        except OSError as exc:
            log.error("cannot keep the ports while no worker runs (%s); stopping", exc.strerror or exc)
            return False
        if any(stopped):
            log.warning("no worker is running: connections are refused until one listens again")
        return True

    def _shutdown(self, pipes: _Pipes) -> int:
        """Forward SIGTERM, wait for every worker to drain; kill what outlives the deadline."""
        log.info(
            "stopping %d workers: draining in-flight requests (up to %.0f s)",
            self.workers, self.shutdown_timeout,
        )  # fmt: skip
        # the supervisor's own copies first: once the workers close theirs, the ports are closed
        # (new connections are refused, so clients go to another replica, not into a dead queue)
        self.data.close()
        self.admin.close()
        self._stop_all(signal.SIGTERM)
        first = self.clock()
        deadline = self.clock() + self.shutdown_timeout + KILL_GRACE
        while any(w.proc is not None for w in self._fleet):
            for worker in self._fleet:
                if worker.proc is not None and worker.proc.poll() is not None:
                    log.info(
                        "worker %d (pid %d) %s",
                        worker.index,
                        worker.proc.pid,
                        describe_exit(worker.proc.returncode),
                    )
                    worker.proc = None
            remaining = deadline - self.clock()
            if remaining <= 0 or self._forced(first):
                log.error(
                    "workers still running after the shutdown timeout (or a second signal): killing them"
                )
                self._stop_all(signal.SIGKILL)
                return 1
            if any(w.proc is not None for w in self._fleet):
                select.select([pipes.wake_r], [], [], min(remaining, 0.1))  # woken by SIGCHLD
                with contextlib.suppress(BlockingIOError):
                    os.read(pipes.wake_r, 512)
        return 0

    def _forced(self, since: float) -> bool:
        """A second SIGINT (Ctrl-C again) at least ``FORCE_AFTER`` s after shutdown began.
        Repeats of SIGTERM are ignored: tools such as ``timeout`` send it to the process and
        to its group at once."""
        return any(sig == signal.SIGINT and at >= since + FORCE_AFTER for sig, at in self._signals)

    def _stop_all(self, sig: int) -> None:
        for worker in self._fleet:
            if worker.proc is not None and worker.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(sig)
                if sig == signal.SIGKILL:
                    worker.proc.wait(10)
            worker.restart_at = None

    def _install(self, wake_fd: int) -> dict[int, object]:
        previous: dict[int, object] = {}
        signal.set_wakeup_fd(wake_fd, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)
        return previous

    def _on_signal(self, sig: int, _frame: object) -> None:
        if sig != signal.SIGCHLD and len(self._signals) < 100:
            self._signals.append((sig, self.clock()))

    def _restore(self, previous: dict[int, object]) -> None:
        signal.set_wakeup_fd(-1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def describe_exit(code: int | None) -> str:
    """``exited with status 3`` or ``was killed by SIGKILL``."""
    if code is None:
        return "is running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"
