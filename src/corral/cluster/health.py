"""Deployment health shared by every worker: ejections, busy back-offs, recoveries, probe results,
and the same for each model on a deployment (the second level: a model ejected on an instance).

``DeploymentState`` calls its ``observer`` on each such transition (and after each active
check); ``HealthShare`` queues the deployment's name (no I/O on the request path) and a
background task publishes its snapshot on the cluster channel and stores it in the hash
``<prefix>:cluster:health`` for workers that start later. Other workers apply a snapshot by
setting the fields directly (no observer call, so nothing echoes back).

Model marks merge instead of replacing: each carries the Unix time of its last ejection or
recovery, and a worker takes another's mark of a model only when it is newer than its own, so
a snapshot sent for another reason (a probe result) never undoes a fresher local mark.

Times travel as Unix times (``0`` = not ejected / not busy) and are turned back into this
process's monotonic clock on arrival: replicas should run NTP, as for the limiter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from corral.cluster.link import RedisLink
from corral.routing.state import MAX_MODEL_HEALTH, DeploymentState, ModelHealth

Snapshot = dict[str, Any]


def snapshot(state: DeploymentState, mono: float, wall: float) -> Snapshot:
    def until(t: float) -> float:
        return 0.0 if t <= mono else round(wall + (t - mono), 3)

    return {
        "d": state.name,
        "eu": until(state.ejected_until),
        "bu": until(state.busy_until),
        "x": state.ejections,
        "f": state.consecutive_failures,
        "m": state.misconfigured,
        "e": state.last_error,
        "lc": state.last_check,
        "ok": state.last_check_ok,
        "lat": state.check_latency_ms,
        "ld": state.loaded,
        "run": list(state.running),
        "v": state.version,
        "mh": {
            model: {"eu": until(h.ejected_until), "x": h.ejections, "f": h.failures, "e": h.last_error,
                    "at": h.changed_at}
            for model, h in list(state.models.items())
            if h.changed_at
        },
    }  # fmt: skip


def apply(state: DeploymentState, snap: Mapping[str, Any], mono: float, wall: float) -> None:
    """Take another worker's view of ``state`` (fields only: the observer is not called)."""

    def back(t: Any) -> float:
        return mono + (float(t) - wall) if isinstance(t, (int, float)) and t > wall else 0.0

    state.ejected_until = back(snap.get("eu"))
    state.busy_until = max(back(snap.get("bu")), state.busy_until if state.busy_until > mono else 0.0)
    state.ejections = int(snap.get("x") or 0)
    state.consecutive_failures = int(snap.get("f") or 0)
    if not state.consecutive_failures:
        state.trial_in_flight = False
    state.misconfigured = snap.get("m")
    state.last_error = snap.get("e") or state.last_error
    checked = snap.get("lc")
    if isinstance(checked, (int, float)) and (state.last_check is None or checked >= state.last_check):
        state.last_check = float(checked)
        state.last_check_ok = snap.get("ok")
        state.check_latency_ms = snap.get("lat")
        loaded = snap.get("ld")
        if isinstance(loaded, dict):
            state.loaded = dict(loaded)
        running = snap.get("run")
        if isinstance(running, list):
            state.running = tuple(r for r in running if isinstance(r, dict))
        state.version = snap.get("v") or state.version
    marks = snap.get("mh")
    if isinstance(marks, dict):
        apply_models(state, marks, back)


def apply_models(state: DeploymentState, marks: Mapping[str, Any], back: Callable[[Any], float]) -> None:
    """Take another worker's marks of models on ``state`` that are newer than this worker's."""
    for model, mark in marks.items():
        at = mark.get("at") if isinstance(mark, dict) else None
        if not isinstance(model, str) or not isinstance(at, (int, float)):
            continue
        health = state.models.get(model)
        if health is not None and health.changed_at >= at:
            continue  # this worker's own mark is as new or newer
        if health is None:
            if len(state.models) >= MAX_MODEL_HEALTH:
                del state.models[min(state.models, key=lambda m: state.models[m].ejected_until)]
            health = state.models[model] = ModelHealth()
        health.ejected_until = back(mark.get("eu"))
        health.ejections = int(mark.get("x") or 0)
        health.failures = int(mark.get("f") or 0)
        error = mark.get("e")
        health.last_error = error if isinstance(error, str) else health.last_error
        health.changed_at = float(at)


class HealthShare:
    def __init__(self, link: RedisLink, states: Callable[[], Mapping[str, DeploymentState]]) -> None:
        self._link = link
        self._states = states  # the gateway's current fleet states (swapped on reconfigure)
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self.hash = link.key("health")
        self.published = 0
        self.applied = 0
        link.on("h", self._received)

    def observe(self, states: Mapping[str, DeploymentState]) -> None:
        for state in states.values():
            state.observer = self.changed

    def changed(self, state: DeploymentState) -> None:
        """The observer: called by ``state`` on a transition; publishes in the background."""
        self._dirty.add(state.name)
        self._wake.set()

    def republish_all(self) -> None:
        self._dirty.update(self._states())
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            names, self._dirty = self._dirty, set()
            if not await self._publish(names):
                self._dirty |= names  # Redis down: publish them when it is back (on_reconnect)

    async def _publish(self, names: set[str]) -> bool:
        states = self._states()
        mono, wall = time.monotonic(), time.time()
        snaps = [snapshot(states[n], mono, wall) for n in names if n in states]
        if not snaps:
            return True

        async def send() -> bool:
            async with self._link.redis.pipeline(transaction=False) as pipe:
                for snap in snaps:
                    pipe.publish(self._link.channel, self._link.message("h", s=snap))
                pipe.hset(self.hash, mapping={s["d"]: orjson.dumps(s) for s in snaps})
                pipe.expire(self.hash, 86400)
                await pipe.execute()
            return True

        ok = await self._link.run(send)
        if ok:
            self.published += len(snaps)
        return bool(ok)

    def _received(self, msg: dict[str, Any]) -> None:
        snap = msg.get("s")
        if isinstance(snap, dict):
            self._apply(snap)

    def _apply(self, snap: Mapping[str, Any]) -> None:
        state = self._states().get(str(snap.get("d")))
        if state is not None:
            apply(state, snap, time.monotonic(), time.time())
            self.applied += 1

    async def load(self) -> None:
        """Take the stored snapshots (a worker that starts late, or Redis back after an outage)."""
        stored = await self._link.run(lambda: self._link.redis.hgetall(self.hash))
        for raw in (stored or {}).values():
            try:
                snap = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(snap, dict):
                self._apply(snap)
