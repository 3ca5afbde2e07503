"""Opening the durable store: the database URL, the async engine, migrations, ``Store``.

SQLite (the default, ``corral.db`` in the data directory) runs in WAL mode with foreign keys
on and a busy timeout, and lets SQLAlchemy emit ``BEGIN`` itself so transactions (and DDL)
are real; writes use ``BEGIN IMMEDIATE``. PostgreSQL goes through asyncpg with a small,
pre-pinged pool. ``open_store`` migrates the schema before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from corral.errors import ConfigError
from corral.security.crypto import Crypto
from corral.store.access import WRITE_OPTION, Access, Clock, utc_now
from corral.store.aliases import AliasRepo
from corral.store.audit import AuditRepo
from corral.store.catalog import CatalogRepo
from corral.store.errors import StoreUnavailable
from corral.store.keys import KeyRepo
from corral.store.providers import ProviderRepo
from corral.store.rules import RuleRepo

ENV_VAR = "CORRAL_DATABASE_URL"
SQLITE_FILE = "corral.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
_EXAMPLES = "postgresql://user:password@host:5432/corral or sqlite:///path/to/corral.db"


def database_url(env: Mapping[str, str], home: Path, explicit: str | None = None) -> str:
    """The URL to open: ``explicit``, else ``CORRAL_DATABASE_URL``, else SQLite in ``home``."""
    raw = (explicit or "").strip() or env.get(ENV_VAR, "").strip()
    if not raw:
        return f"sqlite+aiosqlite:///{home / SQLITE_FILE}"
    return normalize_url(raw)


def normalize_url(raw: str) -> str:
    """Map ``postgres(ql)://`` to asyncpg and ``sqlite://`` to aiosqlite; refuse anything else."""
    scheme, sep, _ = raw.partition("://")
    driver = _DRIVERS.get(scheme.lower()) if sep else None
    if driver is None:
        shown = scheme if sep and len(scheme) < 40 else "(none)"
        raise ConfigError(f"{ENV_VAR}: unsupported database URL scheme {shown!r}. Use {_EXAMPLES}.")
    try:
        url = make_url(driver + raw[len(scheme) :])
    except ArgumentError:
        raise ConfigError(f"{ENV_VAR} is not a valid database URL. Use {_EXAMPLES}.") from None
    if driver.startswith("postgresql") and "sslmode" in url.query:  # libpq spelling -> asyncpg's
        url = url.difference_update_query(["sslmode"]).update_query_dict({"ssl": url.query["sslmode"]})
    return url.render_as_string(hide_password=False)


def safe_url(url: str | URL) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


class Store:
    """The database and its repositories. Build with ``open_store``; ``close`` at shutdown."""

    def __init__(self, engine: AsyncEngine, *, crypto: Crypto, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.crypto = crypto
        access = Access.of(engine, clock)
        self.providers = ProviderRepo(access, crypto)
        self.aliases = AliasRepo(access)
        self.keys = KeyRepo(access)
        self.audit = AuditRepo(access)
        self.catalog = CatalogRepo(access)
        self.rules = RuleRepo(access)

    def __repr__(self) -> str:
        return f"Store({safe_url(self.engine.url)!r})"

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def ping(self) -> bool:
        """True if the database answers (for readiness checks)."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            return False
        return True

    async def close(self) -> None:
        await self.engine.dispose()


def create_engine(url: str) -> AsyncEngine:
    """The async engine for ``url`` (already normalised), with per-backend settings."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return create_async_engine(
        parsed,
        pool_size=5,
        max_overflow=5,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"timeout": 10},
    )


def sqlite_in_memory(database: str | None) -> bool:
    """A SQLite database name that is held in memory (seen only through its own connections)."""
    name = database or ""
    return name in ("", ":memory:") or "mode=memory" in name or name.startswith("file::memory:")


def sqlite_pragmas(memory: bool) -> list[str]:
    """The settings of every connection corral opens to a SQLite database (the engine's, and the
    usage sink's own, ``corral.usage.sqlite_batch``)."""
    pragmas = [f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS:d}"]
    if not memory:
        pragmas += ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL"]
    # Statement journals (a multi-row INSERT inside a transaction keeps one, to undo just that
    # statement) and temporary indexes stay in memory instead of temp files: the usage writer's
    # batched inserts otherwise cost a write(2) per page they touch.
    return [*pragmas, "PRAGMA foreign_keys = ON", "PRAGMA temp_store = MEMORY"]


