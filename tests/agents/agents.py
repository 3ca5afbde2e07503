"""Run the real coding agents (Claude Code, Codex) against a server on loopback, offline.

Each agent gets a fresh home directory, a work directory holding ``notes.txt``, and the
settings that keep it on loopback: Claude Code's ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC``,
``DISABLE_TELEMETRY`` and ``DISABLE_AUTOUPDATER``; for Codex a ``config.toml`` that turns off
the update check, analytics, plugins, apps, web search, goals and sub-agents (with them on, a
run looks up ``ab.chatgpt.com``, ``chatgpt.com``, ``github.com`` and ``api.github.com``;
docs/agents.md has the details). The versions the suite pins are the ones ``scripts/test``
installs from the npm registry.

The read-file task: the prompt asks the emulated "model" for one tool call
(``call <tool> {...}``, see ``tests/emulators/common.requested_tools``); the agent runs the tool
on ``notes.txt`` and sends the result back, and the model's last answer quotes it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CLAUDE_CODE_VERSION = "2.1.332"
CODEX_VERSION = "0.171.0"
SECRET = "the secret word is pelican"
TIMEOUT = 180.0

CLAUDE_OFFLINE = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
}
CODEX_OFFLINE_TOP = 'check_for_update_on_startup = false\nweb_search = "disabled"\n'
CODEX_OFFLINE_TABLES = """
[analytics]
enabled = false

[features]
plugins = false
remote_plugin = false
apps = false
multi_agent = false
goals = false
"""


@dataclass
class Run:
    """One finished agent run."""

    returncode: int
    stdout: str
    stderr: str
    home: Path
    work: Path

    @property
    def notes(self) -> Path:
        return self.work / "notes.txt"


def installed_version(binary: str) -> str | None:
    """The version an agent binary reports, or None when it is not on PATH."""
    path = shutil.which(binary)
    if path is None:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60, check=False)
    found = re.search(r"\d+\.\d+\.\d+", out.stdout + out.stderr)
    return found.group(0) if found else None


def missing_reason(binary: str, version: str, package: str) -> str | None:
    """Why an agent test cannot run here (None when it can)."""
    have = installed_version(binary)
    if have is None:
        return f"{binary} is not installed: `npm install -g {package}@{version}` (scripts/test does it)"
    if have != version:
        return f"{binary} {have} is installed, the suite pins {version}: `npm install -g {package}@{version}`"
    return None


def _dirs(prefix: str, root: Path) -> tuple[Path, Path]:
    """A fresh home and working directory under ``root`` (the test's own tmp_path, removed with it)."""
    home = Path(tempfile.mkdtemp(prefix=f"{prefix}-home-", dir=root))
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}-work-", dir=root))
    (work / "notes.txt").write_text(SECRET + "\n")
    return home, work


def _base_env(home: Path) -> dict[str, str]:
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "TERM") if k in os.environ}
    return keep | {"HOME": str(home), "TMPDIR": tempfile.gettempdir()}


def claude_env(base_url: str, key: str, home: Path) -> dict[str, str]:
    """Claude Code pointed at ``base_url`` (no ``/v1``) with a gateway key, offline."""
    env = _base_env(home) | CLAUDE_OFFLINE
    return env | {"ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_AUTH_TOKEN": key, "ANTHROPIC_API_KEY": ""}


def run_claude(
    base_url: str, key: str, model: str, prompt: str | None = None, *, root: Path, strace: Path | None = None
) -> Run:
    """``claude -p`` in a fresh home; the default prompt is the read-file task (Claude Code's
    ``Read`` tool)."""
    home, work = _dirs("claude", root)
    prompt = (
        prompt or f'Read notes.txt and tell me the secret word. call Read {{"file_path": "{work}/notes.txt"}}'
    )
    cmd = ["claude", "-p", "--model", model, prompt]
    return _run(cmd, claude_env(base_url, key, home), home, work, strace)


def codex_config(base_url: str, model: str) -> str:
    """A Codex ``config.toml`` with corral as a custom Responses provider, offline."""
    return (
        f'{CODEX_OFFLINE_TOP}model = "{model}"\nmodel_provider = "corral"\n\n'
        f'[model_providers.corral]\nname = "corral"\nbase_url = "{base_url}"\n'
        f'wire_api = "responses"\nenv_key = "CORRAL_API_KEY"\n{CODEX_OFFLINE_TABLES}'
    )


def run_codex(
    base_url: str, key: str, model: str, prompt: str | None = None, *, root: Path, strace: Path | None = None
) -> Run:
    """``codex exec`` in a fresh ``CODEX_HOME``; ``base_url`` ends in ``/v1``. The default
    prompt is the read-file task (Codex's ``exec_command`` tool running ``cat``)."""
    home, work = _dirs("codex", root)
    codex_home = home / ".codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(codex_config(base_url, model))
    prompt = (
        prompt
        or f'Read notes.txt and tell me the secret word. call exec_command {{"cmd": "cat {work}/notes.txt"}}'
    )
    env = _base_env(home) | {"CODEX_HOME": str(codex_home), "CORRAL_API_KEY": key}
    cmd = ["codex", "exec", "--skip-git-repo-check", prompt]
    return _run(cmd, env, home, work, strace)


def _run(cmd: list[str], env: dict[str, str], home: Path, work: Path, strace: Path | None) -> Run:
    if strace is not None:  # record every connect and DNS query, to prove the run stayed on loopback
        cmd = [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=connect,sendto,sendmmsg",
            "-s",
            "200",
            "-xx",
            "-o",
            str(strace),
            *cmd,
        ]
    done = subprocess.run(
        cmd,
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr, home, work)


def dns_names(strace_log: Path) -> set[str]:
    """Host names looked up in an strace log written by ``_run`` (DNS queries sent over UDP)."""
    names: set[str] = set()
    for line in strace_log.read_text(errors="replace").splitlines():
        if "send" not in line:
            continue
        for hexed in re.findall(r'"((?:\\x[0-9a-f]{2})+)"', line):
            packet = bytes.fromhex(hexed.replace("\\x", ""))
            if len(packet) <= 12 or packet[4:6] != b"\x00\x01" or packet[2] & 0x80:
                continue
            labels, i = [], 12
            while i < len(packet) and 0 < packet[i] < 64:
                labels.append(packet[i + 1 : i + 1 + packet[i]].decode("latin-1"))
                i += packet[i] + 1
            if labels:
                names.add(".".join(labels))
    return names


def non_loopback_connects(strace_log: Path) -> list[str]:
    """``connect`` calls to an IP address outside 127.0.0.0/8 (DNS servers included)."""
    found = []
    for line in strace_log.read_text(errors="replace").splitlines():
        if "connect(" not in line or "AF_INET" not in line:
            continue
        hexed = re.search(r'inet_addr\("((?:\\x[0-9a-f]{2})+)"\)', line)
        plain = re.search(r'inet_addr\("([0-9.]+)"\)', line)
        address = (
            bytes.fromhex(hexed.group(1).replace("\\x", "")).decode()
            if hexed
            else (plain.group(1) if plain else "")
        )
        if address and not address.startswith("127."):
            found.append(address)
    return found


def as_json(value: object) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False, sort_keys=False)
