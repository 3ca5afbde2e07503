"""How fast each console page's data loads with a million usage rows in the store.

Fills a fresh SQLite store with ``--rows`` usage records spread over the last 30 days (the
generator of the usage timing tests, ending now), builds their rollup with the migration's
backfill (timed), starts a real gateway on it, and for every
page issues that page's admin API calls at once, as the page does, ``--runs`` times; prints the
median and the worst wall time per page, and the query plan of the usage series.

    .venv/bin/python bench/console.py [--rows 1000000] [--runs 7] [--home DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine
from tests.support.gateway import GatewayServer, make_config
from tests.usage import bulk

from corral.store.db import SQLITE_FILE
from corral.usage.query import UsageFilter, UsageQuery, parse_last, parse_step
from corral.usage.rollup import backfill

PAGES: dict[str, list[str]] = {
    "overview": ["/admin/health", "/admin/usage/series?last=1h&step=1m", "/admin/usage?last=1h"],
    "instances": ["/admin/providers", "/admin/health", "/admin/models"],
    "models": ["/admin/models", "/admin/providers", "/admin/health"],
    "routing": ["/admin/aliases", *(f"/admin/route?power={p}" for p in ("eco", "balanced", "precision"))],
    "keys": ["/admin/keys", "/admin/budgets"],
    **{
        f"usage {last} {group}": [  # what the usage page asks for one range and grouping
            f"/admin/usage/series?last={last}&group_by={group}&top=10",
            f"/admin/usage/compare?last={last}",
            "/admin/usage/recent?limit=50",
        ]
        for last in ("1h", "24h", "7d", "30d")
        for group in ("provider", "model", "key", "user")
    },
    "audit": ["/admin/audit?limit=200"],
}


async def page_time(client: httpx.AsyncClient, paths: list[str]) -> float:
    started = time.perf_counter()
    answers = await asyncio.gather(*(client.get(path) for path in paths))
    elapsed = time.perf_counter() - started
    for path, answer in zip(paths, answers, strict=True):
        if answer.status_code >= 400 and "route?power" not in path:  # unset power levels are a 404
            raise SystemExit(f"{path}: HTTP {answer.status_code} {answer.text[:200]}")
    return elapsed


async def measure(base: str, key: str, runs: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name in PAGES}
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        for paths in PAGES.values():  # warm: connections, caches, the /api/show memo
            await page_time(client, paths)
        for _ in range(runs):
            for name, paths in PAGES.items():
                timings[name].append(await page_time(client, paths))
    return timings


def plan(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        since = datetime.now(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S")
        rows = conn.execute(
            "EXPLAIN QUERY PLAN SELECT CAST(strftime('%s', at) AS INTEGER) / 60 AS bucket, provider || '', "
            "count(*), sum(cost_usd), group_concat(latency_ms) FROM usage WHERE at >= datetime(?, '-1 hour') "
            "GROUP BY bucket, provider || '' ORDER BY bucket",
            (since,),
        ).fetchall()
    finally:
        conn.close()
    return "; ".join(str(r[-1]) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--home", type=Path, help="measure the store an earlier run left here (no load)")
    parser.add_argument(
        "--ab", action="store_true", help="with --home: each usage series in process, rollup against rows"
    )
    args = parser.parse_args()
    if args.ab:
        asyncio.run(rollup_against_rows(args.home / SQLITE_FILE, args.runs))
        return
    config = make_config({"router": {"power_levels": {"eco": ["demo/echo"]}}}, demo=True)
    if args.home is not None:
        with GatewayServer(config, home=args.home) as gw:
            timings = asyncio.run(measure(gw.admin_url, gw.key, args.runs))
        report(timings)
        return
    home = Path(tempfile.mkdtemp(prefix="corral-console-bench-"))
    with GatewayServer(config, home=home):
        pass  # creates the store and its tables
    bulk.END = datetime.now(UTC)  # the rows end now, so "the last hour" has its share
    started = time.perf_counter()
    bulk.load_sqlite(f"sqlite:///{home / SQLITE_FILE}", args.rows)
    print(f"loaded {args.rows:,} usage rows in {time.perf_counter() - started:.1f} s ({home})")
    started = time.perf_counter()
    engine = create_engine(f"sqlite:///{home / SQLITE_FILE}")
    with engine.begin() as conn:
        written = backfill(conn)
    engine.dispose()
    print(f"built their rollup ({written:,} rows) in {time.perf_counter() - started:.1f} s")
    print(f"series query plan: {plan(home / SQLITE_FILE)}")
    with GatewayServer(config, home=home) as gw:
        timings = asyncio.run(measure(gw.admin_url, gw.key, args.runs))
    report(timings)


async def rollup_against_rows(db: Path, runs: int) -> None:
    """The usage page's series per range and grouping, read from the rollup and from the rows,
    alternately (the same machine load for both); median wall ms of ``runs`` each."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
    now = datetime.now(UTC)
    print("| series | rollup ms | rows ms |\n|---|---|---|")
    try:
        for last in ("24h", "7d", "30d"):
            where = UsageFilter(since=now - parse_last(last))
            step = parse_step(None, now - where.since) if where.since else 60
            for group in ("provider", "model", "key", "user"):
                times: dict[bool, list[float]] = {True: [], False: []}
                for _ in range(runs):
                    for rollup in (True, False):
                        started = time.perf_counter()
                        await UsageQuery(engine, rollup=rollup).series(where, step, (group,))
                        times[rollup].append(time.perf_counter() - started)
                medians = [statistics.median(times[r]) * 1000 for r in (True, False)]
                print(f"| {last} by {group} | {medians[0]:.0f} | {medians[1]:.0f} |")
    finally:
        await engine.dispose()


def report(timings: dict[str, list[float]]) -> None:
    print("\n| page | median ms | worst ms | calls |\n|---|---|---|---|")
    for name, values in timings.items():
        median, worst = statistics.median(values) * 1000, max(values) * 1000
        print(f"| {name} | {median:.1f} | {worst:.1f} | {len(PAGES[name])} |")


if __name__ == "__main__":
    main()
