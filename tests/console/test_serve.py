"""`corral serve` names the console's address when it is ready."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.cli.test_serve import admin_url_printed, env_for, serving


def test_serve_prints_where_the_console_is(tmp_path: Path) -> None:
    with serving(["--demo"], env_for(tmp_path)) as (proc, _url, _ready_after):
        started, admin = admin_url_printed(proc)
        page = httpx.get(admin + "/console")
        assert page.status_code == 200 and "corral console" in page.text
    out = started + (proc.stdout.read() if proc.stdout else "")
    assert f"console at {admin}/console" in out
