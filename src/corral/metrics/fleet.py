"""``/metrics`` for every worker of one supervisor, whichever worker answers the scrape.

The workers share one control-plane socket, so a scrape lands on any one of them. Each worker
writes its own exposition (``Metrics.render``) every ``INTERVAL`` seconds, in the background,
to ``worker-<index>.prom`` in the supervisor run's directory (created fresh for each run and
removed at its end; the supervisor removes a dead worker's file when it reaps it). The worker
answering a scrape renders itself live, reads the others' files, and answers one exposition in
which every sample carries a ``worker`` label (its index): counters stay per worker (a
restarted worker's counters start again from 0, which Prometheus reads as a counter reset), and
``sum without (worker)`` gives the host's totals. A peer's numbers are at most ``INTERVAL`` plus
a write old; a file older than ``STALE`` seconds (a worker that stopped writing) is left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from corral.metrics.gateway import Metrics

log = logging.getLogger("corral.metrics")
INTERVAL = 1.0  # seconds between a worker's snapshots
STALE = 15.0  # a snapshot older than this is not shown
MAX_SNAPSHOT = 8 * 1024 * 1024  # bytes read from a peer's file at most
LABEL = "worker"


def snapshot_path(run_dir: str | Path, index: int) -> Path:
    return Path(run_dir) / f"worker-{index}.prom"


class FleetMetrics:
    """This worker's metrics and its peers' last snapshots, rendered as one."""

    content_type = Metrics.content_type

    def __init__(self, metrics: Metrics, run_dir: str | Path, index: int, workers: int) -> None:
        self.metrics = metrics
        self.run_dir = Path(run_dir)
        self.index = index
        self.workers = workers
        self.path = snapshot_path(run_dir, index)

    def write(self) -> None:
        """Write this worker's exposition (to a temporary file, then renamed: readers never see
        half of one)."""
        data = self.metrics.render()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)

    async def run(self) -> None:
        """Snapshot every ``INTERVAL`` seconds, off the event loop's thread."""
        while True:
            try:
                await asyncio.to_thread(self.write)
            except OSError as exc:
                log.warning("could not write the metrics snapshot %s: %s", self.path, exc.strerror)
            await asyncio.sleep(INTERVAL)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()

    def render(self) -> bytes:
        """One exposition of every worker's samples, each with its ``worker`` label."""
        texts = {self.index: self.metrics.render().decode()}
        now = time.time()
        for index in range(self.workers):
            if index == self.index:
                continue
            text = _read(snapshot_path(self.run_dir, index), now)
            if text is not None:
                texts[index] = text
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Merged(texts))
        data: bytes = generate_latest(registry)
        return data


def _read(path: Path, now: float) -> str | None:
    try:
        with path.open("rb") as f:
            if now - os.fstat(f.fileno()).st_mtime > STALE:
                return None
            return f.read(MAX_SNAPSHOT).decode()
    except (OSError, UnicodeDecodeError):
        return None


class _Merged:
    """The families of several expositions, merged by name, each sample labelled by worker."""

    def __init__(self, texts: dict[int, str]) -> None:
        self._texts = texts

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for index, text in sorted(self._texts.items()):
            try:
                families = list(text_string_to_metric_families(text))
            except ValueError:  # a torn or foreign file: leave that worker out
                log.warning("unreadable metrics snapshot of worker %d", index)
                continue
            for family in families:
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                elif into.type != family.type:
                    continue
                for sample in family.samples:
                    into.add_sample(sample.name, {**sample.labels, LABEL: str(index)}, sample.value)
        yield from merged.values()

    def describe(self) -> list[Any]:
        return []
