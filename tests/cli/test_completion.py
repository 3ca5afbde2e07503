"""``corral completion``: the scripts parse in their shells and complete what the CLI has."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from corral.cli import completion
from corral.cli.main import parser


def script(shell: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "corral", "completion", shell], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def bash_complete(words: list[str]) -> list[str]:
    """What the bash script offers for ``words`` (the last one being typed)."""
    array = " ".join(f"'{w}'" for w in words)
    call = f'COMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; _corral; printf "%s\\n" "${{COMPREPLY[@]}}"'
    program = script("bash") + "\n" + call
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_tree_has_every_command() -> None:
    root = completion.tree(parser())
    assert {"serve", "check", "status", "chat", "providers", "keys", "models", "usage", "pull", "catalog",
            "import", "completion", "admin", "rules"} == set(root.commands)  # fmt: skip
    assert set(root.commands["providers"].commands) == {"list", "add", "set-key", "test", "rm"}
    assert root.commands["providers"].commands["add"].options["--type"][1] == ("ollama", "openai")


def test_bash_completes_commands_subcommands_options_and_choices() -> None:
    assert bash_complete(["corral", "ca"]) == ["catalog"]
    assert bash_complete(["corral", "providers", ""])[:5] == ["list", "add", "set-key", "test", "rm"]
    assert bash_complete(["corral", "providers", "add", "--type", ""]) == ["ollama", "openai"]
    assert "--watch" in bash_complete(["corral", "status", "--w"])
    assert bash_complete(["corral", "usage", "t"]) == ["tail"]
    assert bash_complete(["corral", "import", ""]) == ["litellm", "--help"]


def test_zsh_and_fish_scripts_parse_and_fish_completes() -> None:
    for shell in ("zsh", "fish"):
        if shutil.which(shell) is None:
            print(f"{shell} is not installed: its script is not checked here")
            continue
        done = subprocess.run([shell, "-n"], input=script(shell), capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, (shell, done.stderr)
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed (apt-get install fish): fish completions not exercised")
    program = script("fish") + "\ncomplete -C 'corral providers '\ncomplete -C 'corral providers add --type '"
    done = subprocess.run(["fish", "-c", program], capture_output=True, text=True, timeout=30)
    offered = [line.split("\t")[0] for line in done.stdout.splitlines()]
    assert {"list", "add", "set-key", "test", "rm"} <= set(offered) and {"ollama", "openai"} <= set(offered)
