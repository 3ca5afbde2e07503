"""Load generator and report for the corral benchmark.

Two measurements per cell (an upstream shape, streaming or not):

* latency at one connection: a keep-alive aiohttp client sends sequential requests, alternating
  rounds between the upstream called directly and the same call through corral; p50 is the median
  of the per-round medians, p99 is over all samples, "added" is gateway minus direct;
* throughput at N connections (default 32): ``wrk`` for a fixed duration after a warm-up, direct
  and through corral, with corral's CPU time per request when its pid is known.

``bench/run.py`` starts the mock and corral and calls this module; run this file directly to
measure services that are already running, e.g. ``python bench/load.py --mock http://127.0.0.1:18081``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

WRK_INSTALL_HINT = "wrk is not installed; on Debian/Ubuntu: apt-get update && apt-get install -y wrk"
OLLAMA_MODEL = "llama3.2"
OPENAI_MODEL = "gpt-mock"
MESSAGES = [{"role": "user", "content": "hello"}]
T = TypeVar("T")
NA = "-"  # table placeholder for a value not measured


@dataclass(frozen=True)
class Target:
    """One HTTP request to repeat: where it goes and what it carries."""

    label: str
    url: str
    body: bytes
    headers: dict[str, str] = field(hash=False)
    stream: bool = False
    pid: int | None = None  # the process serving it, when it is not corral (for CPU per request)


@dataclass(frozen=True)
class Cell:
    """One row of the report: the call through corral and the equivalent direct call, if any."""

    name: str
    gateway: Target | None
    direct: Target | None

    def targets(self) -> list[Target]:
        return [t for t in (self.direct, self.gateway) if t is not None]


def _body(model: str, stream: bool) -> bytes:
    return json.dumps({"model": model, "messages": MESSAGES, "stream": stream}).encode()


# the agents' surfaces (issue #15): the same prompt as a Messages and as a Responses request
AGENT_SURFACES = {"messages": "/v1/messages", "responses": "/v1/responses"}


def _agent_body(kind: str, model: str, stream: bool) -> bytes:
    if kind == "messages":
        return json.dumps(
            {"model": model, "max_tokens": 256, "messages": MESSAGES, "stream": stream}
        ).encode()
    return json.dumps({"model": model, "input": MESSAGES, "stream": stream}).encode()


def build_cells(mock_url: str | None, gateway_url: str | None, key: str, demo: bool = True) -> list[Cell]:
    """The benchmark matrix. Without ``gateway_url`` only the direct calls are measured."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    cells: list[Cell] = []
    for stream in (False, True):
        suffix = " stream" if stream else ""
        for shape, direct_path, direct_model, gw_model in (
            ("ollama", "/api/chat", OLLAMA_MODEL, f"mock-ollama/{OLLAMA_MODEL}"),
            ("openai", "/v1/chat/completions", OPENAI_MODEL, f"mock-openai/{OPENAI_MODEL}"),
            ("ollama pool", "/api/chat", OLLAMA_MODEL, "pool"),  # two pooled deployments
            ("ollama facade", "/api/chat", OLLAMA_MODEL, "mock-ollama/llama3.2"),  # native API via corral
        ):
            direct = gateway = None
            if mock_url:
                direct = Target(
                    "direct", mock_url + direct_path, _body(direct_model, stream), headers, stream
                )
            if gateway_url:
                path = "/api/chat" if shape == "ollama facade" else "/v1/chat/completions"
                gateway = Target("corral", gateway_url + path, _body(gw_model, stream), headers, stream)
            cells.append(Cell(shape + suffix, gateway, direct))
    for stream in (False, True):  # over an Ollama-type upstream, against the same direct /api/chat
        for kind, path in AGENT_SURFACES.items():
            direct = agent = None
            if mock_url:
                direct = Target(
                    "direct", mock_url + "/api/chat", _body(OLLAMA_MODEL, stream), headers, stream
                )
            if gateway_url:
                body = _agent_body(kind, f"mock-ollama/{OLLAMA_MODEL}", stream)
                agent = Target("corral", gateway_url + path, body, headers, stream)
            cells.append(Cell(kind + (" stream" if stream else ""), agent, direct))
    if gateway_url and demo:
        for stream in (False, True):
            url = gateway_url + "/v1/chat/completions"
            target = Target("corral", url, _body("demo/echo", stream), headers, stream)
            cells.append(Cell("demo" + (" stream" if stream else ""), target, None))
    order = [
        "ollama",
        "ollama stream",
        "ollama pool",
        "ollama pool stream",
        "ollama facade",
        "ollama facade stream",
        "openai",
        "openai stream",
        "messages",
        "messages stream",
        "responses",
        "responses stream",
        "demo",
        "demo stream",
    ]
    return sorted(cells, key=lambda c: order.index(c.name))


