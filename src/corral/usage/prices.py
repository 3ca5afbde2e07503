"""The price table: USD per million input and output tokens, by model name or glob.

Configured as a mapping (from YAML) of model pattern to prices, for example::

    prices:
      "gpt-4o": {input: 2.5, output: 10}
      "gpt-4o-mini*": {input: 0.15, output: 0.6}
      "claude-*": {input: 3, output: 15, provider_types: [openai]}

Patterns are ``fnmatch`` globs (``*``, ``?``, ``[...]``), matched case-insensitively against the
served model name (``name`` and ``name:latest`` are the same Ollama model). An exact name
wins; otherwise the matching pattern with the most literal characters wins, then the one listed
first. ``provider_types`` restricts an entry to providers of those types.

Local models (provider types ``ollama`` and ``demo``) cost 0 unless priced on purpose: by an
exact name, or by an entry whose ``provider_types`` names their type. A glob without
``provider_types`` never prices them, so ``gpt-*`` meant for OpenAI does not bill a local
``gpt-oss:20b``. A model no entry matches also costs 0, and its requests are still counted.

The model catalog (``corral catalog``, ``/admin/catalog``) comes first: a catalog entry for the
provider that served the request and its model, with a price, decides the cost; ``prices:``
applies to everything else. The table holds an in-memory ``CatalogSnapshot``, replaced whole
when the catalog changes (``use_catalog``), so the lookup on the request path is two dict
reads and never touches the database.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from corral.config.provider_types import LOCAL_TYPES
from corral.errors import ConfigError

PER = 1_000_000
_WILDCARDS = frozenset("*?[]")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens, for an entry's model ``pattern``."""

    pattern: str
    input: float
    output: float
    provider_types: frozenset[str] | None = None  # None: every provider type

    @property
    def is_glob(self) -> bool:
        return any(ch in _WILDCARDS for ch in self.pattern)

    @property
    def literal_chars(self) -> int:
        return sum(ch not in _WILDCARDS for ch in self.pattern)

    def applies(self, model: str, provider_type: str | None) -> bool:
        if self.provider_types is not None:
            if (provider_type or "").lower() not in self.provider_types:
                return False
        elif self.is_glob and is_local(provider_type):
            return False
        return fnmatchcase(model.lower(), self.pattern.lower())


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """One catalog entry as the request path and the model listings read it."""

    provider: str
    model: str
    display_name: str | None = None
    enabled: bool = True
    price: Price | None = None  # None: the catalog does not price it (prices: may)
    capabilities: tuple[str, ...] | None = None
    context_length: int | None = None


class CatalogSnapshot:
    """The catalog, in memory: entries by provider and model id (``name`` and ``name:latest``
    are the same Ollama model)."""

    def __init__(self, models: Iterable[CatalogModel] = ()) -> None:
        self._by: dict[tuple[str, str], CatalogModel] = {}
        for m in models:
            self._by[(m.provider, _plain(m.model))] = m

    def __len__(self) -> int:
        return len(self._by)

    def get(self, provider: str, model: str) -> CatalogModel | None:
        return self._by.get((provider, _plain(model)))

    def __iter__(self) -> Iterator[CatalogModel]:
        return iter(self._by.values())


def _other_tag(model: str) -> str:
    """``name`` <-> ``name:latest``: the same Ollama model."""
    return model.removesuffix(":latest") if model.endswith(":latest") else model + ":latest"


def _plain(model: str) -> str:
    lowered = model.lower()
    return lowered.removesuffix(":latest")


def catalog_price(model: str, input_price: float | None, output_price: float | None) -> Price | None:
    """A catalog entry's price; one side missing is 0, both missing is no price."""
    if input_price is None and output_price is None:
        return None
    return Price(model, input_price or 0.0, output_price or 0.0, None)


