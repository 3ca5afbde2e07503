"""The durable usage writer: a bounded queue, batched commits, a spill file, replay, and shutdown.

The request path calls ``submit`` (synchronous, never blocks on I/O, never raises). ``run`` is
the one background task that moves records to the sink; ``close`` flushes at shutdown.

* The queue holds at most ``max_queue`` records. When it is full, or once ``close`` has begun,
  ``submit`` appends the record to the spill file instead (one small ``write(2)``); only if that
  fails too is the record counted in ``stats.dropped`` (and logged, without its contents).
* ``run`` takes up to ``batch_size`` records from the head of the queue when a batch is full or
  ``flush_interval`` has passed, and writes them with ONE ``sink.write`` (one transaction). The
  records leave the queue only after that commit returns.
* When a write fails, the whole queue is moved to the spill file (fsynced), so an outage does
  not hold records in memory, and the writer backs off (``retry_backoff``, doubling to 30x).
  When the database refuses the data itself (``RecordsRefused``) the batch is written one
  record at a time and the refused records go to the spill's ``.bad`` file (``stats.rejected``).
* After a successful write, the spill file is replayed one batch per cycle (without waiting
  while there is more), in the spill's crash-safe order: commit, then move the cursor.
  Inserts are idempotent on ``request_id``, so anything written twice is counted once.
* ``close`` stops accepting into memory, lets the current write finish (or cancels it near the
  deadline), writes what it can in the time left, spills the rest, and returns in ``timeout``.

Cancelling the ``run`` task without ``close`` leaves the queue in memory: ``close`` still spills
it. Use ``submit`` and ``close`` from the event loop thread that runs ``run``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from corral.usage.record import UsageRecord
from corral.usage.sink import RecordsRefused, UsageSink
from corral.usage.spill import SpillFile

log = logging.getLogger("corral.usage")

MAX_BACKOFF_FACTOR = 30
CLOSE_RESERVE = 1.0  # seconds of close()'s timeout kept back to spill what could not be written
_LOG_EVERY = 10.0  # seconds between repeated warnings of the same kind


@dataclass(slots=True)
class WriterStats:
    """Counters for /metrics. ``dropped`` counts records lost; it should stay 0."""

    submitted: int = 0  # records handed to submit()
    enqueued: int = 0  # records submit() put in the memory queue
    written: int = 0  # records committed from the memory queue
    spilled: int = 0  # records appended to the spill file (overflow, outage, shutdown)
    replayed: int = 0  # records committed from the spill file
    dropped: int = 0  # records lost: neither committed nor spilled
    rejected: int = 0  # records the database refused, or spill lines unreadable: kept in the .bad file
    sink_errors: int = 0  # failed sink writes
    queue_depth: int = 0  # records in the memory queue now


class _SpillFailed(Exception):
    """The spill file could not be read or written (a local disk problem, not the database)."""


class UsageWriter:
    def __init__(
        self,
        sink: UsageSink,
        spill_path: Path,
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.25,
        retry_backoff: float = 1.0,
    ) -> None:
        if max_queue < 1 or batch_size < 1:
            raise ValueError("UsageWriter: max_queue and batch_size must be at least 1")
        if flush_interval <= 0 or retry_backoff <= 0:
            raise ValueError("UsageWriter: flush_interval and retry_backoff must be more than 0 seconds")
        self._sink = sink
        self._spill = SpillFile(spill_path)
        self._queue: deque[UsageRecord] = deque()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._retry_backoff = retry_backoff
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._closing = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._failing_since: float | None = None
        self._logged: dict[str, float] = {}
        self.stats = WriterStats()
        self.spill_drained = asyncio.Event()  # set once the spill file has been replayed (or was empty)

    def __repr__(self) -> str:
        return f"UsageWriter({self._sink!r}, {self._spill!r}, queue={len(self._queue)})"

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def spill_path(self) -> Path:
        return self._spill.path

    # the request path ----------------------------------------------------------------------
    def submit(self, record: UsageRecord) -> None:
        """Queue ``record`` for writing; spill it to disk if the queue is full or closing."""
        try:
            self.stats.submitted += 1
            if not isinstance(record, UsageRecord) or record.at.tzinfo is None:
                self._drop(
                    1,
                    "an invalid usage record (not a UsageRecord with a timezone-aware 'at')",
                    "fix the code that builds it",
                )
                return
            if self._closing or len(self._queue) >= self._max_queue:
                self._spill.append([record])
                self.stats.spilled += 1
                if self._closed:  # a straggler after shutdown: make it durable now
                    self._spill.close()
                return
            self._queue.append(record)
            self.stats.enqueued += 1
            self.stats.queue_depth = len(self._queue)
            if len(self._queue) >= self._batch_size:
                self._wake.set()
        except Exception as exc:
            self._drop(1, f"the spill file failed ({_reason(exc)})")

    # the background task -------------------------------------------------------------------
    async def run(self) -> None:
        """Write batches until ``close``: commit, spill on failure, back off, replay on recovery."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("UsageWriter.run() is already running; start it once per writer")
        self._task = asyncio.current_task()
        backoff = self._retry_backoff
        more = False
        while not self._closing:
            if not more and len(self._queue) < self._batch_size:
                await self._wait(self._wake, self._flush_interval)
            if self.closing:  # close() may have begun while we waited
                break
            try:
                more = await self._cycle()
            except _SpillFailed as exc:
                self._warn("spill", f"The usage spill file {self._spill.path} failed: {_reason(exc)}.")
                more = False
                await self._wait(self._stop, backoff)
                backoff = min(backoff * 2, self._retry_backoff * MAX_BACKOFF_FACTOR)
            except Exception as exc:
                self._on_sink_failure(exc)
                more = False
                await self._wait(self._stop, backoff)
                backoff = min(backoff * 2, self._retry_backoff * MAX_BACKOFF_FACTOR)
            else:
                backoff = self._retry_backoff

    async def _cycle(self) -> bool:
        """Write one queue batch, then replay one spill batch. True if more work is waiting."""
        try:
            self._spill.sync()
        except OSError as exc:
            raise _SpillFailed(str(exc)) from exc
        if self._queue:
            batch = list(islice(self._queue, self._batch_size))
            committed = await self._commit(batch)
            self._ack(batch)
            self.stats.written += committed
            self._recovered()
        replayed = await self._replay_one()
        return replayed or len(self._queue) >= self._batch_size

    async def _replay_one(self) -> bool:
        try:
            batch = self._spill.next_batch(self._batch_size)
        except OSError as exc:
            raise _SpillFailed(str(exc)) from exc
        if batch is None:
            self.spill_drained.set()
            return False
        if batch.rejected:
            self.stats.rejected += batch.rejected
            log.error(
                "%d unreadable line(s) in the usage spill file were moved to %s (torn by a crash, or "
                "written by another version); inspect them there.",
                batch.rejected,
                self._spill.bad_path,
            )
        committed = await self._commit(batch.records) if batch.records else 0
        self._recovered()
        try:
            self._spill.commit(batch)
        except OSError as exc:  # the records are in; they will be replayed again, harmlessly
            raise _SpillFailed(str(exc)) from exc
        self.stats.replayed += committed
        return True

    async def _commit(self, records: Sequence[UsageRecord]) -> int:
        """Write ``records``; if their data is refused, one by one, setting refused ones aside.

        Returns how many were committed. Raises if the sink fails for any other reason.
        """
        try:
            await self._sink.write(records)
            return len(records)
        except RecordsRefused:
            if len(records) == 1:
                self._reject(records[0])
                return 0
        committed = 0
        for record in records:
            try:
                await self._sink.write([record])
                committed += 1
            except RecordsRefused:
                self._reject(record)
        return committed

    def _reject(self, record: UsageRecord) -> None:
        self.stats.rejected += 1
        try:
            self._spill.reject([record])
            where = f"kept in {self._spill.bad_path}"
        except Exception as exc:
            self.stats.dropped += 1
            where = f"and could not be kept ({_reason(exc)})"
        log.error(
            "The database refused the usage record of request %s; it is %s. Check the record's values.",
            record.request_id[:128],
            where,
        )

    def _ack(self, batch: Sequence[UsageRecord]) -> None:
        """Remove ``batch`` from the head of the queue (only the very records that were written)."""
        for record in batch:
            if self._queue and self._queue[0] is record:
                self._queue.popleft()
        self.stats.queue_depth = len(self._queue)

    def _on_sink_failure(self, exc: Exception) -> None:
        self.stats.sink_errors += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        self._warn(
            "sink",
            f"Usage records cannot be written to the database ({_reason(exc)}); they go to the spill "
            f"file {self._spill.path} and will be written once the database answers again.",
        )
        if not self._spill_queue():
            self._warn(
                "spill", f"The usage spill file {self._spill.path} failed too; records wait in memory."
            )

    def _recovered(self) -> None:
        if self._failing_since is not None:
            log.info(
                "Usage records are written to the database again after %.1f s; replaying the spill file.",
                time.monotonic() - self._failing_since,
            )
            self._failing_since = None

    # spilling ------------------------------------------------------------------------------
    def _spill_queue(self) -> bool:
        """Move the whole queue to the spill file (fsynced). False if the file could not take it."""
        records = list(self._queue)
        if not records:
            return True
        try:
            self._spill.append(records)
            self._spill.sync()
        except Exception:
            return self._spill_one_by_one(records)
        self._ack(records)
        self.stats.spilled += len(records)
        return True

    def _spill_one_by_one(self, records: list[UsageRecord]) -> bool:
        """After a failed bulk append: append each record, dropping those that cannot be serialised."""
        for record in records:
            try:
                self._spill.append([record])
            except (ValueError, TypeError) as exc:
                self._drop(1, f"a usage record that cannot be serialised ({_reason(exc)})", "fix its values")
            except OSError:
                return False
            else:
                self.stats.spilled += 1
            self._ack([record])
        try:
            self._spill.sync()
        except OSError:
            return False
        return True

    # shutdown ------------------------------------------------------------------------------
    async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - the lead's contract
        """Flush everything: to the sink while ``timeout`` allows, the rest to the spill file."""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        self._stop.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        reserve = min(CLOSE_RESERVE, max(timeout, 0.0) * 0.2)
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - reserve - loop.time()))
            if not done:
                task.cancel()
                await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
        while self._queue and (remaining := deadline - reserve - loop.time()) > 0:
            batch = list(islice(self._queue, self._batch_size))
            try:
                async with asyncio.timeout(remaining):
                    committed = await self._commit(batch)
            except Exception as exc:
                self._warn("sink", f"Usage records could not be written at shutdown ({_reason(exc)}).")
                break
            self._ack(batch)
            self.stats.written += committed
        if self._queue:
            spilled = len(self._queue)
            if self._spill_queue() and not self._queue:
                log.info(
                    "%d usage record(s) saved to %s; the next start writes them.", spilled, self._spill.path
                )
            else:
                self._drop(len(self._queue), "the spill file failed at shutdown")
                self._queue.clear()
                self.stats.queue_depth = 0
        try:
            self._spill.close()
        except OSError as exc:
            self._warn(
                "spill", f"The usage spill file {self._spill.path} could not be synced: {_reason(exc)}."
            )
        self._closed = True

    # helpers -------------------------------------------------------------------------------
    async def _wait(self, event: asyncio.Event, seconds: float) -> None:
        if not event.is_set():
            try:
                async with asyncio.timeout(seconds):
                    await event.wait()
            except TimeoutError:
                pass
        if event is self._wake:
            event.clear()

    def _drop(self, count: int, why: str, fix: str = "") -> None:
        self.stats.dropped += count
        fix = fix or f"check the disk under {self._spill.path.parent} (space, permissions)"
        self._warn(
            "drop",
            f"{count} usage record(s) dropped: {why}; {fix}. stats.dropped counts every one.",
            logging.ERROR,
        )

    def _warn(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        """Log ``message``, at most once per ``_LOG_EVERY`` seconds for each ``kind``."""
        now = time.monotonic()
        if now - self._logged.get(kind, -_LOG_EVERY) >= _LOG_EVERY:
            self._logged[kind] = now
            log.log(level, message)


def _reason(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


__all__ = ["UsageWriter", "WriterStats"]
