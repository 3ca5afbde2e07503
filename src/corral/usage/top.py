"""The top groups of one dimension, and the "other" group that holds the rest.

A summary or series grouped by one dimension (besides hour or day) and asked for ``Top(n, by)``
keeps the ``n`` groups that rank first over its whole range and folds every other group into
one "other" row per bucket: its dimension is None (null in JSON) and its ``other`` is the number
of groups folded (over the whole range, the same in every bucket). So the rows still add up to
the ungrouped totals: counts, tokens and cost exactly, and the latency percentiles of "other"
are those of its own requests, as for any group.

**Ranking.** ``by="cost"``: the highest cost first, then the most requests; ``by="requests"``:
the other way round; then by value (ascending, the group without a value after the named ones),
so ties always fall the same way. Costs are compared rounded to 1e-9 USD, so the rows and the
rollup, which may add the same costs in another order, rank alike. With no more than ``n``
groups nothing is folded (``rank`` returns None).

**Folding in SQL.** The readers of the rows group by ``Kept.value(column)`` (the value when
kept, else null) and ``Kept.flag(column)`` (0 kept, 1 folded) instead of the column, so only
``n + 1`` groups per bucket leave the database; the rollup reader reads the kept values' rows
(``stored_condition``) and each bucket's total, and "other" is the difference
(``corral.usage.rollup_read``). The kept values are bound parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, false, literal_column, null, or_

from corral.usage.figures import Label
from corral.usage.params import Top
from corral.usage.rollup import encode

COST_DIGITS = 9  # costs are ranked rounded to a billionth of a dollar


@dataclass(frozen=True, slots=True)
class Kept:
    """The values of the groups kept, in rank order, and how many groups were folded."""

    values: tuple[Label, ...]
    folded: int

    def condition(self, column: ColumnElement[Any]) -> ColumnElement[bool]:
        """``column`` holds a kept value (usage rows: the value itself, or null)."""
        named = [v for v in self.values if v is not None]
        parts: list[ColumnElement[bool]] = [column.in_(named)] if named else []
        if None in self.values:
            parts.append(column.is_(None))
        return or_(*parts) if parts else false()

    def stored_condition(self, column: ColumnElement[Any]) -> ColumnElement[bool]:
        """The same on the rollup's ``value`` column (``corral.usage.rollup.encode``d)."""
        return column.in_([encode(v) for v in self.values])

    def value(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """``column`` where it is kept, else null (the usage rows)."""
        return case((self.condition(column), column), else_=null())

    def flag(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """0 where ``column`` is kept, 1 where it is folded into "other"."""
        return case((self.condition(column), literal_column("0")), else_=literal_column("1"))


def rank(groups: Mapping[Label, tuple[int, float]], top: Top) -> Kept | None:
    """The groups to keep of ``groups`` (value -> (requests, cost) over the range), or None
    when there are no more than ``top.n``."""
    if len(groups) <= top.n:
        return None

    def key(item: tuple[Label, tuple[int, float]]) -> tuple[Any, ...]:
        label, (requests, cost) = item
        rounded = round(cost, COST_DIGITS)
        first = (-rounded, -requests) if top.by == "cost" else (-requests, -rounded)
        return (*first, label is None, label or "")

    ordered = sorted(groups.items(), key=key)
    return Kept(tuple(label for label, _ in ordered[: top.n]), len(ordered) - top.n)


__all__ = ["Kept", "rank"]
