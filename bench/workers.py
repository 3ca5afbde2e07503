"""The workers cell: ``corral serve --workers 2`` against one worker, with and without Redis.

Every variant runs in the same run against the same zero-latency mock (``mock_upstream.py``),
one after the other, in ``--rounds`` interleaved passes (a shared machine drifts: each pass
spreads the drift over every variant). For each variant:

* throughput and CPU per request under wrk (``--connections``, default 32, for ``--duration``
  seconds per pass): requests per second, and the CPU seconds of corral's whole process tree
  (supervisor and workers) divided by the requests answered;
* added p50 at one connection: the median over rounds of (corral's round median - the direct
  call's round median), sequential requests on one keep-alive connection.

On a 2-core machine the mock and wrk share the cores with corral, so compare CPU per request
(what a core costs per request) and the ratios against one worker in the same run, not the
absolute throughput. The call: a non-streamed Ollama ``/api/chat`` through the OpenAI surface.

    python bench/workers.py                    # ~4 minutes
    python bench/workers.py --quick            # smoke run
    python bench/workers.py --redis redis://127.0.0.1:6379/0   # (the default)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import load
from run import BENCH_DIR, MASTER_KEY, free_port, stop, wait_http

CONFIG = """\
master_key: os.environ/CORRAL_MASTER_KEY
providers:
  - name: mock-ollama
    type: ollama
    base_url: http://127.0.0.1:{port}
    max_parallel: 64
"""


@dataclass
class Variant:
    name: str
    workers: int
    redis: bool
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # CPU microseconds per request
    added_ms: list[float] = field(default_factory=list)
    errors: int = 0


def start(variant: Variant, mock_port: int, tmp: Path, redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    home = tmp / f"home-{variant.name.replace(' ', '-')}"
    home.mkdir(exist_ok=True)
    config = home / "corral.yaml"
    config.write_text(CONFIG.format(port=mock_port))
    port, admin = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update({"CORRAL_HOME": str(home), "CORRAL_MASTER_KEY": MASTER_KEY})
    if variant.redis:
        env.update({"CORRAL_REDIS_URL": redis_url, "CORRAL_REDIS_PREFIX": f"corral-bench-{os.getpid()}:"})
    corral = str(Path(sys.executable).parent / "corral")
    cmd = [corral, "serve", "--config", str(config), "--port", str(port), "--admin-port", str(admin)]
    cmd += ["--workers", str(variant.workers), "--log-level", "warning"]
    log = (home / "corral.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", proc, 180, home / "corral.log")
    return proc, url


def measure(
    variant: Variant, proc: subprocess.Popen[bytes], url: str, mock_url: str, args: argparse.Namespace
) -> None:
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
    body = load._body("mock-ollama/llama3.2", False)
    gateway = load.Target("corral", url + "/v1/chat/completions", body, headers)
    direct = load.Target("direct", mock_url + "/api/chat", load._body("llama3.2", False), headers)
    cell = load.Cell("workers", gateway, direct)
    lat = load.run_async(load.measure_latency([cell], 3, args.requests, warmup=100))
    variant.added_ms.append(load.added_p50(lat[gateway], lat[direct]) * 1000)
    load.run_wrk(gateway, args.connections, args.warmup)
    res = load.run_wrk(gateway, args.connections, args.duration, watch_pid=proc.pid)
    variant.rps.append(res.rps)
    variant.errors += res.errors
    if res.cpu_seconds is not None and res.requests:
        variant.cpu_us.append(res.cpu_seconds / res.requests * 1e6)
    print(
        f"  {variant.name:22} {res.rps:8,.0f} req/s  {(variant.cpu_us or [0.0])[-1]:6.0f} µs CPU/req  "
        f"added p50 {variant.added_ms[-1]:.2f} ms  errors {res.errors}",
        file=sys.stderr,
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per latency round")
    parser.add_argument("--redis", default=os.environ.get("CORRAL_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--no-redis", action="store_true", help="skip the variants with Redis")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup, args.requests = 1, 3.0, 1.0, 100
    if not load.have_wrk():
        raise SystemExit(load.WRK_INSTALL_HINT)
    variants = [Variant("1 worker", 1, False), Variant("2 workers", 2, False)]
    if not args.no_redis:
        variants += [Variant("1 worker + Redis", 1, True), Variant("2 workers + Redis", 2, True)]
    tmp = Path(tempfile.mkdtemp(prefix="corral-bench-workers-"))
    mock_port = free_port()
    mock_url = f"http://127.0.0.1:{mock_port}"
    mock = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "mock_upstream.py"), "--port", str(mock_port)],
        stdout=subprocess.DEVNULL,
    )
    started = time.monotonic()
    try:
        wait_http(mock_url + "/api/version", mock, 15)
        for r in range(args.rounds):
            print(f"pass {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
            for variant in variants if r % 2 == 0 else reversed(variants):
                proc, url = start(variant, mock_port, tmp, args.redis)
                try:
                    measure(variant, proc, url, mock_url, args)
                finally:
                    stop(proc, 60)
    finally:
        stop(mock)
        shutil.rmtree(tmp, ignore_errors=True)
    base = variants[0]
    print(
        f"| variant | req/s (c={args.connections}) | vs 1 worker | CPU µs/request | vs 1 worker "
        "| added p50 (c=1) | errors |"
    )
    print("|---|---|---|---|---|---|---|")
    for v in variants:
        rps, cpu, added = (statistics.median(x) if x else 0.0 for x in (v.rps, v.cpu_us, v.added_ms))
        brps, bcpu = statistics.median(base.rps), statistics.median(base.cpu_us) if base.cpu_us else 0.0
        print(
            f"| {v.name} | {rps:,.0f} | {rps / brps:.2f}x | {cpu:.0f} | {cpu / bcpu if bcpu else 0:.2f}x | "
            f"{added:.2f} ms | {v.errors} |"
        )
    print(
        f"\n{args.rounds} pass(es), variants interleaved; wrk {args.duration:g} s per variant per pass after "
        f"{args.warmup:g} s warm-up; c=1: 3 rounds x {args.requests}; load average at the end "
        f"{os.getloadavg()[0]:.1f}; took {time.monotonic() - started:.0f} s."
    )


if __name__ == "__main__":
    main()
