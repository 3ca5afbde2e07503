"""Database fixtures on SQLite and PostgreSQL (see tests.support.databases)."""

from tests.support.databases import *  # noqa: F403
