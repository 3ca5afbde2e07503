"""GET /admin/openapi.json: the OpenAPI 3.1 description of every admin route.

Written by hand, next to the routes it describes; a test compares its paths and methods with
the app's route table, and schemathesis fuzzes the live server with it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from corral import __version__
from corral.config.provider_types import CONFIG_TYPES, REGISTRY
from corral.config.schema import STRATEGIES
from corral.http.admin.context import AdminContext, reply
from corral.http.admin.providers import BASE_URL
from corral.usage.params import DEFAULT_TOP, MAX_TOP, TOP_BY

Schema = dict[str, Any]

PROVIDER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
DURATION = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$"  # the loader's own pattern


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema], required: tuple[str, ...] = (), *, closed: bool = True) -> Schema:
    out: Schema = {"type": "object", "properties": properties, "additionalProperties": not closed}
    if required:
        out["required"] = list(required)
    return out


STRING = {"type": "string"}
TEXT_OR_NULL = {"type": ["string", "null"]}
DURATION_VALUE = nullable(
    {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": DURATION}]}
)
NAMES = {"type": "array", "items": {"type": "string", "minLength": 1}}

PROVIDER_FIELDS: dict[str, Schema] = {
    "type": {"enum": list(CONFIG_TYPES)},
    "base_url": {"type": "string", "pattern": BASE_URL, "maxLength": 2048},
    "api_key": nullable({"type": "string", "minLength": 1, "description": "write-only; stored encrypted"}),
    "headers": nullable(
        {"type": "object", "additionalProperties": STRING, "description": "write-only; stored encrypted"}
    ),
    "verify_ssl": {"type": ["boolean", "null"]},
    "timeout": DURATION_VALUE,
    "connect_timeout": DURATION_VALUE,
    "first_token_timeout": DURATION_VALUE,
    "priority": {"type": ["integer", "null"]},
    "weight": nullable({"type": "number", "minimum": 0}),
    "enabled": {"type": ["boolean", "null"]},
    "models": nullable(NAMES),
    "paths": nullable({"type": "object", "additionalProperties": {"type": "string", "pattern": "^/"}}),
    "max_connections": nullable({"type": "integer", "minimum": 1}),
    "max_parallel": nullable({"type": "integer", "minimum": 0}),
    "keep_alive": {"type": ["string", "integer", "null"]},
    "num_ctx": nullable({"type": "integer", "minimum": 1}),
    "options": nullable({"type": "object"}),
    "auth": nullable({"type": "string", "minLength": 1, "description": "bearer, none, or a header name"}),
    "surfaces": nullable(
        {
            "type": "array",
            "items": {"enum": sorted(set().union(*(s.surfaces for s in REGISTRY.values())))},
            "description": "other client APIs the upstream serves natively (passed through)",
        }
    ),
}
TARGET = {"type": "string", "pattern": "^[^/]+/[\\s\\S]+$"}
ALIAS_FIELDS: dict[str, Schema] = {
    "target": nullable(TARGET),
    "targets": nullable(
        {
            "type": "array",
            "minItems": 1,
            "items": {
                "anyOf": [
                    TARGET,
                    obj(
                        {
                            "target": TARGET,
                            "weight": {"type": "number", "minimum": 0},
                            "priority": {"type": "integer"},
                        },
                        ("target",),
                    ),
                ]
            },
        }
    ),
    "fallbacks": nullable(NAMES),
    "explicit_only": {"type": ["boolean", "null"]},
    "strategy": nullable({"enum": list(STRATEGIES)}),
    "num_ctx": nullable({"type": "integer", "minimum": 1}),
}
LIMIT_FIELDS: dict[str, Schema] = {
    "rpm": nullable({"type": "integer", "minimum": 0}),
    "tpm": nullable({"type": "integer", "minimum": 0}),
    "max_parallel": nullable({"type": "integer", "minimum": 0}),
    "max_budget": nullable({"type": "number", "minimum": 0}),
    "budget_period": nullable({"type": "string", "minLength": 1, "maxLength": 32}),
}
KEY_FIELDS: dict[str, Schema] = {
    "name": nullable({"type": "string", "maxLength": 256}),
    "owner": nullable({"type": "string", "maxLength": 256}),
    "scope": {"enum": ["admin", "user"]},
    "models": nullable(NAMES),
    "expires_at": nullable(
        {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number", "minimum": 0}]}
    ),
    "enabled": {"type": "boolean"},
    "tier": nullable({"type": "string", "maxLength": 64}),
    "metadata": nullable({"type": "object"}),
    **LIMIT_FIELDS,
}
STAMPS = {"created_at": TEXT_OR_NULL, "updated_at": TEXT_OR_NULL}
PRICE = nullable({"type": "number", "minimum": 0, "maximum": 1_000_000})
CATALOG_FIELDS: dict[str, Schema] = {
    "display_name": nullable({"type": "string", "maxLength": 256}),
    "enabled": {"type": "boolean"},
    "input_price": {**PRICE, "description": "USD per million input tokens"},
    "output_price": {**PRICE, "description": "USD per million output tokens"},
    "capabilities": nullable(
        {"type": "array", "maxItems": 64, "items": {"type": "string", "minLength": 1, "maxLength": 64}}
    ),
    "context_length": nullable({"type": "integer", "minimum": 1, "maximum": 2**31 - 1}),
    "notes": nullable({"type": "string", "maxLength": 4096}),
}
CATALOG_KEY = {
    "provider": {"type": "string", "minLength": 1, "maxLength": 128},
    "model": {"type": "string", "minLength": 1, "maxLength": 256},
}


def schemas() -> dict[str, Schema]:
    return {
        "Error": obj(
            {
                "error": obj(
                    {"message": STRING, "type": STRING, "param": TEXT_OR_NULL, "code": TEXT_OR_NULL},
                    ("message", "type", "param", "code"),
                )
            },
            ("error",),
        ),
        "Deleted": obj({"name": STRING, "id": STRING, "deleted": {"const": True}}, ("deleted",)),
        "ProviderCreate": obj(
            {"name": {"type": "string", "pattern": PROVIDER_NAME, "maxLength": 128}, **PROVIDER_FIELDS},
            ("name", "type", "base_url"),
        ),
        "ProviderPatch": obj({"name": STRING, **PROVIDER_FIELDS}),
        "Provider": obj(
            {
                "name": STRING,
                "type": STRING,
                "base_url": TEXT_OR_NULL,
                "managed_by": {"enum": ["config", "api"]},
                "api_key_preview": TEXT_OR_NULL,
                "has_api_key": {"type": "boolean"},
                "header_names": {"type": "array", "items": STRING},
                **STAMPS,
            },
            ("name", "type", "managed_by", "api_key_preview", "has_api_key", "header_names"),
            closed=False,
        ),
        "ProviderTest": obj(
            {
                "success": {"type": "boolean"},
                "latency_ms": {"type": ["number", "null"]},
                "models_found": {"type": ["integer", "null"]},
                "error": TEXT_OR_NULL,
            },
            ("success", "latency_ms", "models_found", "error"),
        ),
        "AliasCreate": obj(
            {"name": {"type": "string", "minLength": 1, "maxLength": 256}, **ALIAS_FIELDS}, ("name",)
        ),
        "AliasPatch": obj({"name": STRING, **ALIAS_FIELDS}),
        "RuleCreate": obj(
            {
                "level": {"enum": ["eco", "balanced", "precision"]},
                "tier": {"type": "string", "minLength": 1, "maxLength": 64},
                "model": {"type": "string", "minLength": 1, "maxLength": 256},
                "priority": {"type": "integer"},
                "weight": {"type": "number", "minimum": 0},
            },
            ("level", "model"),
        ),
        "Rule": obj(
            {"id": TEXT_OR_NULL, "level": STRING, "tier": STRING, "model": STRING, "managed_by": STRING},
            ("level", "tier", "model"),
            closed=False,
        ),
        "Alias": obj(
            {"name": STRING, "managed_by": {"enum": ["config", "api"]}, **STAMPS},
            ("name", "managed_by"),
            closed=False,
        ),
        "Model": obj(
            {
                "id": STRING,
                "provider": TEXT_OR_NULL,
                "model": TEXT_OR_NULL,
                "type": {"enum": ["alias", "discovered"]},
                "context_length": {"type": ["integer", "null"]},
                "capabilities": {"type": "array", "items": STRING},
                "aliases": {"type": "array", "items": STRING},
            },
            ("id", "provider", "model", "type", "context_length", "capabilities", "aliases"),
            closed=False,
        ),
        "KeyCreate": obj(
            {**KEY_FIELDS, "scope": nullable(KEY_FIELDS["scope"]), "enabled": {"type": ["boolean", "null"]}}
        ),
        "KeyPatch": obj(KEY_FIELDS),
        "Key": obj(
            {
                "id": {"type": "string", "pattern": "^[0-9A-Za-z]{8}$"},
                **{k: v for k, v in KEY_FIELDS.items() if k != "expires_at"},
                "expires_at": TEXT_OR_NULL,
                "enabled": {"type": "boolean"},
                "metadata": {"type": "object"},
                "last_used_at": TEXT_OR_NULL,
                **STAMPS,
            },
            ("id", "name", "owner", "scope", "models", "expires_at", "enabled", "tier", "metadata"),
            closed=False,
        ),
        "AuditEntry": obj(
            {
                "id": {"type": "integer"},
                "at": STRING,
                "actor": STRING,
                "action": STRING,
                "target": STRING,
                "before": {"type": ["object", "null"]},
                "after": {"type": ["object", "null"]},
            },
            ("id", "at", "actor", "action", "target", "before", "after"),
        ),
        "KeyIssued": {
            "allOf": [ref("Key"), obj({"key": {"type": "string", "pattern": "^gw_"}}, ("key",), closed=False)]
        },
        "Deployment": obj(
            {"name": STRING, "type": STRING, "state": STRING, "in_flight": {"type": "integer"}},
            ("name", "type", "state", "in_flight"),
            closed=False,
        ),
        "CatalogCreate": obj({**CATALOG_KEY, **CATALOG_FIELDS}, ("provider", "model")),
        "CatalogPatch": obj({**CATALOG_KEY, **CATALOG_FIELDS}),
        "CatalogEntry": obj(
            {**CATALOG_KEY, **CATALOG_FIELDS, **STAMPS},
            ("provider", "model", *CATALOG_FIELDS),
        ),
        "CatalogImport": obj(
            {
                "provider": STRING,
                "dry_run": {"type": "boolean"},
                "found": {"type": "integer"},
                "added": {"type": "array", "items": {"type": "object"}},
                "updated": {"type": "array", "items": {"type": "object"}},
                "unchanged": {"type": "array", "items": STRING},
                "not_listed": {"type": "array", "items": STRING},
                "show_failed": {"type": "array", "items": STRING},
            },
            ("provider", "dry_run", "found", "added", "updated", "unchanged", "not_listed", "show_failed"),
        ),
        "Health": obj(
            {
                "deployments": {"type": "array", "items": {"type": "object"}},
                "retry_budget": {"type": "object"},
                "worker": {"type": "object"},
            },
            ("deployments", "retry_budget"),
            closed=False,
        ),
    }


ERRORS = {
    400: "The input is invalid; the message names the field.",
    401: "No key, or a key that is not valid.",
    403: "The key has user scope; the admin API needs admin scope.",
    404: "No such object.",
    409: (
        "The object is managed by the config file, already exists, or is still in use; or it needs "
        "state the workers share (a max_parallel below the worker count, or a key with limits or a "
        "budget, while several workers run without redis_url: needs_shared_store)."
    ),
    413: "The request body is too large.",
    429: "A limit of the key (rate, tokens, parallel requests or budget) was reached.",
    502: "An upstream failed.",
    504: "An upstream did not answer in time.",
    503: "The gateway runs without its control plane (no data directory).",
}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def op(
    summary: str,
    ok: Schema,
    *,
    status: int = 200,
    body: str | None = None,
    body_schema: Schema | None = None,
    params: list[Schema] | None = None,
    errors: tuple[int, ...] = (400, 401, 403, 404, 503),
    content: str | list[str] = "application/json",
) -> Schema:
    types = [content] if isinstance(content, str) else content
    responses = {str(status): {"description": "Success", "content": {t: {"schema": ok} for t in types}}}
    responses.update({str(code): _json(ref("Error"), ERRORS[code]) for code in errors})
    out: Schema = {"summary": summary, "responses": responses}
    if body is not None or body_schema is not None:
        schema = ref(body) if body is not None else body_schema
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    if params:
        out["parameters"] = params
    return out


def path_param(name: str, schema: Schema) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def listing(item: str) -> Schema:
    return obj(
        {"object": {"const": "list"}, "data": {"type": "array", "items": ref(item)}}, ("object", "data")
    )


WRITE = (400, 401, 403, 404, 409, 413, 503)


def document() -> Schema:
    provider = [path_param("name", {"type": "string", "pattern": PROVIDER_NAME, "maxLength": 128})]
    alias = [path_param("name", {"type": "string", "minLength": 1, "maxLength": 256})]
    key = [path_param("id", {"type": "string", "pattern": "^[0-9A-Za-z]{8}$"})]
    rule = [path_param("id", {"type": "string", "pattern": "^[0-9a-f]{16}$"})]
    audit = [
        query(
            "limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Entries to return (default 100)."
        ),
        query("offset", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}, "Entries to skip."),
        query(
            "since",
            {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number", "minimum": 0}]},
            "Only entries at or after this time (ISO 8601 with a zone, or Unix seconds).",
        ),
        query("action", {"type": "string", "maxLength": 64}, "e.g. provider.create"),
        query("target", {"type": "string", "maxLength": 256}, "A provider or alias name, or a key id."),
    ]
    text = {"type": "string"}
    usage_params = [
        query("last", text, "A window such as 15m, 1h, 7d (400 if malformed)."),
        query("since", text, "From this time (ISO 8601)."),
        query("until", text, "Until this time (ISO 8601)."),
        *(query(n, text, f"Only this {n}.") for n in ("key", "user", "model", "provider", "surface")),
    ]
    group_by = query(
        "group_by",
        text,
        "provider, model, key, user, instance, requested_model, surface, hour or day (comma-separated)",
    )
    top = [
        query(
            "top",
            {"type": "integer", "minimum": 1, "maximum": MAX_TOP},
            "Keep the first N groups of the one dimension grouped by (over the whole range) and fold "
            'the rest into one row per bucket with that dimension null and "other": the groups in it; '
            "so the rows add up to the ungrouped totals. /admin/usage: all groups unless given; a series "
            f"grouped by one dimension: {DEFAULT_TOP} unless given.",
        ),
        query("top_by", {"enum": list(TOP_BY)}, "Rank by cost (then requests; the default) or requests."),
    ]
    OBJ = {"type": "object"}
    recent = [
        *usage_params,
        query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Records to return."),
        query("after", {"type": "integer"}, "Only records after this id."),
    ]
    series = [
        *usage_params,
        query("step", text, "Bucket width such as 1m, 5m, 1h (default: at most 120 buckets)."),
        query("group_by", text, "provider, model, key, user, instance, requested_model or surface"),
        *top,
    ]
    instances = {"type": "array", "items": {"type": "string", "minLength": 1}}
    pull_body = obj(
        {"model": {"type": "string", "minLength": 1}, "instances": instances}, ("model",), closed=False
    )
    delete_body = obj({"model": {"type": "string", "minLength": 1}, "instances": instances}, ("model",))
    copy_body = obj(
        {"source": {"type": "string", "minLength": 1}, "destination": {"type": "string", "minLength": 1},
         "instances": instances},
        ("source", "destination"),
    )  # fmt: skip
    chat_body = obj(
        {"model": {"type": "string", "minLength": 1}, "messages": {"type": "array", "minItems": 1},
         "stream": {"type": "boolean"}},
        ("model", "messages"),
        closed=False,
    )  # fmt: skip
    entry = [
        path_param("provider", CATALOG_KEY["provider"]),
        path_param("model", CATALOG_KEY["model"]),
    ]
    import_body = obj({"provider": CATALOG_KEY["provider"], "dry_run": {"type": "boolean"}}, ("provider",))
    paths: dict[str, dict[str, Schema]] = {
        "/admin/catalog": {
            "get": op(
                "The model catalog: per provider and model, display name, enabled, prices (USD per "
                "million tokens), capabilities, context length, notes",
                listing("CatalogEntry"),
                params=[query("provider", CATALOG_KEY["provider"], "Only this provider's models.")],
            ),
            "post": op(
                "Add a model to the catalog",
                ref("CatalogEntry"),
                status=201,
                body="CatalogCreate",
                errors=WRITE,
            ),
        },
        "/admin/catalog/import": {
            "post": op(
                "Import a provider's models (its listing, and /api/show for Ollama): capabilities and "
                "context length; prices are left to the operator. dry_run shows what would change",
                ref("CatalogImport"),
                body_schema=import_body,
                errors=(400, 401, 403, 404, 409, 413, 502, 503, 504),
            )
        },
        "/admin/catalog/{provider}/{model}": {
            "get": op("Read a catalog entry", ref("CatalogEntry"), params=entry),
            "patch": op(
                "Change a catalog entry: omitted fields are kept, null clears",
                ref("CatalogEntry"),
                body="CatalogPatch",
                params=entry,
                errors=WRITE,
            ),
            "delete": op("Remove a model from the catalog", ref("Deleted"), params=entry, errors=WRITE),
        },
        "/admin/usage/series": {
            "get": op("Usage per time bucket (requests, tokens, cost, errors, p50/p95)", OBJ, params=series)
        },
        "/admin/budgets": {
            "get": op(
                "Keys with a budget and what each spent in its current window", OBJ, errors=(401, 403, 503)
            )
        },
        "/admin/route": {
            "get": op(
                "Where a request for this model would go: its pools, ranked targets, their state and why",
                OBJ,
                params=[
                    query("model", {"type": "string", "maxLength": 256}, "A model, alias or corral/<level>."),
                    query("power", {"enum": ["eco", "balanced", "precision"]}, "A power level instead."),
                    query(
                        "key",
                        {"type": "string", "maxLength": 64},
                        "A key's id or preview (gw_XXXXXXXX…), never the key; its tier picks the rules.",
                    ),
                    query("tier", {"type": "string", "maxLength": 64}, "This tier (else the key's)."),
                ],
            )
        },
        "/admin/providers/{name}/check": {
            "post": op("Run a health probe and a model listing now", ref("Deployment"), params=provider)
        },
        "/admin/models/pull": {
            "post": op(
                "Pull a model onto Ollama instances (NDJSON progress, tagged by instance, then a summary)",
                {"type": "string"},
                body_schema=pull_body,
                errors=(400, 401, 403, 413, 503),
                content="application/x-ndjson",
            )
        },
        "/admin/models/delete": {
            "post": op(
                "Delete a model from Ollama instances",
                OBJ,
                body_schema=delete_body,
                errors=(400, 401, 403, 404, 413, 502, 503),
            )
        },
        "/admin/models/copy": {
            "post": op(
                "Copy a model on Ollama instances",
                OBJ,
                body_schema=copy_body,
                errors=(400, 401, 403, 404, 413, 502, 503),
            )
        },
        "/admin/playground/chat": {
            "post": op(
                "A chat completion for the caller, as POST /v1/chat/completions (SSE when stream is true, "
                "ending with an 'event: corral' usage line)",
                OBJ,
                body_schema=chat_body,
                errors=(400, 401, 403, 404, 413, 429, 502, 503, 504),
                content=["application/json", "text/event-stream"],
            )
        },
        "/admin/health": {"get": op("Every deployment's state", ref("Health"), errors=(401, 403))},
        "/admin/usage": {"get": op("Usage totals, grouped", OBJ, params=[*usage_params, group_by, *top])},
        "/admin/usage/recent": {"get": op("The newest usage records", OBJ, params=recent)},
        "/admin/usage/compare": {"get": op("Providers side by side", OBJ, params=usage_params)},
        "/admin/openapi.json": {"get": op("This document", {"type": "object"}, errors=(401, 403))},
        "/admin/providers": {
            "get": op("List providers (YAML and API)", listing("Provider")),
            "post": op("Create a provider", ref("Provider"), status=201, body="ProviderCreate", errors=WRITE),
        },
        "/admin/providers/{name}": {
            "get": op("Read a provider", ref("Provider"), params=provider),
            "patch": op(
                "Change a provider: omitted fields are kept, null clears",
                ref("Provider"),
                body="ProviderPatch",
                params=provider,
                errors=WRITE,
            ),
            "delete": op("Delete a provider", ref("Deleted"), params=provider, errors=WRITE),
        },
        "/admin/providers/{name}/test": {
            "post": op("Probe a provider and count its models", ref("ProviderTest"), params=provider),
        },
        "/admin/models": {"get": op("Aliases and discovered models", listing("Model"))},
        "/admin/rules": {
            "get": op("List routing rules by power level and tier (YAML and API)", listing("Rule")),
            "post": op("Create a routing rule", ref("Rule"), status=201, body="RuleCreate", errors=WRITE),
        },
        "/admin/rules/{id}": {
            "delete": op("Delete a routing rule", ref("Deleted"), params=rule, errors=WRITE),
        },
        "/admin/aliases": {
            "get": op("List aliases (YAML and API)", listing("Alias")),
            "post": op("Create an alias", ref("Alias"), status=201, body="AliasCreate", errors=WRITE),
        },
        "/admin/aliases/{name}": {
            "get": op("Read an alias", ref("Alias"), params=alias),
            "patch": op(
                "Change an alias: omitted fields are kept, null clears; setting target clears targets "
                "and the reverse",
                ref("Alias"),
                body="AliasPatch",
                params=alias,
                errors=WRITE,
            ),
            "delete": op("Delete an alias", ref("Deleted"), params=alias, errors=WRITE),
        },
        "/admin/keys": {
            "get": op(
                "List gateway keys (never the key itself)",
                listing("Key"),
                params=[query("owner", {"type": "string", "maxLength": 256}, "Only this owner's keys.")],
            ),
            "post": op(
                "Issue a key: the full key is returned once",
                ref("KeyIssued"),
                status=201,
                body="KeyCreate",
                errors=WRITE,
            ),
        },
        "/admin/keys/{id}": {
            "get": op("Read a key", ref("Key"), params=key),
            "patch": op(
                "Change a key: omitted fields are kept, null clears",
                ref("Key"),
                body="KeyPatch",
                params=key,
                errors=WRITE,
            ),
            "delete": op("Revoke a key (at once)", ref("Deleted"), params=key, errors=WRITE),
        },
        "/admin/audit": {"get": op("The change log, newest first", listing("AuditEntry"), params=audit)},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "corral admin API",
            "version": __version__,
            "description": "Manage providers, aliases and gateway keys of a running corral. Every "
            "route needs an admin-scope key: 'Authorization: Bearer <key>' or 'X-API-Key: <key>'. "
            "Unknown fields are refused.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }


class OpenAPIRoute:
    def __init__(self, ctx: AdminContext) -> None:
        self._ctx = ctx
        self._document = document()

    async def get(self, request: web.Request) -> web.Response:
        self._ctx.admin(request)
        return reply(self._document)
