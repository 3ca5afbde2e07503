"""``litellm_settings``, ``router_settings``, ``general_settings`` and
``environment_variables`` to corral's ``router:``, ``master_key``, ``database_url`` and
``redis_url``. Fallback chains are collected here and attached to aliases by ``litellm``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.config.schema import STRATEGIES, STRATEGY_ALIASES
from corral.migrate.located import Lines
from corral.migrate.report import Kind, Report

MIN_MASTER_KEY = 16  # corral's own minimum
ROUTER_DEFAULT_EJECT_MAX = 300.0
_NOTES = {  # settings corral covers another way: what to tell the operator
    "callbacks": "corral serves Prometheus metrics at /metrics on its control plane and writes usage "
    "to its own database; LiteLLM callbacks are not carried over.",
    "success_callback": "corral records every request in its usage table (corral usage); callbacks are "
    "not carried over.",
    "failure_callback": "corral records failed requests in its usage table; callbacks are not carried over.",
    "drop_params": "corral translates the parameters each upstream understands and forwards the rest; "
    "there is no drop_params switch.",
    "cache": "corral has no response cache.",
    "cache_params": "corral has no response cache.",
    "set_verbose": "use `corral serve --log-level debug`.",
    "json_logs": "corral logs one line per event; there is no JSON log switch.",
    "background_health_checks": "corral always checks health in the background, with a cheap probe "
    "(never a completion), every router.health_interval seconds.",
    "enable_pre_call_checks": "corral checks the model is listed by a deployment before it routes there.",
    "store_model_in_db": "corral keeps providers and aliases added through its admin API in its database.",
}


@dataclass
class Settings:
    router: dict[str, Any] = field(default_factory=dict)
    top: dict[str, Any] = field(default_factory=dict)  # master_key, database_url, redis_url
    fallbacks: list[tuple[str, list[str], int | None]] = field(default_factory=list)
    default_fallbacks: list[str] = field(default_factory=list)
    default_line: int | None = None
    group_aliases: list[tuple[str, str, int | None]] = field(default_factory=list)
    cost_based: bool = False
    strategy_given: bool = False
    env_refs: set[str] = field(default_factory=set)
    credentials: dict[str, dict[str, Any]] = field(default_factory=dict)


def convert(data: Mapping[str, Any], lines: Lines, report: Report) -> Settings:
    out = Settings()
    for section in ("litellm_settings", "router_settings", "general_settings"):
        value = data.get(section)
        if value is not None and not isinstance(value, Mapping):
            report.add("unmapped", lines.of(section), section, "must be a mapping; skipped.")
    litellm = _section(data, "litellm_settings")
    router = _section(data, "router_settings")
    general = _section(data, "general_settings")
    for section, values in (("litellm_settings", litellm), ("router_settings", router)):
        for key, value in values.items():
            _router_key(out, section, key, value, lines, report, values)
    _redis(out, router, lines, report)
    for key, value in general.items():
        _general(out, key, value, lines, report)
    _environment(data.get("environment_variables"), lines, report)
    _credentials(out, data.get("credential_list"), lines, report)
    return out


def _section(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    return dict(value) if isinstance(value, Mapping) else {}


def _router_key(
    out: Settings,
    section: str,
    key: str,
    value: Any,
    lines: Lines,
    report: Report,
    values: Mapping[str, Any],
) -> None:
    where, line = f"{section}.{key}", lines.of(section, key)
    if key == "fallbacks":
        _chains(out, section, value, lines, report)
    elif key == "default_fallbacks":
        if _names(value):
            out.default_fallbacks += [v for v in value if v not in out.default_fallbacks]
            out.default_line = line
        else:
            report.add("unmapped", line, where, "must be a list of model names.")
    elif key == "context_window_fallbacks":
        shown = "; ".join(f"{k} -> {', '.join(map(str, v))}" for d in _dicts(value) for k, v in d.items())
        report.add(
            "unmapped",
            line,
            where,
            "corral does not retry a request the upstream refused as too long (a 400 is the "
            f"client's to fix). Chains not carried over: {shown or '(none)'}. Point clients at "
            "the longer-context alias for long prompts.",
        )
    elif key in ("content_policy_fallbacks",):
        report.add("unmapped", line, where, "corral does not fall back on a content-policy refusal.")
    elif key == "num_retries" and isinstance(value, int) and value >= 0:
        out.router["max_attempts"] = value + 1
        report.add(
            "changed",
            line,
            where,
            f"num_retries {value} -> router.max_attempts {value + 1}: corral counts attempts, and "
            "each retry may go to another deployment of the pool, then to its fallbacks.",
        )
    elif key in ("timeout", "request_timeout") and _positive(value):
        if "request_timeout" in out.router and out.router["request_timeout"] != value:
            report.add(
                "changed",
                line,
                where,
                f"{key} {value}: router.request_timeout was already {out.router['request_timeout']} "
                "from another setting; the larger is kept.",
            )
            out.router["request_timeout"] = max(out.router["request_timeout"], value)
        else:
            out.router["request_timeout"] = value
            report.add(
                "mapped",
                line,
                where,
                f"{key} {value} -> router.request_timeout (the whole request, every attempt included).",
            )
    elif key == "routing_strategy" and isinstance(value, str):
        _strategy(out, value, line, where, report)
    elif key == "allowed_fails" and isinstance(value, int) and value > 0:
        out.router["eject_after"] = value
        report.add(
            "changed",
            line,
            where,
            f"allowed_fails {value} -> router.eject_after {value}: corral ejects a deployment after "
            "that many consecutive failures (LiteLLM counts failures within a minute).",
        )
    elif key == "cooldown_time" and _positive(value):
        out.router["eject_base"] = value
        if value > ROUTER_DEFAULT_EJECT_MAX:
            out.router["eject_max"] = value
        report.add(
            "changed",
            line,
            where,
            f"cooldown_time {value} -> router.eject_base {value}: the first ejection lasts that long; "
            "corral doubles it on each ejection in a row (up to router.eject_max) and probes the "
            "deployment before taking it back.",
        )
    elif key == "model_group_alias" and isinstance(value, Mapping):
        for alias, target in value.items():
            group = target.get("model") if isinstance(target, Mapping) else target
            if isinstance(group, str):
                out.group_aliases.append((str(alias), group, lines.of(section, key, str(alias))))
            else:
                report.add(
                    "unmapped",
                    lines.of(section, key, str(alias)),
                    f"{where}.{alias}",
                    "must name a model_name.",
                )
    elif key in ("redis_host", "redis_port", "redis_password", "redis_url"):
        return  # handled by _redis, from router_settings
    elif key in _NOTES:
        report.add("unmapped", line, where, _NOTES[key])
    else:
        report.add("unmapped", line, where, "no corral equivalent; left out.")


def _chains(out: Settings, section: str, value: Any, lines: Lines, report: Report) -> None:
    if not isinstance(value, list):
        report.add(
            "unmapped",
            lines.of(section, "fallbacks"),
            f"{section}.fallbacks",
            "must be a list of {model_name: [fallback, ...]}.",
        )
        return
    for j, item in enumerate(value):
        line = lines.of(section, "fallbacks", j)
        if not isinstance(item, Mapping):
            report.add("unmapped", line, f"{section}.fallbacks[{j}]", "must be {model_name: [fallbacks]}.")
            continue
        for name, chain in item.items():
            if not _names(chain):
                report.add("unmapped", line, f"{section}.fallbacks[{j}].{name}", "must list model names.")
            elif name == "*":
                out.default_fallbacks += [c for c in chain if c not in out.default_fallbacks]
                out.default_line = line
            else:
                out.fallbacks.append((str(name), list(chain), line))


def _strategy(out: Settings, value: str, line: int | None, where: str, report: Report) -> None:
    out.strategy_given = True
    key = value.strip().lower().replace("-", "_")
    if key == "cost_based_routing":
        out.cost_based = True
        out.router["strategy"] = "priority"
        report.add(
            "changed",
            line,
            where,
            "cost-based-routing -> router.strategy priority, with each pool's members ranked by "
            "their price (cheapest first, priority 0, 1, ...); re-rank them if prices change.",
        )
        return
    name = key if key in STRATEGIES else STRATEGY_ALIASES.get(key)
    if name is None:
        report.add(
            "unmapped",
            line,
            where,
            f"'{value}' has no corral equivalent; corral's default (warm: an instance that has the "
            f"model loaded first) applies. corral's strategies: {', '.join(STRATEGIES)}.",
        )
        return
    out.router["strategy"] = name
    detail = {
        "least_busy": "fewest requests in flight"
        + (" (LiteLLM's usage-based routing counts tokens per minute)" if "usage" in key else ""),
        "weighted": "a random pick weighted by each member's weight",
        "latency": "lowest recent latency",
    }.get(name, name)
    kind: Kind = "mapped" if key in ("simple_shuffle", "least_busy", "latency_based_routing") else "changed"
    report.add(kind, line, where, f"{value} -> router.strategy {name}: {detail}.")


def _redis(out: Settings, router: Mapping[str, Any], lines: Lines, report: Report) -> None:
    if isinstance(router.get("redis_url"), str):
        out.top["redis_url"] = router["redis_url"]
        report.add(
            "mapped",
            lines.of("router_settings", "redis_url"),
            "router_settings.redis_url",
            "-> redis_url: corral shares rate limits and budgets between replicas through it.",
        )
        return
    host = router.get("redis_host")
    if host is None:
        return
    port, password = router.get("redis_port", 6379), router.get("redis_password")
    parts = [_inline(v, out) for v in (host, port, password)]
    auth = f":{parts[2]}@" if password is not None else ""
    out.top["redis_url"] = f"redis://{auth}{parts[0]}:{parts[1]}"
    shown = (
        out.top["redis_url"]
        if password is None or str(password).startswith("os.environ/")
        else (f"redis://:***@{parts[0]}:{parts[1]}")
    )
    report.add(
        "changed",
        lines.of("router_settings", "redis_host"),
        "router_settings.redis_host",
        f"redis_host/redis_port/redis_password -> redis_url {shown} (environment references become "
        "${NAME}, which corral expands inside strings).",
    )


def _inline(value: Any, out: Settings) -> str:
    text = str(value)
    if text.startswith("os.environ/"):
        name = text.removeprefix("os.environ/")
        out.env_refs.add(name)
        return "${" + name + "}"
    return text


def _general(out: Settings, key: str, value: Any, lines: Lines, report: Report) -> None:
    where, line = f"general_settings.{key}", lines.of("general_settings", key)
    if key == "master_key" and isinstance(value, str):
        if value.startswith("os.environ/"):
            out.top["master_key"] = value
            out.env_refs.add(value.removeprefix("os.environ/"))
            report.add(
                "mapped",
                line,
                where,
                f"-> master_key {value} (kept as a reference). Gateway "
                "keys issued by LiteLLM are in its database and do not carry over: issue new ones "
                "with `corral keys create`.",
            )
        elif len(value) < MIN_MASTER_KEY:
            report.add(
                "unmapped",
                line,
                where,
                f"the master key is {len(value)} characters; corral requires at least "
                f"{MIN_MASTER_KEY}. Set CORRAL_MASTER_KEY to a long random key (or leave it unset: "
                "corral creates one on first start).",
            )
        else:
            out.top["master_key"] = value
            report.add(
                "changed",
                line,
                where,
                "-> master_key, copied as a literal: move it to an "
                "environment variable (master_key: os.environ/NAME).",
            )
    elif key == "database_url" and isinstance(value, str):
        out.top["database_url"] = value
        if value.startswith("os.environ/"):
            out.env_refs.add(value.removeprefix("os.environ/"))
        report.add(
            "changed",
            line,
            where,
            "-> database_url: corral creates its own tables there (providers, aliases, keys, usage, "
            "catalog) and never reads LiteLLM's; a separate database is cleaner.",
        )
    elif key == "health_check_interval" and _positive(value):
        out.router["health_interval"] = value
        report.add(
            "changed",
            line,
            where,
            f"-> router.health_interval {value}: corral's check is a cheap probe (never a billed "
            "completion) and runs every interval in the background.",
        )
    elif key in _NOTES:
        report.add("unmapped", line, where, _NOTES[key])
    else:
        report.add("unmapped", line, where, "no corral equivalent; left out.")


def _environment(value: Any, lines: Lines, report: Report) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        report.add(
            "unmapped", lines.of("environment_variables"), "environment_variables", "must be a mapping."
        )
        return
    for name in value:
        report.add(
            "choice",
            lines.of("environment_variables", str(name)),
            f"environment_variables.{name}",
            f"corral does not set environment variables from its config: export {name} where "
            "corral runs (its value is not copied into the new file).",
        )


def _credentials(out: Settings, value: Any, lines: Lines, report: Report) -> None:
    if not isinstance(value, list):
        return
    for j, item in enumerate(value):
        if isinstance(item, Mapping) and isinstance(item.get("credential_values"), Mapping):
            out.credentials[str(item.get("credential_name"))] = dict(item["credential_values"])
        else:
            report.add(
                "unmapped",
                lines.of("credential_list", j),
                f"credential_list[{j}]",
                "needs credential_name and credential_values.",
            )


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
