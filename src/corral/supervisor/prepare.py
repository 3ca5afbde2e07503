"""What the supervisor does once, before any worker starts: keys, migrations, the checks.

Opening the control plane creates the encryption key file when there is none, migrates the
database and checks that stored credentials decrypt; doing it here, in one process, means N
workers never race to create a key file or to migrate (they find both done). The master key
is created by the caller (``corral.cli.serve``) the same way, before this.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from corral.config.schema import Config
from corral.control.plane import ControlPlane
from corral.store.keys import KeyRecord


async def prepare(config: Config, home: Path, env: Mapping[str, str]) -> tuple[Config, list[KeyRecord]]:
    """Open the store once (creating, migrating and checking); return the effective config
    (the file's and the database's providers) and the stored keys, for the rules."""
    plane = await ControlPlane.open(config, home, env)
    try:
        return await plane.effective(), plane.keys.records()
    finally:
        await plane.close()