FORWARDER_SHAPES = {  # forwarder cell -> (direct path, model) of the mock
    "forwarder ollama": ("/api/chat", OLLAMA_MODEL),
    "forwarder openai": ("/v1/chat/completions", OPENAI_MODEL),
}


def forwarder_cells(mock_url: str, forwarder_url: str, forwarder_pid: int | None) -> list[Cell]:
    """The yardstick rows: the bare forwarder (bench/forwarder.py) against the same direct calls."""
    headers = {"Content-Type": "application/json"}
    cells = []
    for stream in (False, True):
        suffix = " stream" if stream else ""
        for name, (path, model) in FORWARDER_SHAPES.items():
            body = _body(model, stream)
            direct = Target("direct", mock_url + path, body, headers, stream)
            via = Target("fwd", forwarder_url + path, body, headers, stream, forwarder_pid)
            cells.append(Cell(name + suffix, via, direct))
    return cells


def yardstick(cells: Sequence[Cell], throughput: dict[Target, WrkResult]) -> str:
    """corral's throughput as a share of the bare forwarder's on the same upstream shape."""
    rps = {c.name: throughput[c.gateway].rps for c in cells if c.gateway and c.gateway in throughput}
    lines = []
    for name in sorted(rps):
        if name.startswith("forwarder") or name.startswith("demo"):
            continue
        shape = "openai" if name.startswith("openai") else "ollama"
        ref = rps.get(f"forwarder {shape}" + (" stream" if name.endswith("stream") else ""))
        if ref:
            share = rps[name] / ref
            lines.append(
                f"| {name} | {rps[name]:,.0f} | {ref:,.0f} | {share:.2f} | {share * REFERENCE_RPS:,.0f} |"
            )
    if not lines:
        return ""
    head = (
        "| corral cell | corral rps | bare forwarder rps | share | at the issue's reference "
        f"({REFERENCE_RPS:,} req/s forwarder) |\n|---|---|---|---|---|"
    )
    return head + "\n" + "\n".join(lines)


REFERENCE_RPS = 5000  # the core issue: "a bare 40-line aiohttp forwarder reached about 5,000 req/s"


# --------------------------------------------------------------------------- correctness check


async def check_cells(cells: Sequence[Cell]) -> list[str]:
    """Send each request once and return a list of problems (wrong status or response shape)."""
    problems: list[str] = []
    async with aiohttp.ClientSession() as session:
        for cell in cells:
            for target in cell.targets():
                where = f"{cell.name} ({target.label})"
                try:
                    async with session.post(target.url, data=target.body, headers=target.headers) as resp:
                        raw = await resp.read()
                        ctype = resp.headers.get("Content-Type", "")
                except aiohttp.ClientError as exc:
                    problems.append(f"{where}: {exc!r}")
                    continue
                if resp.status != 200:
                    problems.append(f"{where}: HTTP {resp.status}: {raw[:200]!r}")
                    continue
                problem = _shape_problem(target, ctype, raw)
                if problem:
                    problems.append(f"{where}: {problem}")
    return problems


def _shape_problem(target: Target, ctype: str, raw: bytes) -> str | None:
    native_ollama = "/api/" in target.url  # the mock directly, or corral's Ollama facade
    for kind, path in AGENT_SURFACES.items():
        if target.url.endswith(path):
            return _agent_problem(kind, target.stream, raw)
    if not target.stream:
        try:
            doc = json.loads(raw)
        except ValueError:
            return f"not JSON: {raw[:120]!r}"
        ok = doc.get("done") is True if native_ollama else bool(doc.get("choices"))
        return None if ok else f"unexpected JSON: {raw[:120]!r}"
    if native_ollama:
        lines = raw.strip().split(b"\n")
        return None if b'"done":true' in lines[-1] else f"NDJSON without a final done line: {raw[-120:]!r}"
    if "text/event-stream" not in ctype:
        return f"streaming answer with Content-Type {ctype!r}"
    if not raw.rstrip().endswith(b"data: [DONE]"):
        return f"SSE stream does not end with data: [DONE]: {raw[-120:]!r}"
    if raw.count(b"data: ") < 3:
        return f"SSE stream with fewer than 3 events: {raw[:200]!r}"
    return None


