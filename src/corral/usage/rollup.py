"""The usage rollup: totals per minute, hour and day, kept in step with the usage rows.

``usage_rollup`` (``corral.store.tables``) holds, per grain (``GRAINS``: 60, 3600, 86400
seconds), dimension (``DIMS``: ``""`` for every request, or one of provider, model, key, user,
instance, requested_model, surface), bucket start (Unix seconds, a multiple of the grain) and
value, the request, error and estimated counts, token and cost sums, the time-to-first-token
count and sum, and a latency histogram. Values are stored ``""`` for none and ``"=" + value``
otherwise (a primary key cannot hold NULL and the empty string is a value of its own).

The usage sink calls ``add`` inside the transaction that inserts the rows, with the rows that
transaction really inserted (not those an idempotent replay skipped), so the rollup always
says what the rows say. The batch is first summed per minute and distinct dimension values in
Python, then upserted additively (``ON CONFLICT ... DO UPDATE SET n = n + excluded.n``), which
stays right when several gateways write to one PostgreSQL database. Minute rows older than
``MINUTE_KEEP`` are pruned (``prune``, run by the sink at most every ``PRUNE_EVERY``); the
readers use minute rows only inside ``MINUTE_USABLE``.

**Latency histogram.** Bucket 0 counts latencies under 1 ms; bucket i (1-60) counts
[2^((i-1)/3), 2^(i/3)) ms, so each bucket is 26 % wider than the one below; bucket 61 counts
2^20 ms (17.5 minutes) and more. ``percentile`` ranks the counts like ``percentile_cont`` and
spreads a bucket's requests evenly across it: the estimate always lies in the bucket holding
the request at the quantile's rank, so it is off by less than one bucket width (26 % of the
value above 1 ms, under 1 ms below it, and the bucket's lower bound for 17.5 minutes or more).

``backfill`` builds the rollup from existing rows (revision 0005, and ``bench/console.py`` after
a bulk load) with the same grouped query the readers use for the raw edges of a range
(``corral.usage.rollup_read``), so both read the same buckets.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

from sqlalchemy import Connection

from corral.store.tables import LATENCY_BUCKETS
from corral.usage.record import FIELD_NAMES

GRAINS = (60, 3600, 86400)
MINUTE_KEEP = 48 * 3600  # minute rows are pruned after two days ...
MINUTE_USABLE = 47 * 3600  # ... and read only within the last 47 hours
PRUNE_EVERY = 600.0  # seconds between prunes
# dimension -> the record fields whose value it takes (model: the served one, else the requested one)
DIMS: dict[str, tuple[str, ...]] = {
    "": (),
    "provider": ("provider",),
    "model": ("served_model", "requested_model"),
    "key": ("key_id",),
    "user": ("user",),
    "instance": ("instance",),
    "requested_model": ("requested_model",),
    "surface": ("surface",),
}
BOUNDS: tuple[float, ...] = tuple(2.0 ** (k / 3) for k in range(LATENCY_BUCKETS - 1))  # ms
HIST = tuple(f"lat_{i:02d}" for i in range(LATENCY_BUCKETS))
SUMS = (
    "requests", "errors", "estimated", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd",
    "ttft_count", "ttft_sum_ms",
)  # fmt: skip
KEY = ("grain", "dim", "start", "value")
COLUMNS = (*KEY, *SUMS, *HIST)
SQLITE_ROWS_PER_STATEMENT = 999 // len(COLUMNS)

_I = {name: i for i, name in enumerate(FIELD_NAMES)}
_AT, _STATUS, _ERROR = _I["at"], _I["status"], _I["error_class"]
_PROMPT, _COMPLETION, _TOTAL = _I["prompt_tokens"], _I["completion_tokens"], _I["total_tokens"]
_ESTIMATED, _COST, _LATENCY, _TTFT = _I["tokens_estimated"], _I["cost_usd"], _I["latency_ms"], _I["ttft_ms"]
_SIG_FIELDS = ("provider", "served_model", "requested_model", "key_id", "user", "instance", "surface")
_SIG = tuple(_I[name] for name in _SIG_FIELDS)
# per dimension, where its value is in a signature (after the minute): the first that is not None
_DIM_AT = {dim: tuple(1 + _SIG_FIELDS.index(f) for f in fields) for dim, fields in DIMS.items()}


def latency_bucket(ms: float) -> int:
    return bisect_right(BOUNDS, ms)


def bucket_range(i: int) -> tuple[float, float]:
    """The latencies (ms) bucket ``i`` counts: [low, high); high is infinite for the last one."""
    low = 0.0 if i == 0 else BOUNDS[i - 1]
    return low, BOUNDS[i] if i < len(BOUNDS) else float("inf")


def encode(value: str | None) -> str:
    return "" if value is None else "=" + value


def decode(stored: str) -> str | None:
    return stored[1:] if stored else None


class Totals:
    """The sums of a set of requests and their latency histogram; ``merge`` adds another."""

    __slots__ = (
        "completion_tokens", "cost_usd", "errors", "estimated", "hist", "prompt_tokens", "requests",
        "total_tokens", "ttft_count", "ttft_sum_ms",
    )  # fmt: skip

    def __init__(self) -> None:
        self.requests = self.errors = self.estimated = 0
        self.prompt_tokens = self.completion_tokens = self.total_tokens = 0
        self.cost_usd = self.ttft_sum_ms = 0.0
        self.ttft_count = 0
        self.hist = [0] * LATENCY_BUCKETS

    def add_values(self, row: Sequence[Any]) -> None:
        """Count one usage row (``UsageRecord.to_values`` order)."""
        self.requests += 1
        if row[_STATUS] >= 400 or row[_ERROR] is not None:
            self.errors += 1
        if row[_ESTIMATED]:
            self.estimated += 1
        self.prompt_tokens += row[_PROMPT]
        self.completion_tokens += row[_COMPLETION]
        self.total_tokens += row[_TOTAL]
        self.cost_usd += row[_COST]
        ttft = row[_TTFT]
        if ttft is not None:
            self.ttft_count += 1
            self.ttft_sum_ms += ttft
        self.hist[bisect_right(BOUNDS, row[_LATENCY])] += 1

    def add_sums(self, sums: Sequence[Any], hist: Sequence[Any] | None = None, bucket: int = 0) -> None:
        """Add ``SUMS`` values (and a histogram, or all the requests to ``bucket``)."""
        self.requests += int(sums[0])
        self.errors += int(sums[1])
        self.estimated += int(sums[2])
        self.prompt_tokens += int(sums[3])
        self.completion_tokens += int(sums[4])
        self.total_tokens += int(sums[5])
        self.cost_usd += float(sums[6])
        self.ttft_count += int(sums[7])
        self.ttft_sum_ms += float(sums[8] or 0.0)
        if hist is None:
            self.hist[bucket] += int(sums[0])
        else:
            counts = self.hist
            for i, n in enumerate(hist):
                if n:
                    counts[i] += int(n)

    def add_plain(self, sums: tuple[Any, ...]) -> None:
        """``add_sums`` of this module's own ``sums()`` (no conversions), histogram aside."""
        r, e, est, p, c, t, cost, tn, ts = sums
        self.requests += r
        self.errors += e
        self.estimated += est
        self.prompt_tokens += p
        self.completion_tokens += c
        self.total_tokens += t
        self.cost_usd += cost
        self.ttft_count += tn
        self.ttft_sum_ms += ts

    def merge(self, other: Totals) -> None:
        self.add_sums(other.sums(), other.hist)

    def sums(self) -> tuple[Any, ...]:
        return (
            self.requests, self.errors, self.estimated, self.prompt_tokens, self.completion_tokens,
            self.total_tokens, self.cost_usd, self.ttft_count, self.ttft_sum_ms,
        )  # fmt: skip

    def percentile(self, p: float) -> float | None:
        """The ``p`` quantile of the latencies, from the histogram (see the module docstring)."""
        if self.requests <= 0:
            return None
        position = (self.requests - 1) * p
        cumulative = list(accumulate(self.hist))
        i = bisect_right(cumulative, int(position))  # the bucket holding the request at that rank
        if i >= len(cumulative):
            return None  # the histogram holds fewer requests than counted: not written by this module
        count = self.hist[i]
        seen = cumulative[i] - count
        low, high = bucket_range(i)
        if high == float("inf"):
            return low
        return low + (high - low) * min(1.0, (position - seen + 0.5) / count)

    @classmethod
    def of(cls, sums: Sequence[Any], hist: Sequence[Any]) -> Totals:
        """Totals from a query's ``SUMS`` and histogram columns (ints or Decimals)."""
        t = cls.__new__(cls)
        t.requests, t.errors, t.estimated = int(sums[0]), int(sums[1]), int(sums[2])
        t.prompt_tokens, t.completion_tokens, t.total_tokens = int(sums[3]), int(sums[4]), int(sums[5])
        t.cost_usd, t.ttft_count, t.ttft_sum_ms = float(sums[6]), int(sums[7]), float(sums[8] or 0.0)
        t.hist = list(map(int, hist))
        return t


