"""Reading usage totals over a long range from the rollup, and its edges from the rows.

``read`` covers the range [since, until) with the coarsest rollup rows that fit whole (days,
then hours, then minutes; minute rows only within ``MINUTE_USABLE``) and reads what is left at
the edges (less than a minute each, or older sub-hour spans) from the usage rows with the same
grouped query the backfill uses (``raw_select``: counts per latency bucket). So counts, tokens
and cost are those of the rows for any range; latency percentiles come from the histogram
(``corral.usage.rollup``). A grain is used only when it divides the bucket width asked for.

Everything is one dimension (``""`` for all requests) and, optionally, one value of it: the
caller (``corral.usage.rollup_series``) sends other questions to the rows. With ``kept``
(``corral.usage.top``) the groups not kept come back as one "other" total per bucket, returned
apart (``Others``): from the rollup, the bucket's total (dimension ``""``) less the kept values'
rows (a few rows per bucket instead of one per value: 200 users over 7 days are 33,600 hour rows,
the kept ten and the totals 1,848); at the edges, the rows grouped by kept value or "other".
Counts, tokens and the histogram are whole numbers, so "other" is exact; a cost left under
1e-12 USD by the subtraction is 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Integer, Select, case, func, literal_column, null, select
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.store.tables import usage, usage_rollup
from corral.usage.rollup import BOUNDS, GRAINS, HIST, MINUTE_USABLE, SUMS, Totals, decode, encode

if TYPE_CHECKING:
    from corral.usage.top import Kept

Buckets = dict[tuple[int, str | None], Totals]
Others = dict[int, Totals]  # bucket -> the totals of the groups folded into "other"
Piece = tuple[int, int | None, int]  # (grain, or 0 for the rows; start, None for the beginning; end)
NO_STEP = 86400 * 10**6  # a bucket width (whole days) that puts every time until 4707 in bucket 0


def _latency_bucket() -> ColumnElement[Any]:
    c = usage.c
    whens: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = [
        (c.latency_ms < literal_column(repr(b)), literal_column(str(i))) for i, b in enumerate(BOUNDS)
    ]
    return case(*whens, else_=literal_column(str(len(BOUNDS))))


def dim_column(dim: str) -> ColumnElement[Any]:
    c = usage.c
    return {
        "": null(),
        "provider": c.provider,
        "model": func.coalesce(c.served_model, c.requested_model),
        "key": c.key_id,
        "user": c.user,
        "instance": c.instance,
        "requested_model": c.requested_model,
        "surface": c.surface,
    }[dim]


def raw_select(
    dim: str,
    step: int,
    since: int | None,
    until: int | None,
    conditions: Sequence[ColumnElement[bool]],
    postgres: bool,
    kept: Kept | None = None,
) -> Select[Any]:
    """Usage rows of [since, until) (Unix seconds) grouped by bucket, ``dim`` and latency bucket
    (with ``kept``: by its value and flag instead of ``dim``, the flag last)."""
    c = usage.c
    width: ColumnElement[Any] = literal_column(
        str(int(step))
    )  # a whole number, and the same text in GROUP BY
    if postgres:
        bucket: ColumnElement[Any] = func.floor(func.extract("epoch", c.at).op("/")(width))
    else:
        bucket = func.cast(func.strftime(literal_column("'%s'"), c.at), Integer).op("/")(width)
    value = dim_column(dim)
    if dim and not postgres:  # an expression, not an indexed column (see corral.usage.query)
        value = value.op("||")(literal_column("''"))
    failed = (c.status >= 400) | c.error_class.is_not(None)
    where = list(conditions)
    if since is not None:
        where.append(c.at >= datetime.fromtimestamp(since, UTC))
    if until is not None:
        where.append(c.at < datetime.fromtimestamp(until, UTC))
    lb = _latency_bucket()
    flag: list[Any] = []
    if kept is not None:
        value, flag = kept.value(value), [kept.flag(value).label("o")]
    return (
        select(
            bucket.label("b"),
            value.label("v"),
            lb.label("lb"),
            func.count(),
            func.sum(case((failed, 1), else_=0)),
            func.sum(case((c.tokens_estimated, 1), else_=0)),
            func.sum(c.prompt_tokens),
            func.sum(c.completion_tokens),
            func.sum(c.total_tokens),
            func.sum(c.cost_usd),
            func.count(c.ttft_ms),
            func.sum(c.ttft_ms),
            *flag,
        )
        .where(*where)
        .group_by(*(literal_column(name) for name in ("b", "v", "lb", *("o" for _ in flag))))
    )


def fold(rows: Iterable[Sequence[Any]], into: Buckets | None = None, others: Others | None = None) -> Buckets:
    """``raw_select`` rows as totals per (bucket, value); with ``others``, the rows flagged
    folded (``kept``) go there, per bucket."""
    out: Buckets = {} if into is None else into
    n = len(SUMS)
    for row in rows:
        totals: Totals | None
        if others is not None and row[3 + n]:
            totals = others.get(int(row[0]))
            if totals is None:
                totals = others[int(row[0])] = Totals()
        else:
            key = (int(row[0]), row[1])
            totals = out.get(key)
            if totals is None:
                totals = out[key] = Totals()
        totals.add_sums(row[3 : 3 + n], bucket=int(row[2]))
    return out


def rollup_select(
    grain: int, dim: str, step: int, since: int | None, until: int, value: str | None
) -> Select[Any]:
    r = usage_rollup.c
    where = [r.grain == grain, r.dim == dim, r.start < until]
    if since is not None:
        where.append(r.start >= since)
    if value is not None:
        where.append(r.value == encode(value))
    bucket = r.start.op("/")(literal_column(str(int(step)))).label("b")
    sums = [func.sum(r[name]) for name in (*SUMS, *HIST)]
    return select(bucket, r.value, *sums).where(*where).group_by(literal_column("b"), r.value)


def _fold_rollup(rows: Iterable[Sequence[Any]], out: Buckets) -> None:
    n = len(SUMS)
    for row in rows:
        key = (int(row[0]), decode(row[1]))
        totals = Totals.of(row[2 : 2 + n], row[2 + n :])
        found = out.get(key)
        if found is None:
            out[key] = totals
        else:  # the same bucket from another piece
            found.merge(totals)


def _kept_select(select_: Select[Any], kept: Kept) -> Select[Any]:
    return select_.where(kept.stored_condition(usage_rollup.c.value))


def _subtract(totals: Buckets, kept: Buckets, others: Others) -> None:
    """Add each bucket's total (``totals``, dimension ``""``) less its kept values to ``others``."""
    for (bucket, _), total in totals.items():
        rest = Totals()
        rest.merge(total)
        for (b, _), t in kept.items():
            if b == bucket:
                rest.add_sums([-v for v in t.sums()], [-n for n in t.hist])
        if rest.requests <= 0:
            continue
        if abs(rest.cost_usd) < 1e-12:
            rest.cost_usd = 0.0
        into = others.get(bucket)
        if into is None:
            others[bucket] = rest
        else:
            into.merge(rest)


