"""The spill file: usage records the database could not take yet, on local disk, replayed later.

Files, all beside ``path`` (e.g. ``usage-spill.jsonl`` in the data directory), mode 0600:

* ``path``: append-only JSON lines, one ``UsageRecord.to_json()`` per line. ``append`` writes
  every line with one ``write(2)`` on an ``O_APPEND`` descriptor, so a record is safe from a
  crash of corral as soon as ``append`` returns.
* ``path.replay``: the file being replayed. ``next_batch`` first renames ``path`` to it (a
  rotation, so new appends go to a fresh ``path`` and never race the replay), then reads up to
  ``limit`` records after the cursor.
* ``path.cursor``: the byte offset in ``path.replay`` up to which records are committed to the
  database. ``commit`` moves it only after the database commit; at the end it deletes the
  cursor and then the replay file. A crash at any point therefore replays some records again
  (the inserts are idempotent on ``request_id``) and never skips one.
* ``path.bad``: lines that cannot be read back (a line torn by a crash mid-write, or written
  by an incompatible version) and records the database refused, kept for inspection.

fsync policy: ``append`` does not fsync (a small, fast append on the request path); the
writer calls ``sync`` once per cycle (every ``flush_interval``), after spilling a whole
batch, and at close. A power loss or kernel crash can lose at most the last cycle's
appends; a crash of the process loses nothing. The cursor and the renames are not fsynced:
losing one only replays records again.

One process owns a spill path at a time (use a path per gateway process). Every method is
synchronous and meant for the event loop thread; the files stay small per batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from corral.usage.record import UsageRecord

_MODE = 0o600

__all__ = ["ReplayBatch", "SpillFile"]


@dataclass(frozen=True, slots=True)
class ReplayBatch:
    records: tuple[UsageRecord, ...]
    end: int  # the offset in the replay file just after the last line read
    rejected: int  # lines skipped as unreadable (copied to the .bad file)


class SpillFile:
    """Append records to ``path``; replay them in batches with a crash-safe cursor."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.replay_path = path.with_name(path.name + ".replay")
        self.cursor_path = path.with_name(path.name + ".cursor")
        self.bad_path = path.with_name(path.name + ".bad")
        self._fd: int | None = None
        self._dirty = False

    def __repr__(self) -> str:
        return f"SpillFile({self.path.name!r})"

    # appending ---------------------------------------------------------------------------
    def append(self, records: Sequence[UsageRecord]) -> None:
        """Append ``records`` (written to the OS, not fsynced). Raises ``OSError`` or ``ValueError``."""
        if not records:
            return
        data = b"".join(orjson.dumps(record.to_json()) + b"\n" for record in records)
        _write_all(self._open(), data)
        self._dirty = True

    def sync(self) -> None:
        """fsync what was appended since the last ``sync`` (a no-op when nothing was)."""
        if self._dirty and self._fd is not None:
            os.fsync(self._fd)
        self._dirty = False

    def close(self) -> None:
        """Sync and close the append descriptor (reopened by the next ``append``)."""
        if self._fd is None:
            return
        try:
            self.sync()
        finally:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _MODE)
            try:
                if _ends_mid_line(self.path):  # a torn last line from a crash: end it, keep ours whole
                    _write_all(fd, b"\n")
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    # replaying ---------------------------------------------------------------------------
    def pending(self) -> bool:
        """True if some records wait to be replayed."""
        return self.replay_path.exists() or _size(self.path) > 0

    def next_batch(self, limit: int) -> ReplayBatch | None:
        """Up to ``limit`` records after the cursor (rotating ``path`` in first), or None if none wait."""
        if not self.replay_path.exists():
            if _size(self.path) == 0:
                return None
            self.close()
            self.cursor_path.unlink(missing_ok=True)  # a stale cursor must not apply to the new file
            os.replace(self.path, self.replay_path)
        start = self._cursor()
        records: list[UsageRecord] = []
        bad: list[bytes] = []
        with open(self.replay_path, "rb") as handle:
            handle.seek(start)
            while len(records) < limit:
                line = handle.readline()
                if not line:
                    break
                record = _parse(line)
                if record is None:
                    if line.strip():
                        bad.append(line if line.endswith(b"\n") else line + b"\n")
                else:
                    records.append(record)
            end = handle.tell()
        if bad:
            self._keep_bad(bad)
        return ReplayBatch(tuple(records), end, len(bad))

    def commit(self, batch: ReplayBatch) -> None:
        """Record that ``batch`` is in the database: move the cursor, or finish the replay file."""
        if batch.end >= _size(self.replay_path):
            self.cursor_path.unlink(missing_ok=True)  # cursor first: a crash in between replays again
            self.replay_path.unlink(missing_ok=True)
            return
        temp = self.cursor_path.with_name(self.cursor_path.name + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _MODE)
        try:
            _write_all(fd, str(batch.end).encode())
        finally:
            os.close(fd)
        os.replace(temp, self.cursor_path)

    def _cursor(self) -> int:
        try:
            value = int(self.cursor_path.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return 0
        return value if 0 <= value <= _size(self.replay_path) else 0

    def reject(self, records: Sequence[UsageRecord]) -> None:
        """Set ``records`` aside in the ``.bad`` file (the database refused them)."""
        self._keep_bad([orjson.dumps(record.to_json()) + b"\n" for record in records])

    def _keep_bad(self, lines: list[bytes]) -> None:
        fd = os.open(self.bad_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _MODE)
        try:
            _write_all(fd, b"".join(lines))
        finally:
            os.close(fd)


def _parse(line: bytes) -> UsageRecord | None:
    if not line.endswith(b"\n"):
        return None  # torn by a crash mid-write: its tail never reached the disk
    try:
        data = orjson.loads(line)
        return UsageRecord.from_json(data) if isinstance(data, dict) else None
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _ends_mid_line(path: Path) -> bool:
    size = _size(path)
    if size == 0:
        return False
    with open(path, "rb") as handle:
        handle.seek(size - 1)
        return handle.read(1) != b"\n"
