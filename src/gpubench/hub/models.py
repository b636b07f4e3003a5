"""The hub's tables. The schema itself is created and changed only by Alembic
(``migrations/versions``); these classes must match it, and a test compares them.

Times are naive UTC ``DateTime`` columns on purpose: SQLite has no time zones and
PostgreSQL's ``timestamp`` then behaves the same, so the two back ends sort and
filter identically.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class RunRow(SQLModel, table=True):
    """One uploaded result file."""

    __tablename__ = "runs"
    __table_args__ = (
        # Listing newest first with a stable order for paging.
        sa.Index("ix_runs_uploaded_at_id", "uploaded_at", "id"),
        sa.Index("ux_runs_sha256", "sha256", unique=True),
    )

    # First 16 hex digits of sha256: short enough for a URL, 64 bits against collisions.
    id: str = Field(sa_column=sa.Column(sa.String(16), primary_key=True))
    # SHA-256 of the canonical JSON (sorted keys, no whitespace): the idempotency key.
    sha256: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    uploaded_at: datetime = Field(sa_column=sa.Column(sa.DateTime(), nullable=False))
    uploader: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    suite: str = Field(sa_column=sa.Column(sa.String(200), nullable=False, index=True))
    status: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    schema_version: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    gpu_name: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    # env.device.spec_key (the hardware table's key) or a slug of the device name.
    gpu_key: str = Field(sa_column=sa.Column(sa.String(200), nullable=False, index=True))
    device_type: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    host: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    started_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(), index=True))
    gpubench_version: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    n_records: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    size_bytes: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    # The uploaded text itself (UTF-8 JSON, as sent): the first upload of a content wins.
    document: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))


class RecordRow(SQLModel, table=True):
    """One record of a run, with its headline figure (compare.main_metric) pulled out
    so that leaderboards are SQL over a narrow table, never a parse of documents."""

    __tablename__ = "records"
    __table_args__ = (
        # The leaderboard's query: benchmark + metric + ok, grouped by run; covers the value.
        sa.Index("ix_records_board", "benchmark", "metric", "status", "is_probe", "run_id", "value"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer(), primary_key=True,
                                                             autoincrement=True))
    run_id: str = Field(sa_column=sa.Column(sa.String(16), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                                            nullable=False, index=True))
    case_id: str = Field(sa_column=sa.Column(sa.Text(), nullable=False, index=True))
    benchmark: str = Field(sa_column=sa.Column(sa.String(200), nullable=False, index=True))
    params: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))      # JSON text
    status: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    metric: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    value: float | None = Field(default=None, sa_column=sa.Column(sa.Float()))
    unit: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    pct_of_peak: float | None = Field(default=None, sa_column=sa.Column(sa.Float()))
    # A search's probe step (params.search set): shown on the run page, kept off leaderboards.
    is_probe: bool = Field(default=False, sa_column=sa.Column(sa.Boolean(), nullable=False,
                                                              server_default=sa.false()))


class TokenRow(SQLModel, table=True):
    """An upload token. Only its SHA-256 is stored; the plaintext is shown once."""

    __tablename__ = "tokens"
    __table_args__ = (sa.Index("ux_tokens_name", "name", unique=True),)

    id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer(), primary_key=True,
                                                             autoincrement=True))
    name: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    token_sha256: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, index=True))
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime()))


METADATA = SQLModel.metadata
