"""Compare two corral builds on this machine: CPU per request, interleaved, medians.

A shared machine drifts by tens of percent within minutes, more than most changes to corral
are worth. This starts build A and build B side by side (both pinned to core 0, each idle while
the other is measured, one mock upstream on core 1) and alternates short wrk runs between them
for ``--passes`` passes, swapping the order every pass. It prints each build's median req/s and
median CPU time per request, and B/A: below 1.00 means B is cheaper. Give ``--b`` several times
to weigh several builds (B1, B2, ...) against A in the same run, each idle while another runs:
a knockout (a copy of a tree with one part switched off) weighs that part.

    python bench/ab.py --a OLD_CORRAL --b NEW_CORRAL --cells "ollama stream,openai"

A build is a ``corral`` executable; for an older commit: ``git worktree add /some/dir COMMIT``
and a two-line script running ``PYTHONPATH=/some/dir/src python -m corral.cli.main "$@"``
(corral.cli.main has no ``__main__`` guard, so call ``main()`` from ``-c``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import load
import run


def start(
    exe: str, mock_port: int, extra: str = "", root: Path | None = None
) -> tuple[subprocess.Popen[bytes], str, str]:
    """Start build ``exe`` with its home and config in a new directory under ``root``."""
    tmp = Path(tempfile.mkdtemp(prefix="corral-ab-", dir=root))
    (tmp / "home").mkdir()
    config = tmp / "corral.yaml"
    config.write_text(run.CONFIG_TEMPLATE.format(port=mock_port) + extra)
    port = run.free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CORRAL_HOME": str(tmp / "home"), "CORRAL_MASTER_KEY": run.MASTER_KEY}
    admin_args, admin_url = run.control_plane(exe)
    serve = [exe, "serve", "--config", str(config), "--port", str(port), "--demo", *admin_args]
    cmd = run.pinned(serve, run.GATEWAY_CORE)
    with (tmp / "corral.log").open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    run.wait_http(url + "/healthz", proc, 30, tmp / "corral.log")
    return proc, url, run.gateway_key(admin_url or url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="corral executable of build A (the baseline)")
    parser.add_argument(
        "--b",
        required=True,
        action="append",
        help="corral executable of build B; give it again for more builds (B2, B3...), each "
        "measured in turn with the others and compared with A",
    )
    parser.add_argument("--cells", default="ollama,ollama stream,openai,demo")
    parser.add_argument("--passes", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0, help="wrk seconds per run")
    parser.add_argument(
        "--max-errors",
        type=float,
        default=0.0,
        help="share of a run's requests that may fail (wrk timeouts on a starved machine) "
        "before the comparison is void; the errors are counted and printed (default 0)",
    )
    parser.add_argument(
        "--b-config",
        default="",
        help="YAML appended to build B's config, for a setting build A does not know "
        '(e.g. "router: {first_token: {min: 10s}}" so a starved machine\'s delays are not cut)',
    )
    args = parser.parse_args()
    if not load.have_wrk():
        raise SystemExit(load.WRK_INSTALL_HINT)
    mock_port = run.free_port()
    mock_url = f"http://127.0.0.1:{mock_port}"
    mock_cmd = [sys.executable, str(run.BENCH_DIR / "mock_upstream.py"), "--port", str(mock_port)]
    mock = subprocess.Popen(run.pinned(mock_cmd, run.CLIENT_CORE), stdout=subprocess.DEVNULL)
    builds: dict[str, tuple[subprocess.Popen[bytes], list[load.Cell]]] = {}
    root = Path(tempfile.mkdtemp(prefix="corral-ab-"))  # both builds' homes and logs, removed at the end
    try:
        run.wait_http(mock_url + "/api/version", mock, 15)
        names = ["B"] if len(args.b) == 1 else [f"B{i + 1}" for i in range(len(args.b))]
        others = [(name, exe, args.b_config) for name, exe in zip(names, args.b, strict=True)]
        for name, exe, extra in [("A", args.a, ""), *others]:
            proc, url, key = start(exe, mock_port, extra and extra + "\n", root)
            builds[name] = (proc, load.select_cells(load.build_cells(mock_url, url, key), args.cells))
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        failed: dict[str, int] = {}
        for _, cells in builds.values():
            for cell in cells:
                assert cell.gateway is not None
                load.run_wrk(cell.gateway, 32, 1, cpu=run.CLIENT_CORE)  # warm-up
        turns = ["A", *names]
        for p in range(args.passes):
            for name in turns if p % 2 == 0 else turns[::-1]:
                proc, cells = builds[name]
                for cell in cells:
                    assert cell.gateway is not None
                    res = load.run_wrk(
                        cell.gateway, 32, args.seconds, cpu=run.CLIENT_CORE, watch_pid=proc.pid
                    )
                    if res.errors > args.max_errors * res.requests:
                        raise SystemExit(
                            f"{name} {cell.name}: {res.errors} errors ({res.non_2xx} non-2xx, "
                            f"{res.socket_errors} socket errors or timeouts); the comparison is void"
                        )
                    failed[name] = failed.get(name, 0) + res.errors
                    cpu_us = 1e6 * (res.cpu_seconds or 0.0) / max(1, res.requests)
                    samples.setdefault((name, cell.name), []).append((res.rps, cpu_us))
        head = "".join(f" {n} req/s | {n} CPU µs/req | {n}/A CPU |" for n in names)
        print(f"| cell | A req/s | A CPU µs/req |{head}\n|---|---|---|" + "---|---|---|" * len(names))
        for cell in builds["A"][1]:
            a = samples[("A", cell.name)]
            a_cpu = statistics.median(x[1] for x in a)
            row = f"| {cell.name} | {statistics.median(x[0] for x in a):,.0f} | {a_cpu:.0f} |"
            for n in names:
                b = samples[(n, cell.name)]
                b_cpu = statistics.median(x[1] for x in b)
                row += f" {statistics.median(x[0] for x in b):,.0f} | {b_cpu:.0f} | {b_cpu / a_cpu:.2f} |"
            print(row)
        for name, (proc, _) in builds.items():
            print(
                f"{name}: RSS after the run {load.process_memory_kb(proc.pid).get('VmRSS', 0) / 1024:.1f} MiB"
                f", {failed.get(name, 0)} failed requests"
            )
    finally:
        for proc, _ in builds.values():
            run.stop(proc)
        run.stop(mock)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