def _sqlite_engine(url: URL) -> AsyncEngine:
    database = url.database or ""
    memory = sqlite_in_memory(database)
    if not memory:
        _create_private_file(Path(database))
    engine = create_async_engine(url)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see on_begin)
        cursor = dbapi_connection.cursor()
        try:
            for pragma in sqlite_pragmas(memory):
                cursor.execute(pragma)
        finally:
            cursor.close()

    def on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)
    return engine


def _create_private_file(path: Path) -> None:
    """Create the SQLite file with mode 0600 (its WAL files inherit it) if it does not exist."""
    if not path.parent.is_dir():
        raise StoreUnavailable(
            f"The directory of the SQLite database {path} does not exist. Create it, or point "
            f"{ENV_VAR} somewhere else."
        )
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


async def open_store(url: str, *, crypto: Crypto, clock: Clock = utc_now, migrate: bool = True) -> Store:
    """Open the database at ``url``, bring its schema to head, and return the ``Store``.

    Raises ``StoreUnavailable`` (a ``ConfigError``) with the reason and the fix when the
    database cannot be reached or migrated; the password in the URL is never shown.
    """
    normalised = normalize_url(url)
    engine = create_engine(normalised)
    try:
        if migrate:
            await _ensure_schema(engine, normalised)
    except BaseException as exc:
        await engine.dispose()
        if isinstance(exc, SQLAlchemyError | OSError | TimeoutError):
            raise StoreUnavailable(_why(exc, normalised)) from None
        raise
    return Store(engine, crypto=crypto, clock=clock)


async def _ensure_schema(engine: AsyncEngine, url: str, patience: float = 30.0) -> None:
    """Migrate when the schema is behind. On SQLite another process migrating holds the file's
    lock for a moment ("database is locked"): wait and look again, up to ``patience`` seconds."""
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        try:
            if await _revision(engine) != head():
                await _migrate_in_child(url)
                await engine.dispose()  # connections opened before the migration may hold the old schema
            return
        except (SQLAlchemyError, StoreUnavailable) as exc:  # the child reports through StoreUnavailable
            locked = "database is locked" in str(exc) and engine.dialect.name == "sqlite"
            if not locked or asyncio.get_running_loop().time() > deadline:
                raise
            await engine.dispose()
            await asyncio.sleep(0.2)


def head() -> str:
    """The newest revision shipped, read from the migration files (without loading alembic)."""
    found: dict[str, str | None] = {}
    for path in (Path(__file__).parent / "migrations" / "versions").glob("r*.py"):
        text_ = path.read_text(encoding="utf-8")
        rev = re.search(r'^revision[^=]*=\s*"([^"]+)"', text_, re.M)
        down = re.search(r'^down_revision[^=]*=\s*(?:"([^"]+)"|None)', text_, re.M)
        if rev:
            found[rev.group(1)] = down.group(1) if down else None
    parents = {d for d in found.values() if d}
    tips = [r for r in found if r not in parents]
    assert len(tips) == 1, f"migrations must form one line, found heads {tips}"
    return tips[0]


async def _revision(engine: AsyncEngine) -> str | None:
    """The database's revision, or None when it has no schema yet."""
    async with engine.connect() as conn:
        try:
            return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        except SQLAlchemyError:
            return None


async def _migrate_in_child(url: str) -> None:
    """Run alembic in a short-lived child process (python -m corral.store.migrate), so the
    long-lived gateway never loads it. The URL travels in the environment, not on the command
    line, where other users could read a password with ps."""
    env = {**os.environ, "CORRAL_MIGRATE_URL": url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.store.migrate", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=180)
    except TimeoutError:
        proc.kill()
        raise StoreUnavailable(
            f"Migrating {safe_url(url)} took over 3 minutes; check the database."
        ) from None
    if proc.returncode != 0:
        lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
        raise StoreUnavailable(lines[-1] if lines else f"Migrating {safe_url(url)} failed.")


def _why(exc: BaseException, url: str) -> str:
    cause = getattr(exc, "orig", None) or exc
    reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
    password = make_url(url).password
    if password:
        reason = reason.replace(str(password), "***")
    if "lock timeout" in reason:
        return (
            f"Another corral has held the migration lock on {safe_url(url)} for over 2 minutes. Check for a "
            "stuck migration (pg_locks, pg_stat_activity) and start again once it is gone."
        )
    if "Can't locate revision" in reason:
        return (
            f"The database at {safe_url(url)} was migrated by a newer corral than this one. "
            "Upgrade corral, or point it at another database."
        )
    return (
        f"Cannot open the database at {safe_url(url)}: {type(cause).__name__}: {reason}. "
        f"Check that the server is running and that {ENV_VAR} (host, port, user, database name) is right."
    )
