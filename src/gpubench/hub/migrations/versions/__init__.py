"""Alembic revisions of the hub schema, oldest first (0001_initial, …)."""
