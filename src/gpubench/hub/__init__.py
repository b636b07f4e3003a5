"""The gpubench results hub: upload result files, get an ID, compare GPUs side by side.

A FastAPI server (``app.create_app``) over SQLite or PostgreSQL (``store``), with
the schema managed by Alembic (``migrations``). Needs the ``hub`` extra
(``pip install 'gpubench[hub]'``); nothing here is imported by the core CLI
until a ``gpubench hub`` command runs.
"""
