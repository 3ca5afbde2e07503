"""`corral serve` names the console's address when it is ready."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.cli.test_serve import env_for, serving


def test_serve_prints_where_the_console_is(tmp_path: Path) -> None:
    with serving(["--demo"], env_for(tmp_path)) as (proc, url, _ready_after):
        on_data = httpx.get(url + "/admin/keys")
        admin = on_data.json()["error"]["message"].split("use ")[1].removesuffix("/admin/keys.")
        page = httpx.get(admin + "/console")
        assert page.status_code == 200 and "corral console" in page.text
    out = proc.stdout.read() if proc.stdout else ""
    assert f"console at {admin}/console" in out
