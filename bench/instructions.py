"""Instructions per request of corral builds, counted by valgrind's callgrind: a figure that does
not drift with the machine.

CPU time per request on a shared VM moves by tens of percent between runs of the same build
(``ab.py`` interleaves builds to cancel that out, and still sees +-10 %). The count of user-space
instructions a request costs does not move: two runs of one build agree within 1-2 %. It is not
the same thing as CPU time (the kernel's share, caches and the instructions' own cost are left
out, so syscalls weigh nothing here), so read it beside ``ab.py``, not instead of it.

Each build is started under callgrind with counting off, served the ``bench/run.py`` cells (same
config, mock upstream and bodies) at a few connections; for each cell, after a warm-up, counting
is switched on for ``--seconds`` of load and the count is divided by the requests wrk completed.
Every thread of the gateway is counted (the usage writer's included). Under valgrind a build
serves about 50 times slower, so the runs are short in requests and long in seconds.

    python bench/instructions.py --a OLD_CORRAL --b NEW_CORRAL --cells "ollama,openai"

A build is a ``corral`` executable, as for ``ab.py`` (a script that execs Python is followed).
Needs ``valgrind`` (``apt-get install -y valgrind``) and ``wrk``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import load
import run

STARTUP = 600.0  # seconds: importing corral under valgrind is slow


def counted(out: Path) -> int:
    """The ``totals:`` of the newest dump in ``out``'s directory."""
    dumps = sorted(out.parent.glob(out.name + ".*"), key=lambda p: p.stat().st_mtime)
    for line in dumps[-1].read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dumps[-1]}")


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=True, timeout=120)


def measure(
    exe: str, mock_port: int, cells: str, seconds: float, connections: int, root: Path
) -> dict[str, int]:
    """Instructions per request of build ``exe`` on each cell."""
    tmp = Path(tempfile.mkdtemp(prefix="corral-instr-", dir=root))
    (tmp / "home").mkdir()
    config = tmp / "corral.yaml"
    config.write_text(run.CONFIG_TEMPLATE.format(port=mock_port))
    port = run.free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CORRAL_HOME": str(tmp / "home"), "CORRAL_MASTER_KEY": run.MASTER_KEY}
    admin_args, admin_url = run.control_plane(exe)
    out = tmp / "callgrind.out"
    grind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=yes"]
    grind.append(f"--callgrind-out-file={out}")
    serve = [*grind, exe, "serve", "--config", str(config), "--port", str(port), "--demo", *admin_args]
    with (tmp / "corral.log").open("wb") as log:
        cmd = run.pinned(serve, run.GATEWAY_CORE)
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        run.wait_http(url + "/healthz", proc, STARTUP, tmp / "corral.log")
        key = run.gateway_key(admin_url or url)
        result: dict[str, int] = {}
        for cell in load.select_cells(load.build_cells(f"http://127.0.0.1:{mock_port}", url, key), cells):
            assert cell.gateway is not None
            load.run_wrk(cell.gateway, connections, 3, cpu=run.CLIENT_CORE)  # warm-up, not counted
            control(proc.pid, "--zero")
            control(proc.pid, "--instr=on")
            res = load.run_wrk(cell.gateway, connections, seconds, cpu=run.CLIENT_CORE)
            control(proc.pid, "--instr=off")
            control(proc.pid, "--dump")
            if res.errors or not res.requests:
                raise RuntimeError(f"{exe}: {cell.name}: {res.errors} failed of {res.requests} requests")
            result[cell.name] = counted(out) // res.requests
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="corral executable of build A (the baseline)")
    parser.add_argument("--b", required=True, action="append", help="build B; again for B2, B3...")
    parser.add_argument("--cells", default="ollama,ollama stream,openai,openai stream")
    parser.add_argument("--seconds", type=float, default=10.0, help="counted wrk seconds per cell")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise SystemExit("valgrind is not installed: apt-get install -y valgrind")
    if not load.have_wrk():
        raise SystemExit(load.WRK_INSTALL_HINT)
    mock_port = run.free_port()
    mock_cmd = [sys.executable, str(run.BENCH_DIR / "mock_upstream.py"), "--port", str(mock_port)]
    mock = subprocess.Popen(run.pinned(mock_cmd, run.CLIENT_CORE), stdout=subprocess.DEVNULL)
    root = Path(tempfile.mkdtemp(prefix="corral-instr-"))
    try:
        run.wait_http(f"http://127.0.0.1:{mock_port}/api/version", mock, 15)
        names = ["B"] if len(args.b) == 1 else [f"B{i + 1}" for i in range(len(args.b))]
        counts = {name: measure(exe, mock_port, args.cells, args.seconds, args.connections, root)
                  for name, exe in [("A", args.a), *zip(names, args.b, strict=True)]}  # fmt: skip
    finally:
        mock.terminate()
        mock.wait(10)
        shutil.rmtree(root, ignore_errors=True)
    head = "| cell | A instr/req | " + " | ".join(f"{n} instr/req | {n}/A" for n in names) + " |"
    print(head)
    print("|---" * (2 + 2 * len(names)) + "|")
    for cell, a in counts["A"].items():
        row = [f"{counts[n][cell]:,} | {counts[n][cell] / a:.2f}" for n in names]
        print(f"| {cell} | {a:,} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