def aggregate(rows: Sequence[Sequence[Any]]) -> dict[tuple[int, str, int, str], Totals]:
    """The rollup rows ``rows`` (``UsageRecord.to_values``, ``at`` aware) add to, by ``KEY``.

    Summed first per minute and distinct dimension values (few under load), then per minute
    and value of each dimension, then hours and days from those."""
    by_sig: dict[tuple[Any, ...], Totals] = {}
    for row in rows:
        sig = (int(row[_AT].timestamp()) // 60 * 60, *(row[i] for i in _SIG))
        totals = by_sig.get(sig)
        if totals is None:
            totals = by_sig[sig] = Totals()
        totals.add_values(row)
    minutes: dict[tuple[int, str, int, str], Totals] = {}
    for sig, totals in by_sig.items():
        sums = totals.sums()
        counts = [(i, n) for i, n in enumerate(totals.hist) if n]  # one or a few buckets
        for dim, where in _DIM_AT.items():
            value = None
            for i in where:
                if sig[i] is not None:
                    value = sig[i]
                    break
            key = (60, dim, sig[0], "" if value is None else "=" + value)
            target = minutes.get(key)
            if target is None:
                target = minutes[key] = Totals()
            target.add_plain(sums)
            hist = target.hist
            for i, n in counts:
                hist[i] += n
    out = dict(minutes)
    for (_, dim, start, value), totals in minutes.items():  # hours and days from the minutes
        sums = totals.sums()
        counts = [(i, n) for i, n in enumerate(totals.hist) if n]
        for grain in GRAINS[1:]:
            key = (grain, dim, start // grain * grain, value)
            target = out.get(key)
            if target is None:
                target = out[key] = Totals()
            target.add_plain(sums)
            hist = target.hist
            for i, n in counts:
                hist[i] += n
    return out


def upsert_statement(dialect: str, rows: int = 1) -> str:
    """The additive upsert of ``rows`` rollup rows, in the driver's parameter style."""
    width = len(COLUMNS)
    if dialect == "sqlite":
        values = ", ".join("(" + ", ".join("?" * width) + ")" for _ in range(rows))
    else:
        values = ", ".join(
            "(" + ", ".join(f"${r * width + c}" for c in range(1, width + 1)) + ")" for r in range(rows)
        )
    names = ", ".join(f'"{c}"' for c in COLUMNS)
    adds = ", ".join(f'"{c}" = usage_rollup."{c}" + excluded."{c}"' for c in (*SUMS, *HIST))
    keys = ", ".join(f'"{c}"' for c in KEY)
    # built from this module's own column names; every value is a bound parameter
    return (
        f"INSERT INTO usage_rollup ({names}) VALUES {values} "  # noqa: S608
        f"ON CONFLICT ({keys}) DO UPDATE SET {adds}"
    )


def upsert_rows(totals: dict[tuple[int, str, int, str], Totals]) -> list[tuple[Any, ...]]:
    return [(*key, *t.sums(), *t.hist) for key, t in totals.items()]


PRUNE = "DELETE FROM usage_rollup WHERE grain = 60 AND start < "  # + the driver's parameter


def prune_statement(dialect: str) -> str:
    return PRUNE + ("?" if dialect == "sqlite" else "$1")


def prune_before(now: float | None = None) -> int:
    """The bucket start before which minute rows go."""
    return int((time.time() if now is None else now) - MINUTE_KEEP) // 60 * 60


def backfill(conn: Connection, now: float | None = None) -> int:
    """Build the rollup of every usage row (minute rows for the last ``MINUTE_KEEP`` only),
    on a synchronous connection inside the caller's transaction. Returns rollup rows written."""
    from corral.usage.rollup_read import fold, raw_select  # the readers' grouped query

    if conn.exec_driver_sql("SELECT 1 FROM usage LIMIT 1").first() is None:
        return 0  # a new database: nothing to build (and no statements to compile)
    postgres = conn.dialect.name == "postgresql"
    written = 0
    for grain in GRAINS:
        since = prune_before(now) if grain == 60 else None
        for dim in DIMS:
            query = raw_select(dim, grain, since, None, [], postgres)
            rows = [r for r in conn.execute(query).all()]
            totals = {
                (grain, dim, bucket * grain, encode(value)): t for (bucket, value), t in fold(rows).items()
            }
            values = upsert_rows(totals)
            statement = upsert_statement(conn.dialect.name)
            for first in range(0, len(values), 1000):
                conn.exec_driver_sql(statement, values[first : first + 1000])
            written += len(values)
    return written


__all__ = [
    "BOUNDS",
    "DIMS",
    "GRAINS",
    "MINUTE_USABLE",
    "Totals",
    "aggregate",
    "backfill",
    "bucket_range",
    "decode",
    "encode",
    "latency_bucket",
]
