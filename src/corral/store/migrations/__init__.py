"""Alembic migrations of the corral store, run by ``corral.store.migrate`` (no alembic.ini).

To add a revision, write a new file under ``versions/`` whose ``down_revision`` is the current
head; keep it free of imports from corral so it describes the schema as it was at that point.
"""
