"""How many workers ``--workers auto`` means: the CPUs this process may use.

The smaller of the CPUs the scheduler lets it run on (``os.sched_getaffinity``: ``taskset``,
``docker --cpuset-cpus``) and its cgroup's CPU quota (``cpu.max`` on cgroup v2,
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` on v1: a Kubernetes CPU limit), rounded down, at
least 1. A quota of 1.5 CPUs is 1 worker: a second one would be throttled, not faster.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Literal

CGROUP = Path("/sys/fs/cgroup")


def usable_cpus(cgroup: Path = CGROUP, proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    quota = cpu_quota(cgroup, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, int(quota))
    return max(1, cpus)


def resolve(workers: int | Literal["auto"]) -> int:
    return usable_cpus() if workers == "auto" else workers


def cpu_quota(cgroup: Path, proc_cgroup: Path) -> float | None:
    """The CPU quota in CPUs (e.g. 2.0), or None when there is none or it cannot be read."""
    for directory in _candidates(cgroup, proc_cgroup):
        v2 = _read(directory / "cpu.max")
        if v2 is not None:
            quota, _, period = v2.partition(" ")
            if quota == "max":
                return None
            with contextlib.suppress(ValueError, ZeroDivisionError):
                return int(quota) / int(period or "100000")
        v1, period_v1 = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
        if v1 is not None and period_v1 is not None:
            with contextlib.suppress(ValueError, ZeroDivisionError):
                return None if int(v1) <= 0 else int(v1) / int(period_v1)
    return None


def _candidates(cgroup: Path, proc_cgroup: Path) -> list[Path]:
    """This process's own cgroup directory first (v2 ``0::/path``, v1 ``n:cpu,cpuacct:/path``),
    then the mount's root (inside a container's cgroup namespace, its own)."""
    out: list[Path] = []
    for line in (_read(proc_cgroup) or "").splitlines():
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        if path and (controllers == "" or "cpu" in controllers.split(",")):
            base = cgroup if controllers == "" else cgroup / "cpu,cpuacct"
            out.extend([base / path.lstrip("/"), cgroup / "cpu" / path.lstrip("/")])
    out.extend([cgroup, cgroup / "cpu,cpuacct", cgroup / "cpu"])
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