def pieces(since: int | None, until: int, max_grain: int, now: int) -> list[Piece]:
    """[since, until) as (grain, start, end) pieces, grain 0 for the rows; ``since`` None for
    the beginning of time."""
    grains = tuple(g for g in reversed(GRAINS) if g <= max_grain)
    minute_from = -(-(now - MINUTE_USABLE) // 60) * 60
    if since is None:
        top = grains[0] if grains else 0
        end = until // top * top if top else until
        return [(top, None, end), *_cover(end, until, grains[1:], minute_from)]
    return _cover(since, until, grains, minute_from)


def _cover(
    since: int, until: int, grains: tuple[int, ...], minute_from: int
) -> list[tuple[int, int | None, int]]:
    if since >= until:
        return []
    if not grains:
        return [(0, since, until)]
    grain, rest = grains[0], grains[1:]
    first = -(-since // grain) * grain
    last = until // grain * grain
    if first >= last:
        return _cover(since, until, rest, minute_from)
    middle: list[Piece] = [(grain, first, last)]
    if grain == 60 and first < minute_from:  # pruned minutes: read those rows
        middle = [(0, first, min(minute_from, last))]
        if minute_from < last:
            middle.append((60, minute_from, last))
    return [*_cover(since, first, rest, minute_from), *middle, *_cover(last, until, rest, minute_from)]


async def read(
    conn: AsyncConnection,
    dim: str,
    value: str | None,
    step: int,
    since: int | None,
    until: int,
    conditions: Sequence[ColumnElement[bool]],
    now: int,
    kept: Kept | None = None,
) -> tuple[Buckets, Others]:
    """Totals per (bucket number ``start // step``, value of ``dim``) over [since, until), and
    with ``kept`` the totals of the other values per bucket (else nothing).

    ``value`` keeps only that value of ``dim``; ``conditions`` (the same filter on the usage
    rows) apply to the rows read at the edges."""
    postgres = conn.dialect.name == "postgresql"
    max_grain = max((g for g in GRAINS if step % g == 0), default=0)
    out: Buckets = {}
    others: Others = {}
    folded = others if kept is not None else None
    for grain, start, end in pieces(since, until, max_grain, now):
        if grain and kept is not None:
            piece: Buckets = {}
            query = _kept_select(rollup_select(grain, dim, step, start, end, value), kept)
            _fold_rollup((await conn.execute(query)).all(), piece)
            whole: Buckets = {}
            _fold_rollup((await conn.execute(rollup_select(grain, "", step, start, end, None))).all(), whole)
            _subtract(whole, piece, others)
            for key, totals in piece.items():
                found = out.get(key)
                if found is None:
                    out[key] = totals
                else:
                    found.merge(totals)
        elif grain:
            rows = (await conn.execute(rollup_select(grain, dim, step, start, end, value))).all()
            _fold_rollup(rows, out)
        else:
            query = raw_select(dim, step, start, end, conditions, postgres, kept)
            fold((await conn.execute(query)).all(), out, folded)
    return out, others


__all__ = ["NO_STEP", "Buckets", "Others", "fold", "pieces", "raw_select", "read"]
