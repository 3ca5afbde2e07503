"""stop_tasks: every task is stopped even when one had already failed, and the failure is logged."""

from __future__ import annotations

import asyncio
import logging

import pytest

from corral.tasks import stop_tasks


async def test_a_failed_task_is_logged_and_the_others_still_stop(caplog: pytest.LogCaptureFixture) -> None:
    async def boom() -> None:
        raise RuntimeError("broken")

    failed = asyncio.create_task(boom(), name="broken-loop")
    running = asyncio.create_task(asyncio.sleep(3600), name="sleeper")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="corral"):
        await stop_tasks([failed, running])
    assert running.cancelled()
    assert [r.getMessage() for r in caplog.records] == ["background task broken-loop had failed"]
