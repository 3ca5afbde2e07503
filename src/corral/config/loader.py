"""Load and validate the YAML configuration; build the defaults when there is no file.

Every error is a ``ConfigError`` naming the file, the key path and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import yaml

from corral.config.fields import Fields
from corral.config.listeners import parse_admin, parse_server
from corral.config.provider_types import BEARER, CONFIG_TYPES, NO_AUTH, REGISTRY, Auth, takes, type_fields
from corral.config.routing import check_chains, parse_alias, parse_router
from corral.config.schema import (
    DEFAULT_PATHS,
    MAX_LINE_BYTES,
    MAX_RESPONSE_BYTES,
    Config,
    ProviderConfig,
    ProviderType,
)
from corral.config.syntax import FRAMING, HEADER_NAME, REQUEST_PATH
from corral.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")  # used with fullmatch: no trailing newline
_TOP_KEYS = {
    "master_key",
    "database_url",
    "redis_url",
    "prices",
    "user_limits",
    "providers",
    "models",
    "server",
    "admin",
    "router",
}
_PROVIDER_KEYS = {
    "name",
    "type",
    "base_url",
    "api_key",
    "headers",
    "verify_ssl",
    "timeout",
    "connect_timeout",
    "priority",
    "weight",
    "enabled",
    "models",
    "paths",
    "max_connections",
    "keep_alive",
    "num_ctx",
    "options",
    "max_parallel",
    "first_token_timeout",
    "max_response_bytes",
    "max_line_bytes",
    "auth",
    "surfaces",
}


def load_config(
    path: str | Path | None, *, env: Mapping[str, str] | None = None, demo: bool = False
) -> Config:
    """Read ``path`` (or build the defaults when it is None) and validate it."""
    env = os.environ if env is None else env
    if path is None:
        return _defaults(env, demo)
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found. Check the path given to --config.") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot be read ({exc.strerror}).") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data if data is not None else {}, source=source, env=env, demo=demo)


def parse_config(data: Any, *, source: str, env: Mapping[str, str], demo: bool = False) -> Config:
    top = Fields(data, "", source, env)
    top.reject_unknown(_TOP_KEYS)
    server = parse_server(top.child(top.data.get("server") or {}, "server"))
    admin = parse_admin(top.child(top.data.get("admin") or {}, "admin"))
    providers = tuple(
        _provider(Fields(item, f"providers[{i}]", source, env))
        for i, item in enumerate(top.sequence("providers"))
    )
    _check_unique([p.name for p in providers], "providers", top)
    if demo and any(p.name == "demo" for p in providers):
        raise top.error("a provider is named 'demo', which --demo reserves. Rename it.", "providers")
    names = {p.name for p in providers} | ({"demo"} if demo else set())
    models = tuple(
        parse_alias(Fields(item, f"models[{i}]", source, env), names)
        for i, item in enumerate(top.sequence("models"))
    )
    _check_unique([m.name for m in models], "models", top)
    router = parse_router(top.child(top.data.get("router") or {}, "router"))
    check_chains(source, models, router, names)
    master_key = top.string("master_key")
    if master_key is not None and len(master_key) < 16:
        raise top.error(
            "is shorter than 16 characters. Use a long random key, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`.",
            "master_key",
        )
    return Config(
        source=source,
        master_key=master_key,
        providers=providers,
        models=models,
        server=server,
        admin=admin,
        router=router,
        demo=demo,
        database_url=top.string("database_url"),
        redis_url=top.string("redis_url"),
        prices=_prices(top),
        user_limits=_user_limits(top),
    )


def _prices(top: Fields) -> dict[str, Any]:
    from corral.usage.prices import PriceTable  # validates now, so a bad price stops the start

    raw = top.data.get("prices") or {}
    PriceTable.from_config(raw, where=f"{top.source}: prices")  # raises ConfigError naming the entry
    return dict(raw)


def _user_limits(top: Fields) -> dict[str, dict[str, Any]]:
    from corral.errors import InvalidRequest
    from corral.limits import Limits, parse_period

    raw = top.data.get("user_limits") or {}
    if not isinstance(raw, dict):
        raise top.error(
            "must map user names to limits like {rpm: 60, max_budget: 10, budget_period: 30d}.", "user_limits"
        )
    for user, limits in raw.items():
        try:
            parsed = Limits.from_mapping(limits if isinstance(limits, dict) else {"?": limits})
            if parsed.budget_period:
                parse_period(parsed.budget_period)
        except (InvalidRequest, ValueError) as exc:
            raise top.error(str(exc), f"user_limits.{user}") from None
    return {str(k): dict(v) for k, v in raw.items()}


def _defaults(env: Mapping[str, str], demo: bool) -> Config:
    """No config file: serve a local Ollama found at OLLAMA_HOST or the default address."""
    base_url = ollama_host_url(env.get("OLLAMA_HOST", ""))
    local = ProviderConfig(name="local", type="ollama", base_url=base_url)
    return Config(source="<defaults>", providers=(local,), demo=demo)


def ollama_host_url(value: str) -> str:
    """Turn an OLLAMA_HOST value ('0.0.0.0:11434', 'host', 'http://h:p') into a base URL."""
    value = value.strip() or "127.0.0.1:11434"
    if "://" not in value:
        value = "http://" + value
    parts = urlsplit(value)
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or (443 if parts.scheme == "https" else 11434)
    return f"{parts.scheme}://{host}:{port}{parts.path.rstrip('/')}"


def parse_provider(data: Any, *, where: str, source: str, env: Mapping[str, str]) -> ProviderConfig:
    """Validate one provider mapping (from YAML or the admin API) exactly as the loader does."""
    return _provider(Fields(data, where, source, env))


def _provider(f: Fields) -> ProviderConfig:
    f.reject_unknown(_PROVIDER_KEYS)
    name = cast(str, f.string("name", required=True))
    if not _NAME.fullmatch(name) or name == "corral":
        raise f.error(
            f"'{name}' is not a valid provider name: use letters, digits, '_', '-', '.', "
            "no '/', and not the reserved name 'corral'.",
            "name",
        )
    kind = f.string("type", required=True)
    if kind not in CONFIG_TYPES:
        raise f.error(f"must be one of {', '.join(CONFIG_TYPES)}, got {kind!r}.", "type")
    ptype: ProviderType = kind
    spec = REGISTRY[ptype]
    for key in (type_fields() - spec.fields) & f.data.keys():
        raise f.error(f"applies only to providers of type: {', '.join(takes(key))}.", key)
    base_url = _base_url(f, ptype)
    paths = f.string_map("paths")
    for key, value in paths.items():
        if key not in DEFAULT_PATHS[ptype]:
            raise f.error(
                f"unknown path '{key}'; a {ptype} provider has: {', '.join(DEFAULT_PATHS[ptype])}.", "paths"
            )
        if not value.startswith("/"):
            raise f.error(f"'{key}' must start with '/', got {value!r}.", "paths")
        if not REQUEST_PATH.fullmatch(value):
            raise f.error(
                f"'{key}' must be printable ASCII with no spaces; percent-encode the rest.", "paths"
            )
    keep_alive = f.raw("keep_alive")
    if keep_alive is not None and (isinstance(keep_alive, bool) or not isinstance(keep_alive, str | int)):
        raise f.error(
            "must be a duration string like '10m' or a number of seconds (-1 keeps it loaded).", "keep_alive"
        )
    options = f.data.get("options") or {}
    if not isinstance(options, dict):
        raise f.error("must be a mapping of Ollama options (e.g. num_ctx: 8192).", "options")
    static_models = f.strings("models")
    return ProviderConfig(
        name=name,
        type=ptype,
        base_url=base_url,
        api_key=_api_key(f),
        headers=_headers(f),
        verify_ssl=f.boolean("verify_ssl", True),
        timeout=f.duration("timeout", 600.0),
        connect_timeout=f.duration("connect_timeout", 5.0),
        priority=f.integer("priority", 0) or 0,
        weight=f.number("weight", 1.0),
        enabled=f.boolean("enabled", True),
        models=tuple(static_models) if static_models is not None else None,
        paths=paths,
        max_connections=f.integer("max_connections", 256, minimum=1) or 256,
        max_parallel=f.integer("max_parallel", spec.max_parallel, minimum=0) or 0,
        first_token_timeout=f.duration("first_token_timeout", 0.0) or None,
        max_response_bytes=f.integer("max_response_bytes", MAX_RESPONSE_BYTES, minimum=1024)
        or MAX_RESPONSE_BYTES,
        max_line_bytes=f.integer("max_line_bytes", MAX_LINE_BYTES, minimum=1024) or MAX_LINE_BYTES,
        auth=_auth(f),
        surfaces=_surfaces(f, ptype),
        keep_alive=keep_alive,
        num_ctx=f.integer("num_ctx", None, minimum=1),
        options=dict(options),
    )


def _api_key(f: Fields) -> str | None:
    key = f.string("api_key")
    if key is not None and (not key.isascii() or not key.isprintable() or " " in key):
        raise f.error("must be printable ASCII with no spaces (it is sent in a header).", "api_key")
    return key


def _surfaces(f: Fields, ptype: ProviderType) -> tuple[str, ...]:
    """``surfaces``: the client APIs the upstream serves natively (their calls pass through)."""
    names = f.strings("surfaces") or []
    known = REGISTRY[ptype].surfaces
    for name in names:
        if name not in known:
            raise f.error(
                f"unknown surface {name!r}; a {ptype} provider can declare: {', '.join(sorted(known))} "
                "(the other client APIs its server answers itself, e.g. vLLM >= 0.11.1 or Ollama's /v1).",
                "surfaces",
            )
    return tuple(dict.fromkeys(names))


def _auth(f: Fields) -> Auth | None:
    """``auth``: bearer (the key as a Bearer token), none (no key sent), or the name of the header
    that carries the key as it is (x-api-key, api-key...). Absent: the type's own scheme."""
    value = f.raw("auth")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise f.error("must be bearer, none, or the name of the header that carries the key.", "auth")
    if value.lower() == "bearer":
        return BEARER
    if value.lower() == "none":
        return NO_AUTH
    if not HEADER_NAME.fullmatch(value) or value.lower() in FRAMING:
        raise f.error(
            f"{value!r} is not a header corral can send the key in: use bearer, none, or a header "
            "name such as x-api-key.",
            "auth",
        )
    if value.lower() == "authorization":
        return BEARER
    return Auth(header=value, bearer=False)


