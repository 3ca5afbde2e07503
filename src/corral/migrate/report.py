"""The report of a conversion: one entry per decision, each with the source line it came from.

Kinds, in the order a reader needs them:

* ``unmapped``: in the source, not in the result; the message says why and what to do;
* ``changed``: carried over with a different meaning or shape; the message says how;
* ``choice``: left for the operator to decide (never guessed), e.g. ``explicit_only``;
* ``mapped``: carried over as it was.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["unmapped", "changed", "choice", "mapped"]
KINDS: tuple[Kind, ...] = ("unmapped", "changed", "choice", "mapped")
TITLES: dict[Kind, str] = {
    "unmapped": "Not mapped",
    "changed": "Changed",
    "choice": "For you to decide",
    "mapped": "Mapped",
}


class UnreadableSource(Exception):
    """The source cannot be read as a LiteLLM config at all (the only failure of an import)."""


@dataclass(frozen=True, slots=True)
class Entry:
    kind: Kind
    line: int | None  # 1-based line in the source, None for the file as a whole
    where: str  # the source path, e.g. "model_list[2].litellm_params.api_version"
    message: str


@dataclass(slots=True)
class Report:
    source: str
    entries: list[Entry] = field(default_factory=list)

    def add(self, kind: Kind, line: int | None, where: str, message: str) -> None:
        self.entries.append(Entry(kind, line, where, message))

    def of(self, kind: Kind) -> list[Entry]:
        return sorted((e for e in self.entries if e.kind == kind), key=lambda e: (e.line or 0, e.where))

    def counts(self) -> dict[str, int]:
        return {kind: len(self.of(kind)) for kind in KINDS}

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "counts": self.counts(),
            "entries": [asdict(e) for kind in KINDS for e in self.of(kind)],
        }

    def text(self) -> str:
        """Plain text, grouped by kind (the CLI renders the same entries with colour)."""
        lines: list[str] = []
        for kind in KINDS:
            entries = self.of(kind)
            if not entries:
                continue
            lines.append(f"{TITLES[kind]} ({len(entries)}):")
            for e in entries:
                at = f"line {e.line}" if e.line else "file"
                lines.append(f"  {at:>9}  {e.where}: {e.message}")
        return "\n".join(lines)
