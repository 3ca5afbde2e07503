"""Small typed readers for config values. Each error names the file, the key path and the fix."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from typing import Any

from corral.errors import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class Fields:
    """Reads one mapping of the config, remembering where it is for error messages."""

    def __init__(self, data: Any, path: str, source: str, env: Mapping[str, str] | None = None) -> None:
        self.source = source
        self.path = path
        self.env = os.environ if env is None else env
        if not isinstance(data, dict):
            raise self.error(f"must be a mapping (key: value), not {type(data).__name__}")
        self.data: dict[str, Any] = data

    def error(self, message: str, key: str | None = None) -> ConfigError:
        where = self.at(key) if key else self.path
        return ConfigError(f"{self.source}: {where or '(top level)'}: {message}")

    def at(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def child(self, data: Any, key: str | int) -> Fields:
        return Fields(data, self.at(key), self.source, self.env)

    def reject_unknown(self, allowed: set[str]) -> None:
        for key in self.data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                hint = (
                    f" Did you mean '{close[0]}'?"
                    if close
                    else f" Allowed keys: {', '.join(sorted(allowed))}."
                )
                raise self.error(f"unknown key '{key}'.{hint}", str(key))

    def resolve(self, value: Any, key: str) -> Any:
        """Expand secret references: ``os.environ/NAME`` and ``${NAME}``."""
        if not isinstance(value, str):
            return value
        if value.startswith("os.environ/"):
            name = value.removeprefix("os.environ/")
            if name not in self.env:
                raise self.error(
                    f"environment variable {name} is not set. Export it, or remove '{key}'.", key
                )
            return self.env[name]

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.env:
                raise self.error(f"environment variable {name} is not set. Export it, or remove it.", key)
            return self.env[name]

        return _ENV_REF.sub(sub, value)

    def raw(self, key: str) -> Any:
        return self.resolve(self.data.get(key), key)

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw(key)
        if value is None:
            if required:
                raise self.error("is required.", key)
            return default
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.error(f"must be a non-empty string, got {value!r}.", key)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(f"must be true or false, got {value!r}.", key)
        return value

    def integer(self, key: str, default: int | None, *, minimum: int | None = None) -> int | None:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"must be a whole number, got {value!r}.", key)
        if minimum is not None and value < minimum:
            raise self.error(f"must be at least {minimum}, got {value}.", key)
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"must be a number, got {value!r}.", key)
        if value < minimum:
            raise self.error(f"must be at least {minimum}, got {value}.", key)
        return float(value)

    def duration(self, key: str, default: float) -> float:
        """Seconds, as a number or a string like '500ms', '5s', '2m', '1h'."""
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        match = _DURATION.match(value) if isinstance(value, str) else None
        if not match or float(match.group(1)) <= 0:
            raise self.error(
                f"must be a positive duration such as 30, '30s', '500ms' or '5m', got {value!r}.", key
            )
        return float(match.group(1)) * _UNITS[match.group(2)]

    def sequence(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error("must be a list.", key)
        return value

    def strings(self, key: str) -> list[str] | None:
        if self.data.get(key) is None:
            return None
        items = self.sequence(key)
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item:
                raise self.error(f"item {i} must be a non-empty string, got {item!r}.", key)
        return items

    def string_map(self, key: str) -> dict[str, str]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error("must be a mapping of names to strings.", key)
        out: dict[str, str] = {}
        for name, item in value.items():
            resolved = self.resolve(item, f"{key}.{name}")
            if not isinstance(name, str) or not isinstance(resolved, str | int | float):
                raise self.error(f"entry {name!r} must be a string.", key)
            out[name] = str(resolved)
        return out
