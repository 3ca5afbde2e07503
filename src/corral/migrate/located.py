"""YAML read with the source line of every key and item, from PyYAML's node marks.

``load(text, source)`` returns the plain data (as ``yaml.safe_load`` would build it) and a
``Lines`` that answers "on which line is ``model_list[2].litellm_params.api_base``?". A path
that has no node of its own (a default, a merged key) gets the line of its nearest parent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from corral.migrate.report import UnreadableSource

Path = tuple[str | int, ...]


class Lines:
    """The 1-based line of each path in the document."""

    def __init__(self, marks: Mapping[Path, int]) -> None:
        self._marks = dict(marks)

    def of(self, *path: str | int) -> int | None:
        for end in range(len(path), -1, -1):
            line = self._marks.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def _walk(node: yaml.Node, path: Path, marks: dict[Path, int], seen: set[int]) -> None:
    if id(node) in seen:  # an alias of an anchored node: its lines are the anchor's
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                child = (*path, str(key.value))
                marks.setdefault(child, key.start_mark.line + 1)
                _walk(value, child, marks, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*path, i)
            marks.setdefault(child, item.start_mark.line + 1)
            _walk(item, child, marks, seen)


def load(text: str, source: str) -> tuple[Any, Lines]:
    """The document's data and its lines; ``UnreadableSource`` when it is not one YAML document."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UnreadableSource(f"{source}: is not valid YAML{where}: {problem}") from None
    marks: dict[Path, int] = {}
    if node is not None:
        marks[()] = node.start_mark.line + 1
        _walk(node, (), marks, set())
    return data, Lines(marks)
