"""The data directory: ``$CORRAL_HOME``, or ``~/.corral``. Created with mode 0700."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    raw = env.get("CORRAL_HOME")
    path = Path(raw).expanduser() if raw else Path.home() / ".corral"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