def _headers(f: Fields) -> dict[str, str]:
    headers = f.string_map("headers")
    for name, value in headers.items():
        if name.lower() in FRAMING:
            raise f.error(f"'{name}' is set by corral itself; remove it.", "headers")
        if not HEADER_NAME.fullmatch(name):
            raise f.error(f"{name!r} is not a valid header name (letters, digits and -).", "headers")
        if not value.isascii() or any(c in value for c in "\r\n\0"):
            raise f.error(f"the value of '{name}' must be one line of plain ASCII.", "headers")
    return headers


def _base_url(f: Fields, ptype: ProviderType) -> str:
    url = cast(str, f.string("base_url", required=True)).rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise f.error(
            f"is not a valid URL: {url!r}. Use http://host:port or https://host.", "base_url"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise f.error(f"must be an http:// or https:// URL with a host, got {url!r}.", "base_url")
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        raise f.error(f"has a host name that is not valid: {parts.hostname!r}.", "base_url") from None
    if not parts.path.isascii() or any(c in parts.path for c in " \r\n\0"):
        raise f.error("has a path with spaces or non-ASCII characters; percent-encode them.", "base_url")
    if parts.query or parts.fragment:
        raise f.error("must not have a query string or fragment.", "base_url")
    suffix = REGISTRY[ptype].strip_suffix
    if suffix and url.endswith(suffix):
        url = url.removesuffix(suffix)  # e.g. Ollama Cloud documents https://ollama.com/api as its base
    return url


def _check_unique(names: list[str], key: str, top: Fields) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise top.error(f"name '{name}' is used twice (again at {key}[{i}]). Names must be unique.", key)
        seen.add(name)