def _agent_problem(kind: str, stream: bool, raw: bytes) -> str | None:
    if stream:
        last = b"event: message_stop" if kind == "messages" else b"event: response.completed"
        final = raw[raw.rfind(b"event: ") :]
        return None if final.startswith(last) else f"{kind} stream without its final event: {raw[-200:]!r}"
    try:
        doc = json.loads(raw)
    except ValueError:
        return f"not JSON: {raw[:120]!r}"
    ok = doc.get("type") == "message" if kind == "messages" else doc.get("status") == "completed"
    return None if ok else f"unexpected JSON: {raw[:120]!r}"


# --------------------------------------------------------------------------- latency at c=1


@dataclass
class Latency:
    """Per-round medians and all samples of one target, in seconds."""

    round_p50s: list[float] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def p50(self) -> float:
        return statistics.median(self.round_p50s)

    @property
    def p99(self) -> float:
        return quantile(self.samples, 0.99)


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _round(session: aiohttp.ClientSession, target: Target, n: int) -> tuple[list[float], int]:
    times: list[float] = []
    errors = 0
    clock = time.perf_counter
    for _ in range(n):
        start = clock()
        async with session.post(target.url, data=target.body, headers=target.headers) as resp:
            await resp.read()
            status = resp.status
        times.append(clock() - start)
        if status != 200:
            errors += 1
    return times, errors


async def measure_latency(
    cells: Sequence[Cell], rounds: int, per_round: int, warmup: int = 200
) -> dict[Target, Latency]:
    """Sequential requests on one keep-alive client, alternating direct and gateway rounds."""
    results: dict[Target, Latency] = {t: Latency() for c in cells for t in c.targets()}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for target in results:
            await _round(session, target, warmup)
        for r in range(rounds):
            done: set[Target] = set()  # cells may share a direct target: measure it once a round
            for cell in cells:
                targets = cell.targets()
                for target in targets if r % 2 == 0 else reversed(targets):
                    if target in done:
                        continue
                    done.add(target)
                    times, errors = await _round(session, target, per_round)
                    res = results[target]
                    res.round_p50s.append(statistics.median(times))
                    res.samples.extend(times)
                    res.errors += errors
    return results


def added_p50(gateway: Latency, direct: Latency) -> float:
    """Median over rounds of (gateway round median - direct round median): robust to drift."""
    pairs = zip(gateway.round_p50s, direct.round_p50s, strict=True)
    return statistics.median(g - d for g, d in pairs)


# --------------------------------------------------------------------------- throughput (wrk)


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50: float
    p99: float
    cpu_seconds: float | None = None  # CPU time the watched process used during the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


_WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"status\\":%d,\\"connect\\":%d,"
    .. "\\"read\\":%d,\\"write\\":%d,\\"timeout\\":%d,\\"p50_us\\":%d,\\"p99_us\\":%d}\\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_script(target: Target) -> str:
    body = target.body.decode()
    assert "]==]" not in body
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{body}]==]"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in target.headers.items()]
    return "\n".join(lines) + "\n" + _WRK_DONE


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    target: Target,
    connections: int,
    seconds: float,
    threads: int = 1,
    cpu: str | None = None,
    watch_pid: int | None = None,
) -> WrkResult:
    """Run wrk against ``target`` (pinned to ``cpu`` with taskset when given)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="corral-bench-") as script:
        script.write(wrk_script(target))
        script.flush()
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s"]
        cmd += ["-s", script.name, target.url]
        if cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", cpu, *cmd]
        cpu_before = process_cpu_seconds(watch_pid) if watch_pid else None
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
        cpu_after = process_cpu_seconds(watch_pid) if watch_pid else None
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}")
    doc = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(
        requests=doc["requests"],
        seconds=doc["duration_us"] / 1e6,
        non_2xx=doc["status"],
        socket_errors=doc["connect"] + doc["read"] + doc["write"] + doc["timeout"],
        p50=doc["p50_us"] / 1e6,
        p99=doc["p99_us"] / 1e6,
        cpu_seconds=None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
    )


def measure_throughput(
    cells: Sequence[Cell],
    connections: int,
    seconds: float,
    warmup: float,
    threads: int = 1,
    cpu: str | None = None,
    gateway_pid: int | None = None,
    log: bool = True,
    rounds: int = 3,
) -> dict[Target, WrkResult]:
    """``rounds`` passes over every cell (direct, then through corral or the forwarder), each
    target getting ``seconds / rounds`` of wrk per pass; a target's result is its median pass.

    A shared machine drifts by tens of percent within minutes: passes spread that drift over
    every cell instead of charging it to whichever cells happen to run during a slow spell."""
    passes: dict[Target, list[WrkResult]] = {}
    per_pass = max(1.0, seconds / rounds)
    for r in range(rounds):
        for cell in cells:
            for target in cell.targets():
                if target in passes and len(passes[target]) > r:
                    continue  # a direct target shared by several cells: once a pass
                if r == 0 and warmup > 0:
                    run_wrk(target, connections, warmup, threads, cpu)
                pid = target.pid or (gateway_pid if target.label == "corral" else None)
                res = run_wrk(target, connections, per_pass, threads, cpu, pid)
                passes.setdefault(target, []).append(res)
                if log:
                    print(
                        f"  wrk pass {r + 1}/{rounds} {cell.name:22} {target.label:6} {res.rps:9,.0f} req/s "
                        f"errors {res.errors}",
                        file=sys.stderr,
                        flush=True,
                    )
    return {t: _median_pass(runs) for t, runs in passes.items()}


def _median_pass(runs: list[WrkResult]) -> WrkResult:
    """The median pass by throughput; its errors are those of every pass (any error invalidates)."""
    ranked = sorted(runs, key=lambda r: r.rps)
    mid = ranked[len(ranked) // 2]
    return dataclasses.replace(
        mid,
        non_2xx=sum(r.non_2xx for r in runs),
        socket_errors=sum(r.socket_errors for r in runs),
    )


# --------------------------------------------------------------------------- /proc helpers


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (a server may fork workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` and its descendants, from /proc/PID/stat."""
    ticks = 0
    for member in process_tree(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            if member == pid:
                return None
            continue
        fields = stat.rsplit(")", 1)[1].split()
        ticks += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def process_memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB, from /proc/PID/status, summed over ``pid``'s tree."""
    out = {"VmRSS": 0, "VmHWM": 0}
    for member in process_tree(pid):
        try:
            text = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key in out:
                out[key] += int(value.split()[0])
    return out


# --------------------------------------------------------------------------- report


def _ms(seconds: float | None) -> str:
    return NA if seconds is None else f"{seconds * 1000:.3f}"


def _rps(res: WrkResult | None) -> str:
    return NA if res is None else f"{res.rps:,.0f}"


def render_table(
    cells: Sequence[Cell],
    latency: dict[Target, Latency],
    throughput: dict[Target, WrkResult],
    connections: int,
) -> str:
    head = (
        "| cell | direct p50 ms | direct p99 ms | corral p50 ms | corral p99 ms | added p50 ms "
        f"| added p99 ms | direct rps c={connections} | corral rps c={connections} | ratio "
        "| corral CPU µs/req | corral CPU % | errors |"
    )
    rows = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for cell in cells:
        d_lat = latency.get(cell.direct) if cell.direct else None
        g_lat = latency.get(cell.gateway) if cell.gateway else None
        d_tp = throughput.get(cell.direct) if cell.direct else None
        g_tp = throughput.get(cell.gateway) if cell.gateway else None
        add50 = add99 = None
        if d_lat and g_lat:
            add50, add99 = added_p50(g_lat, d_lat), g_lat.p99 - d_lat.p99
        ratio = f"{g_tp.rps / d_tp.rps:.2f}" if g_tp and d_tp and d_tp.rps else NA
        cpu_us = cpu_pct = NA
        if g_tp and g_tp.cpu_seconds is not None and g_tp.requests:
            cpu_us = f"{g_tp.cpu_seconds / g_tp.requests * 1e6:.0f}"
            cpu_pct = f"{g_tp.cpu_seconds / g_tp.seconds * 100:.0f}"
        errors = sum(r.errors for r in (d_tp, g_tp) if r) + sum(r.errors for r in (d_lat, g_lat) if r)
        err = str(errors) if errors == 0 else f"**{errors} (invalid)**"
        rows.append(
            f"| {cell.name} | {_ms(d_lat.p50 if d_lat else None)} | {_ms(d_lat.p99 if d_lat else None)} "
            f"| {_ms(g_lat.p50 if g_lat else None)} | {_ms(g_lat.p99 if g_lat else None)} "
            f"| {_ms(add50)} | {_ms(add99)} | {_rps(d_tp)} | {_rps(g_tp)} | {ratio} | {cpu_us} "
            f"| {cpu_pct} | {err} |"
        )
    return "\n".join(rows)


@dataclass
class BenchOptions:
    rounds: int = 7
    requests: int = 300
    duration: float = 10.0
    warmup: float = 2.0
    connections: int = 32
    threads: int = 1
    cpu: str | None = None  # core for wrk and this process, e.g. "1"
    latency: bool = True
    throughput: bool = True


def run_bench(cells: Sequence[Cell], opts: BenchOptions, gateway_pid: int | None = None) -> str:
    """Measure ``cells`` and return the markdown report."""
    if opts.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in opts.cpu.split(",")})
    latency: dict[Target, Latency] = {}
    throughput: dict[Target, WrkResult] = {}
    if opts.latency:
        n = sum(len(c.targets()) for c in cells)
        print(f"latency: {opts.rounds} rounds x {opts.requests} requests x {n} targets", file=sys.stderr)
        latency = run_async(measure_latency(cells, opts.rounds, opts.requests))
    if opts.throughput:
        if not have_wrk():
            raise SystemExit(WRK_INSTALL_HINT)
        print(f"throughput: wrk c={opts.connections}, {opts.duration:g}s per target", file=sys.stderr)
        throughput = measure_throughput(
            cells, opts.connections, opts.duration, opts.warmup, opts.threads, opts.cpu, gateway_pid
        )
    table = render_table(cells, latency, throughput, opts.connections)
    share = yardstick(cells, throughput)
    return table + ("\n\n" + share if share else "")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is installed, else on the default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result


