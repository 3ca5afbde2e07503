"""Run the whole corral benchmark on one machine and print a markdown report.

Starts the mock upstream (pinned to core 1), writes a temporary corral config, starts corral as
one process pinned to core 0, waits for ``/healthz``, measures every cell with ``bench/load.py``
(client and wrk on core 1), prints the table and corral's RSS, and stops everything it started.
All traffic goes to 127.0.0.1.

Usage::

    python bench/run.py                  # full run, about 3 minutes
    python bench/run.py --quick          # smoke run, under a minute
    python bench/run.py --direct-only    # mock + load generator only, no corral
    python bench/run.py --mock-ceiling   # also measure the mock's own ceiling (wrk on core 0)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import load

BENCH_DIR = Path(__file__).resolve().parent
MASTER_KEY = "sk-corral-bench-0000000000000000"
GATEWAY_CORE = "0"
CLIENT_CORE = "1"

CONFIG_TEMPLATE = """\
master_key: os.environ/CORRAL_MASTER_KEY
providers:
  - name: mock-ollama
    type: ollama
    base_url: http://127.0.0.1:{port}
  - name: mock-ollama-b
    type: ollama
    base_url: http://127.0.0.1:{port}
  - name: mock-openai
    type: openai
    base_url: http://127.0.0.1:{port}/v1
    models: [gpt-mock]
models:
  - name: pool
    targets: [mock-ollama/llama3.2, mock-ollama-b/llama3.2]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cmd: list[str], core: str | None) -> list[str]:
    return ["taskset", "-c", core, *cmd] if core is not None else cmd


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode} before {url} answered\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s")


