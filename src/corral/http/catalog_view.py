"""What the model listings take from the model catalog, where each API has a place for it.

``GET /v1/models`` (OpenAI's model object: id, object, created, owned_by) has no field for a
context length, capabilities or prices, so nothing is added there; a model the catalog has
disabled is left out of the list. ``GET /api/tags`` (Ollama's list) has ``capabilities`` and
``details.context_length``: the catalog fills them when the upstream did not say, and leaves
out disabled models too. Disabling in the catalog hides a model from listings only; requests
for it are still routed (access is what gateway keys' ``models`` decide).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from corral.accounting.accountant import Accountant
from corral.usage.prices import CatalogModel, CatalogSnapshot

EMPTY = CatalogSnapshot()


def snapshot(accountant: Accountant | None) -> CatalogSnapshot:
    """The catalog the accountant prices from (empty without the control plane)."""
    return accountant.prices.catalog if accountant is not None else EMPTY


def listed(view: CatalogSnapshot, provider: str, model_id: str) -> bool:
    """False when ``provider/model_id`` is a model the catalog disables."""
    if not len(view):
        return True
    meta = view.get(provider, model_id.removeprefix(provider + "/"))
    return meta is None or meta.enabled


def fill_tags_row(row: dict[str, Any], meta: CatalogModel | None) -> dict[str, Any]:
    """An /api/tags row with the catalog's capabilities and context length where it has none."""
    if meta is None:
        return row
    if meta.capabilities is not None and not row.get("capabilities"):
        row["capabilities"] = list(meta.capabilities)
    details = row.get("details")
    if meta.context_length is not None and not (
        isinstance(details, Mapping) and details.get("context_length")
    ):
        row["details"] = {
            **(details if isinstance(details, Mapping) else {}),
            "context_length": meta.context_length,
        }
    return row
