"""Where the master key comes from, and creating one on first start.

Order: the config's ``master_key``, then ``CORRAL_MASTER_KEY``, then the key file in the data
directory, else a new random key written there with mode 0600 (and shown once).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("corral.security")

KEY_FILE = "master_key"


@dataclass(frozen=True, slots=True)
class MasterKey:
    value: str
    source: str  # "config", "env", "file" or "generated"
    path: Path | None = None

    def __repr__(self) -> str:  # never print the key by accident
        return f"MasterKey(source={self.source!r})"


def load_master_key(
    configured: str | None, home: Path, env: Mapping[str, str], *, create: bool = True
) -> MasterKey | None:
    if configured:
        return MasterKey(configured, "config")
    from_env = env.get("CORRAL_MASTER_KEY", "").strip()
    if from_env:
        return MasterKey(from_env, "env")
    path = home / KEY_FILE
    existing = _read(path)
    if existing:
        return MasterKey(existing, "file", path)
    if not create:
        return None
    return _create(path)


def _read(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users; run: chmod 600 %s", path, path)
    return path.read_text(encoding="utf-8").strip() or None


def _create(path: Path) -> MasterKey:
    key = "sk-corral-" + secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another gateway started at the same moment and won
        existing = _read(path)
        if existing:
            return MasterKey(existing, "file", path)
        raise
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return MasterKey(key, "generated", path)