def stop(proc: subprocess.Popen[bytes] | None, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; only for processes this script started."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)


def gateway_key(gateway_url: str) -> str:
    """Create a user-scope gateway key through the admin API (with the master key)."""
    req = urllib.request.Request(
        gateway_url + "/admin/keys",
        method="POST",
        data=json.dumps({"name": "bench"}).encode(),
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        key: str = json.loads(resp.read())["key"]
    print("using a gateway key (gw_...) created through the admin API", file=sys.stderr)
    return key


def control_plane(exe: str) -> tuple[list[str], str | None]:
    """``corral serve`` arguments that put the control plane (admin API) on a free port, and its
    URL; builds from before the two listeners serve the admin API on the data port: ([], None)."""
    helptext = subprocess.run([exe, "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    if "--admin-port" not in helptext:
        return [], None
    port = free_port()
    return ["--admin-port", str(port)], f"http://127.0.0.1:{port}"


def find_corral(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "corral"
    return str(beside) if beside.exists() else shutil.which("corral")


def mock_ceiling(mock_url: str, opts: load.BenchOptions) -> str:
    """The mock's own throughput with wrk on the other core: the cap on every direct figure."""
    cells = load.build_cells(mock_url, None, MASTER_KEY)
    lines = [f"| mock route (wrk on core {GATEWAY_CORE}, c={opts.connections}) | req/s | errors |"]
    lines.append("|---|---|---|")
    for cell in cells:
        assert cell.direct is not None
        load.run_wrk(cell.direct, opts.connections, opts.warmup, opts.threads, GATEWAY_CORE)
        res = load.run_wrk(cell.direct, opts.connections, opts.duration, opts.threads, GATEWAY_CORE)
        lines.append(f"| {cell.name} | {res.rps:,.0f} | {res.errors} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Start the mock and corral, then benchmark them.")
    parser.add_argument("--corral", help="corral executable (default: the one beside this Python)")
    parser.add_argument("--corral-arg", action="append", default=[], help="extra `corral serve` argument")
    parser.add_argument("--direct-only", action="store_true", help="do not start corral")
    parser.add_argument("--mock-ceiling", action="store_true", help="measure the mock alone first")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo/echo rows")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--quick", action="store_true", help="short smoke run (3x100 requests, 3 s wrk)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (config, logs)")
    parser.add_argument("--master-key", action="store_true", help="send the master key, not a gateway key")
    parser.add_argument(
        "--no-forwarder", action="store_true", help="skip the bare aiohttp forwarder rows (the yardstick)"
    )
    load.add_options(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests, args.duration, args.warmup = 3, 100, 3.0, 1.0
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    pin = not args.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    gateway_core = GATEWAY_CORE if pin else None
    client_core = CLIENT_CORE if pin else None
    if (not args.no_throughput or args.mock_ceiling) and not load.have_wrk():
        raise SystemExit(load.WRK_INSTALL_HINT)
    corral = None if args.direct_only else find_corral(args.corral)
    if not args.direct_only and corral is None:
        raise SystemExit(
            "corral executable not found; install the project (pip install -e .) or use --corral"
        )
    opts = load.options_from(args, client_core)

    tmp = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    mock_proc: subprocess.Popen[bytes] | None = None
    gw_proc: subprocess.Popen[bytes] | None = None
    fwd_proc: subprocess.Popen[bytes] | None = None
    try:
        mock_port = free_port()
        mock_url = f"http://127.0.0.1:{mock_port}"
        mock_cmd = [sys.executable, str(BENCH_DIR / "mock_upstream.py"), "--port", str(mock_port)]
        mock_proc = subprocess.Popen(pinned(mock_cmd, client_core), stdout=subprocess.DEVNULL)
        wait_http(mock_url + "/api/version", mock_proc, 15)
        print(f"mock upstream: {mock_url} (pid {mock_proc.pid}, core {client_core})", file=sys.stderr)

        if args.mock_ceiling:
            print(mock_ceiling(mock_url, opts) + "\n")

        gateway_url = None
        admin_url: str | None = None
        rss_idle: dict[str, int] = {}
        if corral is not None:
            config = tmp / "corral.yaml"
            config.write_text(CONFIG_TEMPLATE.format(port=mock_port))
            (tmp / "home").mkdir()
            gw_port = free_port()
            gateway_url = f"http://127.0.0.1:{gw_port}"
            env = {**os.environ, "CORRAL_HOME": str(tmp / "home"), "CORRAL_MASTER_KEY": MASTER_KEY}
            admin_args, admin_url = control_plane(corral)
            gw_cmd = [corral, "serve", "--config", str(config), "--port", str(gw_port), "--demo", *admin_args]
            gw_log = tmp / "corral.log"
            with gw_log.open("wb") as log_file:
                gw_proc = subprocess.Popen(
                    pinned(gw_cmd + args.corral_arg, gateway_core),
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            wait_http(gateway_url + "/healthz", gw_proc, 30, gw_log)
            rss_idle = load.process_memory_kb(gw_proc.pid)
            print(f"corral: {gateway_url} (pid {gw_proc.pid}, core {gateway_core})", file=sys.stderr)

        extra: list[load.Cell] = []
        if not args.no_forwarder and not args.direct_only:
            fwd_port = free_port()
            fwd_url = f"http://127.0.0.1:{fwd_port}"
            fwd_cmd = [sys.executable, str(BENCH_DIR / "forwarder.py"), "--port", str(fwd_port)]
            fwd_proc = subprocess.Popen(
                pinned([*fwd_cmd, "--upstream", mock_url], gateway_core), stdout=subprocess.DEVNULL
            )
            wait_http(fwd_url + "/healthz", fwd_proc, 15)
            extra = load.forwarder_cells(mock_url, fwd_url, fwd_proc.pid)
            print(f"bare forwarder: {fwd_url} (pid {fwd_proc.pid}, core {gateway_core})", file=sys.stderr)

        key = MASTER_KEY
        if gateway_url is not None and not args.master_key:
            key = gateway_key(admin_url or gateway_url)  # a real gw_ key, so the key cache is on the hot path
        cells = load.select_cells(
            load.build_cells(mock_url, gateway_url, key, demo=not args.no_demo) + extra, args.cells
        )
        problems = load.run_async(load.check_cells(cells))
        if problems:
            raise SystemExit(
                "sanity check failed (wrong status or response shape):\n  " + "\n  ".join(problems)
            )

        load_before = os.getloadavg()[0]
        started = time.monotonic()
        table = load.run_bench(cells, opts, gw_proc.pid if gw_proc else None)
        took = time.monotonic() - started
        print(table)
        notes = []
        if opts.latency:
            notes.append(
                f"c=1: {opts.rounds} rounds x {opts.requests} requests per target, p50 = median of "
                "round medians, p99 over all samples"
            )
        if opts.throughput:
            notes.append(
                f"wrk: {opts.duration:g} s per target after {opts.warmup:g} s warm-up, "
                f"{opts.threads} thread(s), c={opts.connections}"
            )
        print(f"\n{'; '.join(notes)}; took {took:.0f} s.")
        if gw_proc is not None:
            mem = load.process_memory_kb(gw_proc.pid)
            cpu = load.process_cpu_seconds(gw_proc.pid) or 0.0
            idle, rss, peak = (
                v / 1024 for v in (rss_idle.get("VmRSS", 0), mem.get("VmRSS", 0), mem.get("VmHWM", 0))
            )
            print(
                f"corral RSS: {idle:.1f} MiB idle, {rss:.1f} MiB after the run (peak {peak:.1f} MiB); "
                f"CPU time used in total: {cpu:.1f} s"
            )
        print(f"load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
        if not pin:
            print("note: processes were not pinned to cores (no taskset, one CPU, or --no-pin)")
    finally:
        stop(gw_proc)
        stop(fwd_proc)
        stop(mock_proc)
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