def add_options(parser: argparse.ArgumentParser) -> None:
    """The measurement flags shared by load.py and run.py."""
    defaults = BenchOptions()
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="c=1 rounds per target")
    parser.add_argument("--requests", type=int, default=defaults.requests, help="requests per c=1 round")
    parser.add_argument("--duration", type=float, default=defaults.duration, help="wrk seconds per target")
    parser.add_argument("--warmup", type=float, default=defaults.warmup, help="wrk warm-up seconds")
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="wrk threads")
    parser.add_argument("--no-latency", action="store_true", help="skip the c=1 latency test")
    parser.add_argument("--no-throughput", action="store_true", help="skip the wrk test")
    parser.add_argument("--cells", help="comma-separated cell names to run (default: all)")


def options_from(args: argparse.Namespace, cpu: str | None) -> BenchOptions:
    return BenchOptions(
        rounds=args.rounds,
        requests=args.requests,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        cpu=cpu,
        latency=not args.no_latency,
        throughput=not args.no_throughput,
    )


def select_cells(cells: list[Cell], spec: str | None) -> list[Cell]:
    if not spec:
        return cells
    wanted = {s.strip() for s in spec.split(",")}
    return [c for c in cells if c.name in wanted]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure already-running mock/corral services.")
    parser.add_argument("--mock", help="mock upstream base URL, e.g. http://127.0.0.1:18081")
    parser.add_argument("--gateway", help="corral base URL, e.g. http://127.0.0.1:4000")
    parser.add_argument("--key", default="sk-bench", help="corral master key")
    parser.add_argument("--gateway-pid", type=int, help="corral's pid, for CPU time and RSS")
    parser.add_argument("--cpu", help="pin wrk and this client to these cores, e.g. 1")
    add_options(parser)
    args = parser.parse_args(argv)
    if not args.mock and not args.gateway:
        parser.error("give --mock, --gateway or both")
    cells = select_cells(build_cells(args.mock, args.gateway, args.key), args.cells)
    problems = run_async(check_cells(cells))
    if problems:
        raise SystemExit("sanity check failed:\n  " + "\n  ".join(problems))
    print(run_bench(cells, options_from(args, args.cpu), args.gateway_pid))
    if args.gateway_pid:
        mem = process_memory_kb(args.gateway_pid)
        print(f"\ncorral RSS after the run: {mem.get('VmRSS', 0) / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
