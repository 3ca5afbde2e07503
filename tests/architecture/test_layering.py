"""Imports flow one way: each module of corral imports only its own layer and the layers below.

From the top: the entry points (``supervisor`` among them: it starts the workers); the listeners
and their routes (``http``, ``edge``, ``console``, ``control``) with ``cluster``, which ties one
worker's control plane and gateway to the others' through Redis; the composition root
(``gateway``); the services around a request (accounting, metrics, usage, limits, the store,
keys); the surfaces; the engine (``core``); routing;
providers; corral's HTTP client; and at the bottom what everything shares: the conversation
model, the config, the errors. Read from the source with ``ast`` (every ``import`` and ``from``,
type-only imports included), so a cycle or an upward import fails here before it shows up as an
import error somewhere else.

``KNOWN`` lists the imports that still go the wrong way, each with why; the test fails when one
is added, and also when one is fixed and still listed, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import corral

LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("entry", frozenset({"__main__", "cli", "server", "migrate", "supervisor"})),
    ("listeners", frozenset({"http", "edge", "console", "control", "cluster"})),
    ("composition", frozenset({"gateway"})),
    ("services", frozenset({"accounting", "metrics", "usage", "limits", "store", "keys", "security"})),
    ("surfaces", frozenset({"surfaces"})),
    ("engine", frozenset({"core"})),
    ("routing", frozenset({"routing"})),
    ("providers", frozenset({"providers"})),
    ("httpclient", frozenset({"httpclient"})),
    ("base", frozenset({"conversation", "config", "errors", "tasks", "home", "identity", ""})),
)

# (importing module, imported module): why it is still there
KNOWN: dict[tuple[str, str], str] = {
    ("corral.config.loader", "corral.limits"): "checks user_limits with the limiter's own parser",
    ("corral.config.loader", "corral.usage.prices"): "checks the prices table at load time",
}

ROOT = Path(corral.__file__).parent


def _rank(module: str) -> int:
    parts = module.split(".")
    package = parts[1] if len(parts) > 1 else ""
    for rank, (_, packages) in enumerate(LAYERS):
        if package in packages:
            return rank
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS in {__file__}")


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ("corral", *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "corral")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if name.split(".")[0] == "corral":
                found.add(name)
    return found


def upward_imports() -> set[tuple[str, str]]:
    wrong = set()
    for module, path in _modules().items():
        rank = _rank(module)
        for target in _imports(module, path):
            if _rank(target) < rank:  # a layer above this one
                wrong.add((module, target))
    return wrong


def test_imports_flow_down_the_layers() -> None:
    wrong = upward_imports()
    new = sorted(wrong - set(KNOWN))
    assert not new, "imports that go up the layers (see the docstring of this module):\n" + "\n".join(
        f"  {a} imports {b}" for a, b in new
    )


def test_the_known_exceptions_are_still_there() -> None:
    fixed = sorted(set(KNOWN) - upward_imports())
    assert not fixed, "fixed: remove from KNOWN:\n" + "\n".join(f"  {a} -> {b}" for a, b in fixed)
