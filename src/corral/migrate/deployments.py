"""``model_list`` to corral: providers (one per distinct upstream: type, base URL and key),
aliases (one per ``model_name``; several deployments of one name become one pool) and
``prices`` (from ``input_cost_per_token`` and friends, per million tokens).

Every field of an entry is either used, or reported with its line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from corral.migrate import prefixes
from corral.migrate.located import Lines
from corral.migrate.report import Kind, Report

PER_MILLION = 1_000_000
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")
# litellm_params that become provider settings in corral, with corral's name
PROVIDER_SETTINGS = {
    "timeout": "timeout",
    "stream_timeout": "first_token_timeout",
    "max_parallel_requests": "max_parallel",
    "keep_alive": "keep_alive",
}
COST_FIELDS = {"input_cost_per_token": "input", "output_cost_per_token": "output"}
INFO_IGNORED = {"id", "mode", "base_model", "description"}  # metadata corral does not need


@dataclass
class ProviderDraft:
    name: str
    type: str
    base_url: str
    api_key: str | None
    headers: dict[str, str]
    line: int | None = None  # where the first deployment on it is
    settings: dict[str, Any] = field(default_factory=dict)
    setting_lines: dict[str, tuple[int | None, str]] = field(default_factory=dict)

    def as_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "base_url": self.base_url}
        if self.api_key is not None:
            out["api_key"] = self.api_key
        if self.headers:
            out["headers"] = dict(self.headers)
        out.update(self.settings)
        return out


@dataclass
class Member:
    target: str  # provider/model
    weight: float | None = None
    priority: int | None = None
    line: int | None = None
    cost: dict[str, float] = field(default_factory=dict)  # USD per million: input, output
    cost_line: int | None = None


@dataclass
class Pool:
    name: str
    line: int | None
    members: list[Member] = field(default_factory=list)
    num_ctx: int | None = None


@dataclass
class Deployments:
    providers: dict[tuple[Any, ...], ProviderDraft] = field(default_factory=dict)
    pools: dict[str, Pool] = field(default_factory=dict)
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    dropped: dict[str, int | None] = field(default_factory=dict)  # model_name -> line: nothing mapped
    env_refs: set[str] = field(default_factory=set)


def convert(
    model_list: Any, lines: Lines, report: Report, credentials: Mapping[str, Mapping[str, Any]]
) -> Deployments:
    out = Deployments()
    if model_list is None:
        report.add("unmapped", lines.of(), "model_list", "there is no model_list: no models to convert.")
        return out
    if not isinstance(model_list, list):
        report.add("unmapped", lines.of("model_list"), "model_list", "must be a list of deployments.")
        return out
    for i, entry in enumerate(model_list):
        _entry(out, i, entry, lines, report, credentials)
    for name in out.pools:  # at least one deployment of the name was mapped
        out.dropped.pop(name, None)
    return out


def _entry(
    out: Deployments,
    i: int,
    entry: Any,
    lines: Lines,
    report: Report,
    credentials: Mapping[str, Mapping[str, Any]],
) -> None:
    where = f"model_list[{i}]"
    line = lines.of("model_list", i)
    if not isinstance(entry, Mapping) or not isinstance(entry.get("model_name"), str):
        report.add("unmapped", line, where, "an entry without a model_name string; skipped.")
        return
    name: str = entry["model_name"]
    params = entry.get("litellm_params")
    if not isinstance(params, Mapping) or not isinstance(params.get("model"), str):
        report.add("unmapped", line, where, f"'{name}' has no litellm_params.model; skipped.")
        out.dropped.setdefault(name, line)
        return
    params = dict(params)
    credential = params.pop("litellm_credential_name", None)
    if credential is not None:
        values = credentials.get(str(credential))
        at = lines.of("model_list", i, "litellm_params", "litellm_credential_name")
        if values is None:
            report.add(
                "unmapped",
                at,
                f"{where}.litellm_params.litellm_credential_name",
                f"names credential '{credential}', which credential_list does not define.",
            )
        else:
            params = {**values, **params}
            report.add(
                "changed",
                at,
                f"{where}.litellm_params.litellm_credential_name",
                f"the values of credential '{credential}' were written into the provider.",
            )
    for key in entry:
        if key not in ("model_name", "litellm_params", "model_info"):
            report.add(
                "unmapped", lines.of("model_list", i, key), f"{where}.{key}", "not a field corral reads."
            )
    model: str = params.pop("model")
    at_model = lines.of("model_list", i, "litellm_params", "model")
    prefix_name, model_id = prefixes.split(model)
    if "*" in name or "*" in model_id:
        report.add(
            "unmapped",
            at_model,
            f"{where}",
            f"wildcard '{name}' -> '{model}': corral has no "
            "wildcard aliases; every model a provider lists is served as provider/<model> instead.",
        )
        _maybe_provider_only(out, i, prefix_name, params, lines, report)
        return
    spec = _prefix(prefix_name, model_id, where, at_model, report)
    if spec is None:
        out.dropped.setdefault(name, line)
        return
    provider = _provider(out, i, spec, prefix_name or "openai", params, lines, report)
    if provider is None:
        out.dropped.setdefault(name, line)
        return
    member = Member(target=f"{provider.name}/{model_id}", line=at_model)
    pool = out.pools.get(name)
    if pool is None:
        pool = out.pools[name] = Pool(name, line)
    elif not any(m.target == member.target for m in pool.members):
        report.add("mapped", line, where, f"another deployment of '{name}': joins its pool.")
    pool.members.append(member)
    report.add(
        "mapped",
        at_model,
        f"{where}.litellm_params.model",
        f"'{name}' -> alias '{name}', target {member.target}.",
    )
    _member_params(out, i, pool, member, provider, params, lines, report)
    info = entry.get("model_info")
    if isinstance(info, Mapping):
        _costs(member, info, ("model_list", i, "model_info"), lines, report)
    _costs(member, params, ("model_list", i, "litellm_params"), lines, report, leftovers=False)


def _maybe_provider_only(
    out: Deployments, i: int, prefix_name: str | None, params: dict[str, Any], lines: Lines, report: Report
) -> None:
    spec = prefixes.lookup(prefix_name) if prefix_name else None
    if spec is not None and spec.kind != "unsupported":
        _provider(out, i, spec, prefix_name or "openai", dict(params), lines, report)


def _prefix(
    prefix_name: str | None, model_id: str, where: str, line: int | None, report: Report
) -> prefixes.Prefix | None:
    if prefix_name is None:
        if model_id.startswith(prefixes.OPENAI_BARE):
            report.add(
                "changed",
                line,
                f"{where}.litellm_params.model",
                f"'{model_id}' has no provider prefix; LiteLLM sends it to OpenAI, so does corral.",
            )
            return prefixes.OPENAI_COMPATIBLE["openai"]
        if model_id.startswith(prefixes.ANTHROPIC_BARE):
            report.add(
                "unmapped",
                line,
                f"{where}.litellm_params.model",
                f"'{model_id}' (Anthropic) {prefixes.UNSUPPORTED['anthropic']}",
            )
            return None
        first = model_id.partition("/")[0]
        report.add(
            "unmapped",
            line,
            f"{where}.litellm_params.model",
            f"'{model_id}': unknown provider '{first}'. If it is OpenAI-compatible, write it as "
            "openai/<model> with its api_base and import again.",
        )
        return None
    spec = prefixes.lookup(prefix_name)
    assert spec is not None
    if spec.kind == "unsupported":
        report.add(
            "unmapped", line, f"{where}.litellm_params.model", f"'{prefix_name}/{model_id}': {spec.why}"
        )
        return None
    return spec


def _provider(
    out: Deployments,
    i: int,
    spec: prefixes.Prefix,
    prefix_name: str,
    params: dict[str, Any],
    lines: Lines,
    report: Report,
) -> ProviderDraft | None:
    where = f"model_list[{i}].litellm_params"
    base = params.pop("api_base", None) or params.pop("base_url", None) or spec.base_url
    if not isinstance(base, str) or not base:
        report.add(
            "unmapped",
            lines.of("model_list", i, "litellm_params"),
            where,
            f"a {prefix_name}/ model needs api_base (the server's URL); none given.",
        )
        return None
    if base.startswith("os.environ/"):
        report.add(
            "unmapped",
            lines.of("model_list", i, "litellm_params", "api_base"),
            f"{where}.api_base",
            f"api_base comes from {base.removeprefix('os.environ/')}; corral needs the URL itself "
            "in base_url. Write it in and import again.",
        )
        return None
    base = base.rstrip("/")
    key = params.pop("api_key", None)
    if key is not None and not isinstance(key, str):
        key = str(key)
    if isinstance(key, str) and key.startswith("os.environ/"):
        out.env_refs.add(key.removeprefix("os.environ/"))
    elif isinstance(key, str) and key:
        report.add(
            "changed",
            lines.of("model_list", i, "litellm_params", "api_key"),
            f"{where}.api_key",
            "a literal API key was copied into the new file; move it to an environment variable "
            "(api_key: os.environ/NAME) before committing the file anywhere.",
        )
    headers = _headers(params, i, lines, report)
    ident = (spec.kind, base, key, tuple(sorted(headers.items())))
    draft = out.providers.get(ident)
    if draft is None:
        name = _unique(_name(spec, prefix_name, base), {p.name for p in out.providers.values()})
        draft = out.providers[ident] = ProviderDraft(
            name, spec.kind, base, key or None, headers, lines.of("model_list", i)
        )
        what = "Ollama" if spec.kind == "ollama" else "OpenAI-compatible"
        report.add(
            "mapped",
            lines.of("model_list", i, "litellm_params"),
            where,
            f"provider '{name}' ({what}) at {base}.",
        )
        if prefix_name == "ollama":
            report.add(
                "changed",
                lines.of("model_list", i, "litellm_params", "model"),
                f"{where}.model",
                "ollama/ sends chat to /api/generate as one flattened prompt in LiteLLM; corral "
                "sends chat to /api/chat (what ollama_chat/ does) and completions to /api/generate.",
            )
    return draft


def _headers(params: dict[str, Any], i: int, lines: Lines, report: Report) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key in ("extra_headers", "headers"):
        value = params.pop(key, None)
        if isinstance(value, Mapping):
            headers.update({str(k): str(v) for k, v in value.items()})
        elif value is not None:
            report.add(
                "unmapped",
                lines.of("model_list", i, "litellm_params", key),
                f"model_list[{i}].litellm_params.{key}",
                "must be a mapping of header names to values.",
            )
    organization = params.pop("organization", None)
    if isinstance(organization, str):
        headers["OpenAI-Organization"] = organization
        report.add(
            "changed",
            lines.of("model_list", i, "litellm_params", "organization"),
            f"model_list[{i}].litellm_params.organization",
            "sent as the OpenAI-Organization header.",
        )
    return headers


def _name(spec: prefixes.Prefix, prefix_name: str, base: str) -> str:
    host = (urlsplit(base).hostname or "upstream").lower()
    loopback = host in ("localhost", "127.0.0.1", "::1", "0.0.0.0")
    label = _SLUG.sub("-", host if _is_ip(host) else host.split(".")[0]).strip("-") or "upstream"
    if spec.kind == "ollama":
        if host == prefixes.OLLAMA_CLOUD_HOST or host.endswith("." + prefixes.OLLAMA_CLOUD_HOST):
            return "ollama-cloud"
        if loopback:
            port = urlsplit(base).port
            return "ollama-local" if port in (None, 11434) else f"ollama-local-{port}"
        return f"ollama-{label}"
    at_default = (spec.base_url or "").rstrip("/") == base
    if spec.name is not None and (at_default or prefix_name not in ("openai", "text-completion-openai")):
        return spec.name
    return "openai-local" if loopback else label


def _is_ip(host: str) -> bool:
    return all(part.isdigit() for part in host.split(".")) or ":" in host


def _unique(name: str, taken: set[str]) -> str:
    name = name if name not in ("corral", "demo") else f"{name}-upstream"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def _member_params(
    out: Deployments,
    i: int,
    pool: Pool,
    member: Member,
    provider: ProviderDraft,
    params: dict[str, Any],
    lines: Lines,
    report: Report,
) -> None:
    where = f"model_list[{i}].litellm_params"

    def at(key: str) -> int | None:
        return lines.of("model_list", i, "litellm_params", key)

    for key, value in params.items():
        if key in COST_FIELDS:
            continue
        if "cost" in key:
            report.add(
                "unmapped",
                at(key),
                f"{where}.{key}",
                "corral prices input and output tokens only (prices:, or the catalog).",
            )
        elif key in PROVIDER_SETTINGS:
            _setting(provider, PROVIDER_SETTINGS[key], value, at(key), f"{where}.{key}", report, key)
        elif key == "weight" and _number(value):
            member.weight = float(value)
            report.add(
                "mapped", at(key), f"{where}.{key}", f"weight {value} of {member.target} in '{pool.name}'."
            )
        elif key == "order" and isinstance(value, int):
            member.priority = value
            report.add(
                "changed",
                at(key),
                f"{where}.{key}",
                f"order {value} -> priority {value} of {member.target} in '{pool.name}' (lower is "
                "tried first, as with order).",
            )
        elif key in ("rpm", "tpm") and _number(value):
            if member.weight is None and "weight" not in params and (key == "rpm" or "rpm" not in params):
                member.weight = float(value)
                report.add(
                    "changed",
                    at(key),
                    f"{where}.{key}",
                    f"{key} {value} -> weight {value} of {member.target}: LiteLLM's simple-shuffle "
                    f"weighs deployments by {key} too. corral does not cap a deployment's {key}; "
                    "limits apply to gateway keys and users (rpm/tpm on a key).",
                )
            else:
                report.add(
                    "unmapped",
                    at(key),
                    f"{where}.{key}",
                    f"corral does not cap a deployment's {key}; limits apply to gateway keys and users.",
                )
        elif key == "num_ctx" and isinstance(value, int):
            pool.num_ctx = value
            report.add("mapped", at(key), f"{where}.{key}", f"num_ctx {value} pinned on alias '{pool.name}'.")
        elif key == "api_version":
            report.add("unmapped", at(key), f"{where}.{key}", "api_version applies to Azure only.")
        else:
            report.add(
                "unmapped",
                at(key),
                f"{where}.{key}",
                "a per-request parameter corral does not set for the client; clients send it.",
            )


def _setting(
    provider: ProviderDraft, name: str, value: Any, line: int | None, where: str, report: Report, source: str
) -> None:
    if name == "keep_alive" and provider.type != "ollama":
        report.add("unmapped", line, where, "keep_alive applies to Ollama providers only.")
        return
    if name != "keep_alive" and not (_number(value) and value > 0) and not isinstance(value, str):
        report.add("unmapped", line, where, f"{source} must be a positive number, got {value!r}.")
        return
    old = provider.settings.get(name)
    if old is None:
        provider.settings[name] = value
        provider.setting_lines[name] = (line, where)
        note = {
            "timeout": "the read timeout of every request to it",
            "first_token_timeout": "how long corral waits for the first token before it tries another "
            "deployment (LiteLLM's stream_timeout bounds streamed calls only)",
            "max_parallel": "requests in flight at once to this provider (LiteLLM counts per deployment)",
            "keep_alive": "sent to Ollama with every request",
        }[name]
        kind: Kind = "mapped" if name in ("timeout", "keep_alive") else "changed"
        report.add(kind, line, where, f"{source} {value} -> provider '{provider.name}' {name}: {note}.")
    elif old != value:
        keep = max(old, value) if _number(old) and _number(value) else old
        provider.settings[name] = keep
        report.add(
            "changed",
            line,
            where,
            f"{source} {value} differs from {old} on another deployment of provider '{provider.name}'; "
            f"corral sets {name} per provider, so it keeps {keep}.",
        )


def _costs(
    member: Member,
    data: Mapping[str, Any],
    path: tuple[str | int, ...],
    lines: Lines,
    report: Report,
    *,
    leftovers: bool = True,
) -> None:
    where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
    for key, value in data.items():
        line = lines.of(*path, key)
        if key in COST_FIELDS:
            if _number(value) and value >= 0:
                member.cost[COST_FIELDS[key]] = round(float(value) * PER_MILLION, 9)
                member.cost_line = member.cost_line or line
            else:
                report.add("unmapped", line, f"{where}.{key}", f"must be a number of USD, got {value!r}.")
        elif not leftovers:
            continue
        elif key in INFO_IGNORED:
            report.add("mapped", line, f"{where}.{key}", "metadata corral does not need; left out.")
        elif "cost" in key:
            report.add(
                "unmapped",
                line,
                f"{where}.{key}",
                "corral prices input and output tokens only (prices:, or the catalog).",
            )
        else:
            report.add(
                "unmapped",
                line,
                f"{where}.{key}",
                "model metadata; `corral catalog import PROVIDER` fills capabilities and context "
                "length from the provider itself.",
            )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
