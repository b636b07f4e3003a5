"""Alembic environment of the hub's database, run programmatically by
``gpubench.hub.store.migrate`` (no alembic.ini needed). New revisions go in
``versions/``; write them by hand or with ``alembic revision --autogenerate``
against ``gpubench.hub.models`` (see ``env.py``)."""
