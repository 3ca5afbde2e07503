"""docs/deploy.md against the artifacts it describes: the Secret-patching step it gives makes a
patch that fills every key of the placeholder Secret with values corral accepts (applied with
the real ``kubectl patch --local``), and every path under deploy/ it names exists."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from corral.config.loader import parse_config
from corral.security.crypto import load_crypto
from corral.store.db import normalize_url
from tests.deploy.manifests import (
    KUBERNETES,
    PLACEHOLDER,
    ROOT,
    SECRET_FILE,
    kubectl,
    placeholder_secret,
    render,
)

DOC = ROOT / "docs" / "deploy.md"


def patch_program() -> str:
    match = re.search(r"python3 - > corral-secrets\.json <<'EOF'\n(.*?)\nEOF\n", DOC.read_text(), re.S)
    assert match, "docs/deploy.md no longer shows the program that writes the Secret's patch"
    return match.group(1)


def test_the_documented_patch_fills_every_placeholder_with_values_corral_accepts(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-"], input=patch_program(), capture_output=True, text=True, timeout=30, check=True
    )
    patch = tmp_path / "corral-secrets.json"
    patch.write_text(made.stdout)
    values = json.loads(made.stdout)["stringData"]
    assert set(values) == set(placeholder_secret()["stringData"])
    done = subprocess.run(
        [kubectl(), "patch", "--local", "-f", str(SECRET_FILE), "--type", "merge",
         "--patch-file", str(patch), "-o", "yaml"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    patched = yaml.safe_load(done.stdout)["stringData"]
    assert PLACEHOLDER not in patched.values() and patched == values
    config = parse_config(
        yaml.safe_load(render("overlays/postgres-redis").config_text()), source="configmap", env=patched
    )
    assert config.master_key == patched["CORRAL_MASTER_KEY"]
    load_crypto(patched, tmp_path)  # a Fernet key: no ConfigError
    assert normalize_url(patched["CORRAL_DATABASE_URL"]).startswith("postgresql+asyncpg://corral:")
    assert patched["POSTGRES_PASSWORD"] in patched["CORRAL_DATABASE_URL"]
    assert patched["CORRAL_REDIS_URL"] == f"redis://:{patched['REDIS_PASSWORD']}@corral-redis:6379/0"
    # the bundled databases' Services are the hosts the URLs name
    services = {s["metadata"]["name"]: s for s in render("overlays/postgres-redis").all("Service")}
    assert services["corral-postgres"]["spec"]["ports"][0]["port"] == 5432
    assert services["corral-redis"]["spec"]["ports"][0]["port"] == 6379


def test_every_deploy_path_the_doc_names_exists() -> None:
    pattern = r"(?<![\w/.])(?:deploy/kubernetes/)?(?:base|overlays|components|secret)/[\w./-]*\w"
    named = {p.removeprefix("deploy/kubernetes/") for p in re.findall(pattern, DOC.read_text())}
    assert {"base/corral.yaml", "components/monitoring/corral.yaml", "overlays/external"} <= named
    missing = sorted(p for p in named if not (KUBERNETES / p).exists())
    assert not missing, missing


def test_the_documented_overlay_of_your_own_renders_with_your_image_and_config(tmp_path: Path) -> None:
    match = re.search(r"```yaml\n# my-corral/kustomization.yaml\n(.*?)```", DOC.read_text(), re.S)
    assert match, "docs/deploy.md no longer shows the overlay of your own"
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")  # the doc's ../deploy
    mine = tmp_path / "my-corral"
    mine.mkdir()
    (mine / "kustomization.yaml").write_text(match.group(1))
    config = (ROOT / "deploy/kubernetes/components/monitoring/corral.yaml").read_text() + "# mine\n"
    (mine / "corral.yaml").write_text(config)
    done = subprocess.run([kubectl(), "kustomize", str(mine)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "corral"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/corral:0.1.0"
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config_map["data"]["corral.yaml"] == config
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
