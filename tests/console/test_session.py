"""Console sessions and the key-guess throttle, on fake clocks: idle expiry and lifetime, bounds
(per key, and a full table), the key behind a session re-checked on every lookup, and the
back-off of failed key checks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from corral.console.session import Sessions, digest
from corral.errors import ServerBusy
from corral.http.guesses import GuessThrottle
from corral.keys.cache import KeyCache
from corral.keys.principal import Principal
from corral.store.keys import KeyRecord


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(key_id: str = "AAAAAAAA", scope: str = "admin", **kw: object) -> KeyRecord:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    fields: dict[str, object] = dict(
        id=key_id, key_hash=bytes(32), name="k", owner=None, scope=scope, models=None, expires_at=None,
        enabled=True, tier=None, metadata={}, limits={}, created_at=now, updated_at=now, last_used_at=None,
    )  # fmt: skip
    fields.update(kw)
    return KeyRecord(**fields)  # type: ignore[arg-type]


def test_only_the_hash_of_the_token_is_kept() -> None:
    sessions = Sessions(lambda: None, 60)
    token, _ = sessions.open(Principal.master())
    assert len(token) >= 40
    assert digest(token) in sessions._open and token.encode() not in repr(sessions._open).encode()


def test_a_session_ends_after_the_idle_time_and_use_keeps_it_alive() -> None:
    clock = Clock()
    sessions = Sessions(lambda: None, 60, clock=clock)
    token, _ = sessions.open(Principal.master())
    clock.now += 59
    assert sessions.lookup(token) is not None
    clock.now += 59  # 59 s after the last use
    assert sessions.lookup(token) is not None
    clock.now += 30
    assert sessions.lookup(token, touch=False) is not None  # a background refresh does not count
    clock.now += 31  # 61 s after the last real use
    assert sessions.lookup(token) is None
    assert len(sessions) == 0


def test_revoking_disabling_expiring_or_rescoping_the_key_ends_its_sessions() -> None:
    keys = KeyCache()
    keys.put(record())
    sessions = Sessions(lambda: keys, 600, wall=lambda: datetime(2026, 6, 1, tzinfo=UTC).timestamp())
    changes = [
        lambda: keys.invalidate("AAAAAAAA"),
        lambda: keys.put(record(enabled=False)),
        lambda: keys.put(record(expires_at=datetime(2026, 5, 1, tzinfo=UTC))),
        lambda: keys.put(record(scope="user")),
    ]
    for change in changes:
        keys.put(record())
        token, _ = sessions.open(Principal.from_key(record()))
        found = sessions.lookup(token)
        assert found is not None and found[1].key_id == "AAAAAAAA"
        change()
        assert sessions.lookup(token) is None


def test_the_principal_is_read_again_so_new_limits_apply_at_once() -> None:
    keys = KeyCache()
    keys.put(record())
    sessions = Sessions(lambda: keys, 600)
    token, _ = sessions.open(Principal.from_key(record()))
    keys.put(replace(record(), models=["only-this"]))
    found = sessions.lookup(token)
    assert found is not None and found[1].models == frozenset({"only-this"})


def test_a_key_holds_a_few_sessions_and_signing_in_again_ends_its_least_recently_used() -> None:
    sessions = Sessions(lambda: None, 600, per_key=3)
    tokens = [sessions.open(Principal.master())[0] for _ in range(3)]
    assert sessions.lookup(tokens[0]) is not None  # now the most recently used
    newest, _ = sessions.open(Principal.master())
    assert len(sessions) == 3
    assert sessions.lookup(tokens[1]) is None
    assert all(sessions.lookup(t) is not None for t in (tokens[0], tokens[2], newest))


def test_a_full_table_refuses_a_new_session_and_never_ends_another_keys() -> None:
    clock = Clock()
    keys = KeyCache()
    for key_id in ("AAAAAAAA", "BBBBBBBB"):
        keys.put(record(key_id))
    sessions = Sessions(lambda: keys, 600, limit=3, per_key=2, clock=clock)
    admins = [sessions.open(Principal.master())[0] for _ in range(2)]
    other, _ = sessions.open(Principal.from_key(record("AAAAAAAA")))
    with pytest.raises(ServerBusy):
        sessions.open(Principal.from_key(record("BBBBBBBB")))
    assert all(sessions.lookup(t) is not None for t in (*admins, other))
    again, _ = sessions.open(Principal.from_key(record("AAAAAAAA")))  # in place of its own
    assert sessions.lookup(other) is None and sessions.lookup(again) is not None
    assert all(sessions.lookup(t) is not None for t in admins)
    clock.now += 601  # every session idle too long: ended ones make room
    sessions.open(Principal.from_key(record("BBBBBBBB")))
    assert len(sessions) == 1


def test_a_session_ends_at_its_lifetime_however_much_it_is_used() -> None:
    clock = Clock()
    sessions = Sessions(lambda: None, 600, lifetime=3600, clock=clock)
    token, _ = sessions.open(Principal.master())
    for _ in range(6):
        clock.now += 590
        assert sessions.lookup(token) is not None
    clock.now += 590  # 4130 s after sign-in, 590 s after the last use
    assert sessions.lookup(token) is None


def test_failed_sign_ins_wait_twice_as_long_each_time_capped() -> None:
    clock = Clock()
    throttle = GuessThrottle(free=3, cap=8, clock=clock)
    for _ in range(2):
        throttle.failed("10.0.0.1")
        assert throttle.wait("10.0.0.1") == 0
    waits = []
    for _ in range(6):
        throttle.failed("10.0.0.1")
        waits.append(throttle.wait("10.0.0.1"))
        clock.now += waits[-1]
    assert waits == [1, 2, 4, 8, 8, 8]
    assert throttle.wait("10.0.0.2") == 0  # per address
    throttle.failed("10.0.0.1")
    throttle.forget("10.0.0.1")
    assert throttle.wait("10.0.0.1") == 0


def test_failures_are_forgotten_only_after_a_quiet_hour() -> None:
    clock = Clock()
    throttle = GuessThrottle(free=2, cap=8, forget=3600, clock=clock)
    for _ in range(2):
        throttle.failed("10.0.0.1")
    assert throttle.wait("10.0.0.1") == 1
    clock.now += 3599  # well past the wait, not yet forgotten: the next failure waits longer
    throttle.failed("10.0.0.1")
    assert throttle.wait("10.0.0.1") == 2
    clock.now += 3601
    assert throttle.wait("10.0.0.1") == 0
    throttle.failed("10.0.0.1")  # a fresh start: free again
    assert throttle.wait("10.0.0.1") == 0


def test_the_throttle_table_is_bounded() -> None:
    throttle = GuessThrottle(limit=100)
    for i in range(1000):
        throttle.failed(f"client-{i}")
    assert len(throttle) == 100
