"""Usage accounting: one record per request, written durably off the hot path, and read back.

``UsageRecord`` (record) is built by the request path and handed to ``UsageWriter.submit``
(writer), which batches records into a ``UsageSink`` (sink: ``StoreSink`` for the store's
database) and spills them to a local file (spill) when the database cannot take them.
``PriceTable`` (prices) turns token counts into USD; ``UsageQuery`` (query) answers
``/admin/usage``; ``spend_since`` (spend) gives the budgets their spend after a restart.
"""

from corral.usage.prices import Price, PriceTable
from corral.usage.query import UsageEntry, UsageFilter, UsageQuery, UsageSummary, parse_group_by
from corral.usage.record import UsageRecord, estimate_prompt_tokens, estimate_tokens
from corral.usage.sink import RecordsRefused, StoreSink, UsageSink
from corral.usage.writer import UsageWriter, WriterStats

__all__ = [
    "Price",
    "PriceTable",
    "RecordsRefused",
    "StoreSink",
    "UsageEntry",
    "UsageFilter",
    "UsageQuery",
    "UsageRecord",
    "UsageSink",
    "UsageSummary",
    "UsageWriter",
    "WriterStats",
    "estimate_prompt_tokens",
    "estimate_tokens",
    "parse_group_by",
]
