"""The question a usage reader is asked: the filter, ``group_by``, the bucket ``step`` of a series
and its ``top`` groups, parsed from a query string.

``UsageFilter.from_params`` parses the query string of ``GET /admin/usage`` (``since``/``until``
as ISO 8601, or ``last=15m|1h|7d``; ``key``, ``user``, ``model``, ``provider``, ``surface``) and
``parse_group_by`` its ``group_by`` (comma-separated: provider, model, key, user, hour, day,
instance, requested_model, surface). ``model`` matches the requested or the served model and groups by
the served one (the requested one when no upstream answered). Times are UTC; ``since`` is
inclusive, ``until`` exclusive. ``parse_top`` reads ``top`` and ``top_by`` (see
``corral.usage.top``). Every error is an ``InvalidRequest`` naming the parameter and the form
it expects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, or_

from corral.errors import InvalidRequest
from corral.store.tables import usage

MAX_GROUPS = 3
_LAST = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
_WHOLE = re.compile(r"\s*[0-9]{1,6}\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_LAST_DAYS = 400  # 'last' reaches back at most this far (further, its date would not exist)
MAX_BUCKETS = 1500
_FILTER_PARAMS = {
    "key": "key_id", "user": "user", "model": "model", "provider": "provider", "surface": "surface",
}  # fmt: skip
DIMENSIONS = ("provider", "model", "key", "user", "hour", "day", "instance", "requested_model", "surface")
TIME_DIMENSIONS = ("hour", "day")
NICE_STEPS = (10, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)
DEFAULT_TOP = 10  # groups a series by one dimension keeps when 'top' is not given
MAX_TOP = 100  # the most groups 'top' may keep
TOP_BY = ("cost", "requests")


@dataclass(frozen=True, slots=True)
class UsageFilter:
    since: datetime | None = None
    until: datetime | None = None
    key_id: str | None = None
    user: str | None = None
    model: str | None = None
    provider: str | None = None
    surface: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str], now: datetime) -> UsageFilter:
        """Parse query parameters; ``InvalidRequest`` names the parameter and the expected form."""
        since = _time(params, "since")
        until = _time(params, "until")
        last = params.get("last")
        if last is not None:
            if since is not None:
                raise InvalidRequest("Give either 'last' or 'since', not both.", param="last")
            since = now.astimezone(UTC) - parse_last(last)
        if since is not None and until is not None and until <= since:
            raise InvalidRequest("'until' must be later than 'since'.", param="until")
        values = {field: params.get(name) or None for name, field in _FILTER_PARAMS.items()}
        return cls(since=since, until=until, **values)

    def conditions(self) -> list[ColumnElement[bool]]:
        c = usage.c
        found: list[ColumnElement[bool]] = []
        if self.since is not None:
            found.append(c.at >= self.since)
        if self.until is not None:
            found.append(c.at < self.until)
        if self.key_id is not None:
            found.append(c.key_id == self.key_id)
        if self.user is not None:
            found.append(c.user == self.user)
        if self.provider is not None:
            found.append(c.provider == self.provider)
        if self.surface is not None:
            found.append(c.surface == self.surface)
        if self.model is not None:
            found.append(or_(c.requested_model == self.model, c.served_model == self.model))
        return found


@dataclass(frozen=True, slots=True)
class Top:
    """Keep the ``n`` groups that rank first ``by`` cost or requests; fold the rest into "other"."""

    n: int
    by: str = "cost"


def _seconds(value: str, param: str, like: str) -> int:
    """A duration such as ``"90s"``, ``"15m"``, ``"1h"``, ``"7d"``, ``"2w"`` in whole seconds."""
    match = _LAST.match(value)
    if match is None or int(match[1]) == 0:
        raise InvalidRequest(
            f"'{param}' must be a positive number followed by s, m, h, d or w (like {like}); "
            f"got {value[:40]!r}.",
            param=param,
        )
    return int(match[1]) * _UNITS[match[2]]


def parse_last(value: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"7d"``, ``"2w"`` as a ``timedelta``."""
    seconds = _seconds(value, "last", "15m, 1h, 7d")
    if seconds > MAX_LAST_DAYS * 86400:
        raise InvalidRequest(
            f"'last' may be at most {MAX_LAST_DAYS} days (like {MAX_LAST_DAYS}d); for older usage give "
            "'since' (and 'until') as dates.",
            param="last",
        )
    return timedelta(seconds=seconds)


def parse_group_by(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"provider,model"`` (or a list) as a tuple of dimensions, checked."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(part.strip() for part in parts if part.strip())
    for name in names:
        if name not in DIMENSIONS:
            raise InvalidRequest(
                f"Unknown group_by {name[:40]!r}; use one or more of {', '.join(DIMENSIONS)}, "
                "comma-separated.",
                param="group_by",
            )
    if len(set(names)) != len(names) or len(names) > MAX_GROUPS:
        raise InvalidRequest(
            f"group_by takes up to {MAX_GROUPS} different dimensions, comma-separated.", param="group_by"
        )
    return names


def parse_top(params: Mapping[str, str], group_by: Sequence[str], *, default: int | None) -> Top | None:
    """``top`` (1 to ``MAX_TOP``) and ``top_by`` (cost, the default, or requests) for ``group_by``.

    ``default`` applies when ``top`` is not given and ``group_by`` has one dimension besides hour
    and day; ``top`` with none, or with two, is refused."""
    dims = [name for name in group_by if name not in TIME_DIMENSIONS]
    by = (params.get("top_by") or "cost").strip()
    if by not in TOP_BY:
        raise InvalidRequest(f"'top_by' must be cost or requests; got {by[:40]!r}.", param="top_by")
    raw = params.get("top")
    if raw is None or not raw.strip():
        return Top(default, by) if default is not None and len(dims) == 1 else None
    if _WHOLE.fullmatch(raw) is None or not 1 <= int(raw) <= MAX_TOP:
        raise InvalidRequest(
            f"'top' must be a whole number from 1 to {MAX_TOP}; got {raw[:40]!r}.", param="top"
        )
    if len(dims) != 1:
        raise InvalidRequest(
            "'top' keeps the first groups of one dimension: group_by one of provider, model, key, user, "
            "instance, requested_model or surface (and hour or day).",
            param="top",
        )
    return Top(int(raw), by)


def parse_step(value: str | None, window: timedelta) -> int:
    """The bucket width in whole seconds: ``value`` (``"1m"``, ``"5m"``, ``"1h"``), or by default
    the smallest usual width that draws ``window`` in at most 60 buckets. At most MAX_BUCKETS."""
    span = max(1.0, window.total_seconds())
    if value is None:
        return next((s for s in NICE_STEPS if span / s <= 60), NICE_STEPS[-1])
    seconds = _seconds(value, "step", "1m, 5m, 1h")
    if span / seconds > MAX_BUCKETS:
        raise InvalidRequest(
            f"'step' {value.strip()} makes {span / seconds:.0f} buckets over this range; at most "
            f"{MAX_BUCKETS} are drawn. Choose a larger step or a shorter range.",
            param="step",
        )
    return seconds


def _time(params: Mapping[str, str], name: str) -> datetime | None:
    raw = params.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise InvalidRequest(
            f"'{name}' must be an ISO 8601 time like 2025-01-31T13:00:00Z (UTC if no offset is given).",
            param=name,
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


__all__ = [
    "DEFAULT_TOP",
    "DIMENSIONS",
    "MAX_TOP",
    "TOP_BY",
    "Top",
    "UsageFilter",
    "parse_group_by",
    "parse_last",
    "parse_step",
    "parse_top",
]
