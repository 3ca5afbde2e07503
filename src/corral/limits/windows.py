"""Window arithmetic shared by both limiters: budget periods and the sliding minute.

Budget periods are fixed windows aligned to the calendar, in UTC:

* ``Ns``, ``Nm`` (minutes), ``Nh``, ``Nd``, ``Nw`` and the words ``hourly``, ``daily``, ``weekly``
  are fixed-length windows counted from Monday 1970-01-05 00:00 UTC, so ``1h`` windows start on
  the hour, ``1d`` at UTC midnight and ``7d`` / ``1w`` on Monday at 00:00 UTC. Lengths that do
  not divide a week (``30d``) simply repeat every N days from that Monday.
* ``Nmo`` and ``monthly`` are calendar months: ``monthly`` starts on the 1st at 00:00 UTC,
  ``3mo`` on January, April, July and October 1st.

rpm and tpm use the sliding-window counter approximation over 60 s: one counter for the current
fixed minute and one for the previous; the load is ``floor(previous * weight) + current``, where
``weight`` is the share of the previous minute still inside the rolling 60 s. It is exact while
traffic within a minute is even, never lets through more than the limit inside one fixed minute,
and its worst case (a burst at the very end of a minute) lets up to one extra limit's worth
through within the rolling 60 s. Both limiters use these functions, so they decide the same way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from corral.errors import InvalidRequest

MINUTE = 60.0
MONDAY = 4 * 86400  # 1970-01-05T00:00Z, the anchor of fixed-length budget windows
DEFAULT_PERIOD = "monthly"  # used when max_budget is set without budget_period

_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_WORDS = {"hourly": "1h", "daily": "1d", "weekly": "1w", "monthly": "1mo"}
_PATTERN = re.compile(r"^(\d{1,5})\s*(s|m|min|h|d|w|mo)$")


@dataclass(frozen=True, slots=True)
class Period:
    """A parsed budget period: ``seconds`` for fixed-length windows, else ``months``."""

    text: str
    seconds: int = 0
    months: int = 0

    def window(self, now: float) -> tuple[int, float]:
        """The window holding ``now`` (UTC epoch seconds): its id and its end (epoch seconds)."""
        if self.seconds:
            index = math.floor((now - MONDAY) / self.seconds)
            return index, MONDAY + (index + 1) * self.seconds
        index = _month_of(now) // self.months
        return index, _month_start((index + 1) * self.months)

    def start(self, now: float) -> float:
        """The start (epoch seconds, inclusive) of the window holding ``now``: e.g. the spend of
        the current window is what was spent from ``start(now)`` on."""
        if self.seconds:
            return MONDAY + math.floor((now - MONDAY) / self.seconds) * self.seconds
        return _month_start(_month_of(now) // self.months * self.months)


def _month_of(now: float) -> int:
    """Months since year 0 of the UTC calendar month holding ``now`` (January 2024 is 2024 * 12)."""
    moment = datetime.fromtimestamp(now, UTC)
    return moment.year * 12 + moment.month - 1


def _month_start(month: int) -> float:
    """Epoch seconds of 00:00 UTC on the 1st of ``month`` (as counted by ``_month_of``)."""
    return datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC).timestamp()


def parse_period(text: str) -> Period:
    """Parse a budget period ("1h", "1d", "7d", "30d", "1w", "1mo", "monthly"...).

    Raises ``InvalidRequest`` naming the accepted forms; call it when a key's limits are written
    so that a bad period is refused then rather than on every request."""
    clean = text.strip().lower()
    match = _PATTERN.match(_WORDS.get(clean, clean))
    if match is None or int(match.group(1)) == 0:
        raise InvalidRequest(
            f"Unknown budget_period '{text}'. Use a count and a unit: s, m (minutes), h, d, w or "
            "mo (calendar months), e.g. 1h, 1d, 7d, 30d, 1mo, or hourly, daily, weekly, monthly.",
            param="limits.budget_period",
        )
    count, unit = int(match.group(1)), match.group(2)
    if unit == "mo":
        return Period(text=clean, months=count)
    return Period(text=clean, seconds=count * _UNITS[unit])


def minute_of(now: float) -> tuple[int, float]:
    """The fixed minute holding ``now`` and the weight of the previous minute (1.0 → 0.0)."""
    index = math.floor(now / MINUTE)
    return index, 1.0 - (now - index * MINUTE) / MINUTE


def sliding_load(current: int, previous: int, weight: float) -> int:
    return math.floor(previous * weight) + current


def over(current: int, previous: int, weight: float, limit: int, need: int) -> bool:
    """Would taking ``need`` more go over ``limit``? A limit of 0 refuses everything; a single
    request larger than the whole limit is let through when nothing else is in the window."""
    if limit <= 0:
        return True
    return sliding_load(current, previous, weight) + min(need, limit) > limit


def wait_time(current: int, previous: int, weight: float, limit: int, need: int) -> float:
    """Seconds until ``over(...)`` turns false, assuming no other traffic."""
    if limit <= 0:
        return MINUTE
    elapsed = (1.0 - weight) * MINUTE
    room = limit - min(need, limit)
    if current <= room:
        # only the previous minute's tail is in the way: wait until floor(previous * weight)
        # drops to room - current, i.e. previous * weight < room - current + 1
        if not previous:
            return 0.0
        return max(0.0, MINUTE * (1.0 - (room - current + 1) / previous) - elapsed) + 1e-3
    # this minute alone is full: wait for the next minute, then for this minute's count (the
    # previous one by then) to fade out of the rolling window far enough
    return MINUTE - elapsed + max(0.0, MINUTE * (1.0 - (room + 1) / current)) + 1e-3
