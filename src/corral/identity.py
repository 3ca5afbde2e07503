"""This process's place in the fleet: which host, which process, which worker of how many.

``corral serve --workers N`` starts N worker processes under a supervisor (corral.supervisor)
and tells each its index through the environment (``CORRAL_WORKER_INDEX``, ``CORRAL_WORKER_COUNT``,
``CORRAL_SUPERVISOR_PID``); a single-process gateway is worker 0 of 1. The app reads it once at
start (``from_env``) and shows it in ``/admin/health``; the usage spill file and the metrics
snapshot are named after the index, so a restarted worker takes over its predecessor's files.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

INDEX_ENV = "CORRAL_WORKER_INDEX"
COUNT_ENV = "CORRAL_WORKER_COUNT"
SUPERVISOR_ENV = "CORRAL_SUPERVISOR_PID"
RUN_DIR_ENV = "CORRAL_WORKER_RUN_DIR"  # the supervisor run's directory (metrics snapshots)


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    host: str
    pid: int
    index: int = 0
    workers: int = 1
    supervisor_pid: int | None = None  # None: a single process, no supervisor
    run_dir: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerIdentity:
        """This process, as the supervisor described it (or worker 0 of 1 without one)."""
        supervisor = env.get(SUPERVISOR_ENV, "")
        if not supervisor.isdigit():
            return cls(socket.gethostname(), os.getpid())
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            index=int(env.get(INDEX_ENV, "0") or 0),
            workers=max(1, int(env.get(COUNT_ENV, "1") or 1)),
            supervisor_pid=int(supervisor),
            run_dir=env.get(RUN_DIR_ENV) or None,
        )

    @property
    def name(self) -> str:
        """``host/worker-index``: how logs and metrics name this worker."""
        return f"{self.host}/{self.index}"

    def view(self) -> dict[str, object]:
        """What /admin/health shows."""
        return {
            "host": self.host,
            "pid": self.pid,
            "index": self.index,
            "workers": self.workers,
            "supervisor_pid": self.supervisor_pid,
        }
