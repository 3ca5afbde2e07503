"""Stopping background tasks: cancel them all, wait for each, and log (never raise) a failure.

Shutdown must finish even when one of the gateway's background tasks had already died with an
error; that error is logged here, with the task's name, and the remaining tasks still stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("corral")


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("background task %s had failed", task.get_name())
