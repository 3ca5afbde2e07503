"""A usage batch written to a SQLite file in one call on the sink's own thread.

Through SQLAlchemy's asyncio layer every statement of a batch is a round trip between the
event loop and aiosqlite's thread, and its parameters pass both; measured through ``corral
serve`` under load (``bench/ab.py``) that cost about 20 us of CPU per usage record more than
handing the whole batch to a thread once: the same statements, the same transaction, run with
the ``sqlite3`` module on a connection of its own (``SQLiteBatches``).

The connection is opened in that thread with the store's settings (``store.db.sqlite_pragmas``)
and used by it alone. A write has its timeout as a whole: waiting for another
writer's lock is bounded by what is left of it (``busy_timeout``, set per write), a running
statement is interrupted when it runs out (``sqlite3.Connection.interrupt``), and a write given
up on is rolled back instead of committed; ``TimeoutError`` then, unless the commit had already
happened, which counts as written. One cancelled (shutdown) is stopped the same way.

What the rows and the rollup are is decided by the caller's ``plan`` (``corral.usage.sink``), so
both paths write the same thing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from corral.store.db import sqlite_pragmas

# One step of a batch: SQL and its parameters; executemany when the parameters are a list of rows.
Step = tuple[str, tuple[Any, ...] | list[tuple[Any, ...]]]
# Given the request ids already stored, the rest of a batch's steps.
Plan = Callable[[set[str]], list[Step]]
STORED_PER_QUERY = 900  # request ids a query asks about: under the 999 parameters of old SQLite builds


def stored_statement(count: int) -> str:
    """The query of which of ``count`` request ids the usage table holds (SQLite placeholders)."""
    marks = ", ".join("?" * count)
    return f"SELECT request_id FROM usage WHERE request_id IN ({marks})"  # noqa: S608 - placeholders only


class SQLiteBatches:
    """Writes usage batches to the SQLite file ``path``, one transaction each, on one thread."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="corral-usage-sqlite")
        self._closed = False

    async def write(self, ids: list[str], plan: Plan, timeout: float) -> None:  # noqa: ASYNC109 - the sink's contract
        """Run ``plan(stored ids among ids)`` in one ``BEGIN IMMEDIATE`` transaction, within
        ``timeout`` seconds (waiting for another writer's lock included)."""
        abandoned = threading.Event()
        job = asyncio.wrap_future(
            self._pool.submit(self._run, ids, plan, time.monotonic() + timeout, abandoned)
        )
        try:
            done, _ = await asyncio.wait({job}, timeout=timeout)
        except BaseException:  # cancelled (shutdown): stop; it rolls back unless it committed already
            self._abandon(abandoned)
            raise
        if not done:
            self._abandon(abandoned)
            try:
                await job  # settles at once: interrupted, out of busy time, or committed just now
            except Exception:
                raise TimeoutError(f"the usage batch was not written within {timeout:g} s") from None
            return
        job.result()

    def _abandon(self, abandoned: threading.Event) -> None:
        abandoned.set()  # checked before COMMIT
        if self._db is not None:
            self._db.interrupt()  # stops a running statement (not a wait for a lock: see _run)

    def close(self) -> None:
        """Close the connection in its thread, after any write in progress, and let the thread end."""
        if self._closed:
            return
        self._closed = True
        self._pool.submit(self._close)
        self._pool.shutdown(wait=False)  # never blocks the loop: a write held up ends by its own timeout

    # -- in the thread -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        for pragma in sqlite_pragmas(memory=False):  # the busy timeout is set again per write
            db.execute(pragma)
        return db

    def _run(self, ids: list[str], plan: Plan, deadline: float, abandoned: threading.Event) -> None:
        db = self._db
        if db is None:
            db = self._db = self._connect()
        # waiting for another writer's lock ends with the write's own time, not the store's
        db.execute(f"PRAGMA busy_timeout = {max(1, int((deadline - time.monotonic()) * 1000)):d}")
        db.execute("BEGIN IMMEDIATE")
        try:
            stored: set[str] = set()
            for first in range(0, len(ids), STORED_PER_QUERY):
                part = ids[first : first + STORED_PER_QUERY]
                stored.update(row[0] for row in db.execute(stored_statement(len(part)), part))
            for statement, params in plan(stored):
                if isinstance(params, list):
                    db.executemany(statement, params)
                else:
                    db.execute(statement, params)
            if abandoned.is_set():
                raise TimeoutError("the usage batch was abandoned by its writer")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()
