"""The spill file: appends, batched replay with a cursor, rotation, crashes, torn lines."""

from __future__ import annotations

import stat
from pathlib import Path

from corral.usage.spill import SpillFile
from tests.usage.factory import records


def _ids(batch_records: object) -> list[str]:
    return [r.request_id for r in batch_records]  # type: ignore[attr-defined]


def test_replay_in_batches_then_the_files_are_gone(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "usage.jsonl")
    assert not spill.pending() and spill.next_batch(10) is None
    spill.append(records(25))
    spill.sync()
    assert spill.pending()
    seen: list[str] = []
    while (batch := spill.next_batch(10)) is not None:
        seen += _ids(batch.records)
        spill.commit(batch)
    assert seen == [r.request_id for r in records(25)]
    assert not spill.pending()
    assert list(tmp_path.iterdir()) == []


def test_files_are_private(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "data" / "usage.jsonl")
    spill.append(records(1))
    spill.close()
    assert stat.S_IMODE(spill.path.stat().st_mode) == 0o600


def test_a_crash_before_commit_replays_the_batch_again(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    first = SpillFile(path)
    first.append(records(10))
    first.close()
    batch = first.next_batch(4)
    assert batch is not None
    first.commit(batch)  # 0-3 committed
    uncommitted = first.next_batch(4)  # 4-7 read, then "crash": no commit
    assert uncommitted is not None
    again = SpillFile(path)
    replayed = again.next_batch(100)
    assert replayed is not None
    assert _ids(replayed.records) == [f"req-{i:06d}" for i in range(4, 10)]


def test_appends_during_a_replay_go_to_a_new_file(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "usage.jsonl")
    spill.append(records(3))
    batch = spill.next_batch(2)  # rotates: the replay file holds 0-2
    assert batch is not None
    spill.append(records(2, start=100))
    spill.commit(batch)
    rest = spill.next_batch(10)
    assert rest is not None and _ids(rest.records) == ["req-000002"]
    spill.commit(rest)
    newer = spill.next_batch(10)
    assert newer is not None and _ids(newer.records) == ["req-000100", "req-000101"]
    spill.commit(newer)
    assert not spill.pending()


def test_a_torn_line_is_set_aside_and_the_next_append_stays_whole(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    spill = SpillFile(path)
    spill.append(records(2))
    spill.close()
    with path.open("ab") as handle:  # a crash in the middle of a write
        handle.write(b'{"request_id": "req-torn", "at": "2025-')
    later = SpillFile(path)
    later.append(records(1, start=50))
    later.close()
    batch = later.next_batch(10)
    assert batch is not None
    assert _ids(batch.records) == ["req-000000", "req-000001", "req-000050"]
    assert batch.rejected == 1
    assert later.bad_path.read_bytes().startswith(b'{"request_id": "req-torn"')


def test_unreadable_lines_and_stale_cursors(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    spill = SpillFile(path)
    spill.append(records(1))
    spill.close()
    with path.open("ab") as handle:
        handle.write(b"not json\n[1, 2]\n{}\n\n")
    spill.append(records(1, start=1))
    spill.cursor_path.write_text("999999")  # stale: from an older replay file
    batch = spill.next_batch(10)
    assert batch is not None
    assert _ids(batch.records) == ["req-000000", "req-000001"]
    assert batch.rejected == 3
    spill.cursor_path.write_text("garbage")
    assert spill._cursor() == 0


def test_rejected_records_are_kept(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "usage.jsonl")
    spill.reject(records(2))
    assert spill.bad_path.read_text().count("\n") == 2
    assert not spill.pending()
