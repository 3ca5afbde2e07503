"""``--workers auto``: the CPUs usable, read from real files laid out as the kernel lays them out."""

from __future__ import annotations

import os
from pathlib import Path

from corral.supervisor.count import cpu_quota, resolve, usable_cpus


def _layout(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    proc_file = tmp_path / "proc-cgroup"
    proc_file.write_text(proc)
    return root, proc_file


def test_a_v2_quota_in_the_process_own_cgroup_rounds_down(tmp_path: Path) -> None:
    root, proc = _layout(tmp_path, "0::/kubepods/pod1/c1\n", {"kubepods/pod1/c1/cpu.max": "150000 100000"})
    assert cpu_quota(root, proc) == 1.5
    assert usable_cpus(root, proc) == 1  # 1.5 CPUs: a second worker would be throttled


def test_no_quota_means_the_affinity_mask(tmp_path: Path) -> None:
    root, proc = _layout(tmp_path, "0::/\n", {"cpu.max": "max 100000"})
    assert cpu_quota(root, proc) is None
    assert usable_cpus(root, proc) == len(os.sched_getaffinity(0))


def test_a_v1_quota_and_a_quota_above_the_cpus(tmp_path: Path) -> None:
    root, proc = _layout(
        tmp_path,
        "4:cpu,cpuacct:/docker/abc\n",
        {
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "400000000",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
        },
    )
    assert cpu_quota(root, proc) == 4000.0
    assert usable_cpus(root, proc) == len(os.sched_getaffinity(0))  # the smaller of the two
    unlimited, proc2 = _layout(
        tmp_path / "b", "4:cpu:/x\n", {"cpu/x/cpu.cfs_quota_us": "-1", "cpu/x/cpu.cfs_period_us": "100000"}
    )
    assert cpu_quota(unlimited, proc2) is None


def test_resolve_keeps_a_number_and_turns_auto_into_at_least_one() -> None:
    assert resolve(3) == 3
    assert resolve("auto") >= 1
