"""``corral import litellm``: the file it writes, the report it prints, --json, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.migrate import configs


def corral(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "FORCE_COLOR", "NO_COLOR"))}
    env["OPENAI_API_KEY"] = "sk-test-openai-key"
    return subprocess.run(
        [sys.executable, "-m", "corral", *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env
    )


def source(tmp: Path) -> Path:
    path = tmp / "litellm.yaml"
    path.write_text(
        configs.AZURE_BEDROCK.substitute(openai="http://vllm:8000/v1", ollama="http://gpu1:11434")
    )
    return path


def test_writes_the_file_and_prints_the_report(tmp_path: Path) -> None:
    src = source(tmp_path)
    done = corral("import", "litellm", str(src), "-o", "corral.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("Converted ") and "2 provider(s), 2 alias(es)" in out
    assert "Not mapped (" in out and "line 4" in out and "azure/gpt-4o-eu" in out  # with the source line
    assert "\x1b[" not in out  # piped: no colour
    assert "Check it with: corral check --config corral.yaml" in out
    checked = corral("check", "--config", "corral.yaml", cwd=tmp_path)
    assert checked.returncode == 0 and "alias gpt-4o -> vllm/gpt-4o" in checked.stdout
    again = corral("import", "litellm", str(src), "-o", "corral.yaml", cwd=tmp_path)
    assert again.returncode == 1 and "--force" in again.stderr


def test_stdout_is_the_config_and_the_report_goes_to_stderr(tmp_path: Path) -> None:
    done = corral("import", "litellm", str(source(tmp_path)), cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("# corral config converted from")
    assert "Not mapped" in done.stderr and "Not mapped" not in done.stdout


def test_json(tmp_path: Path) -> None:
    done = corral("import", "litellm", str(source(tmp_path)), "--json", cwd=tmp_path)
    assert done.returncode == 0
    data = json.loads(done.stdout)
    assert set(data) == {"output", "summary", "valid", "problem", "env", "config", "report"}
    assert data["valid"] is True and data["summary"] == {"providers": 2, "aliases": 2, "prices": 0}
    assert data["env"] == ["OPENAI_API_KEY"]
    report = data["report"]
    assert set(report["counts"]) == {"unmapped", "changed", "choice", "mapped"}
    entry = report["entries"][0]
    assert set(entry) == {"kind", "line", "where", "message"} and entry["kind"] == "unmapped"


def test_unreadable_sources_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("model_list: [\n")
    bad = corral("import", "litellm", "bad.yaml", cwd=tmp_path)
    assert bad.returncode == 2 and "line 2" in bad.stderr
    missing = corral("import", "litellm", "nope.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "not found" in missing.stderr