class PriceTable:
    """Looks up the price of a model; ``cost`` turns token counts into USD."""

    def __init__(self, prices: Iterable[Price] = ()) -> None:
        self.catalog = CatalogSnapshot()  # replaced whole by use_catalog
        self._exact: dict[str, list[Price]] = {}
        self._globs: list[Price] = []
        for price in prices:
            if price.is_glob:
                self._globs.append(price)
            else:
                self._exact.setdefault(price.pattern.lower(), []).append(price)
        # most literal characters first; sorted() is stable, so ties keep the configured order
        self._globs = sorted(self._globs, key=lambda p: -p.literal_chars)

    def __len__(self) -> int:
        return len(self._globs) + sum(len(v) for v in self._exact.values())

    @classmethod
    def from_config(cls, data: Mapping[str, Any] | None, where: str = "prices") -> PriceTable:
        """Build from ``{pattern: {input, output[, provider_types]}}``; ``ConfigError`` says what to fix."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping of model name or glob to {{input: X, output: Y}}.")
        return cls(_entry(f"{where}.{pattern}", pattern, spec) for pattern, spec in data.items())

    def use_catalog(self, snapshot: CatalogSnapshot) -> None:
        """Price from this catalog from now on (one assignment: a request sees the old or the new)."""
        self.catalog = snapshot

    def price_for(
        self, model: str | None, provider_type: str | None = None, provider: str | None = None
    ) -> Price | None:
        """The price of ``model`` served by ``provider`` (of ``provider_type``): the catalog's
        entry for that provider and model when it has a price, else the matching entry of
        ``prices:``, else None."""
        if not model:
            return None
        if provider is not None:
            entry = self.catalog.get(provider, model)
            if entry is not None and entry.price is not None:
                return entry.price
        key = model.lower()
        exact = self._exact.get(key)
        if exact is None:
            key = _other_tag(key)
            exact = self._exact.get(key, [])
        for price in exact:
            if price.applies(key, provider_type):
                return price
        for price in self._globs:
            if price.applies(model, provider_type):
                return price
        return None

    def is_priced(
        self, model: str | None, provider_type: str | None = None, provider: str | None = None
    ) -> bool:
        return self.price_for(model, provider_type, provider) is not None

    def cost(
        self,
        model: str | None,
        provider_type: str | None,
        prompt: int,
        completion: int,
        provider: str | None = None,
    ) -> float:
        """USD for ``prompt`` input and ``completion`` output tokens; 0.0 for unpriced (and local) models."""
        price = self.price_for(model, provider_type, provider)
        if price is None:
            return 0.0
        return (max(prompt, 0) * price.input + max(completion, 0) * price.output) / PER


def is_local(provider_type: str | None) -> bool:
    return (provider_type or "").lower() in LOCAL_TYPES


def _entry(where: str, pattern: object, spec: object) -> Price:
    if not isinstance(pattern, str) or not pattern.strip():
        raise ConfigError(f"{where}: the model name or glob must be a non-empty string.")
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where} must be a mapping like {{input: 2.5, output: 10}} (USD per million tokens)."
        )
    unknown = set(spec) - {"input", "output", "provider_types"}
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}; "
            "use input, output (USD per million tokens) and optionally provider_types."
        )
    prices = [_usd(f"{where}.{side}", spec.get(side)) for side in ("input", "output")]
    types = spec.get("provider_types")
    if types is not None and (
        not isinstance(types, list | tuple) or not types or not all(isinstance(t, str) for t in types)
    ):
        raise ConfigError(
            f"{where}.provider_types must be a non-empty list of provider types, e.g. [openai]."
        )
    return Price(
        pattern.strip(), prices[0], prices[1], None if types is None else frozenset(t.lower() for t in types)
    )


def _usd(where: str, value: object) -> float:
    if value is None:
        raise ConfigError(f"{where} is missing: give the USD price per million tokens (0 for free).")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where} must be a number of USD per million tokens, 0 or more (got {value!r}).")
    return float(value)
