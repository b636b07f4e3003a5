"""The three tables: runs, records, tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(), nullable=False),
        sa.Column("uploader", sa.String(200)),
        sa.Column("suite", sa.String(200), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("gpu_name", sa.String(200)),
        sa.Column("gpu_key", sa.String(200), nullable=False),
        sa.Column("device_type", sa.String(200)),
        sa.Column("host", sa.String(200)),
        sa.Column("started_at", sa.DateTime()),
        sa.Column("gpubench_version", sa.String(200)),
        sa.Column("n_records", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
    )
    op.create_index("ux_runs_sha256", "runs", ["sha256"], unique=True)
    op.create_index("ix_runs_suite", "runs", ["suite"])
    op.create_index("ix_runs_gpu_key", "runs", ["gpu_key"])
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_index("ix_runs_uploaded_at_id", "runs", ["uploaded_at", "id"])

    op.create_table(
        "records",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(16), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("case_id", sa.Text(), nullable=False),
        sa.Column("benchmark", sa.String(200), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metric", sa.String(200)),
        sa.Column("value", sa.Float()),
        sa.Column("unit", sa.String(64)),
        sa.Column("pct_of_peak", sa.Float()),
        sa.Column("is_probe", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_records_run_id", "records", ["run_id"])
    op.create_index("ix_records_case_id", "records", ["case_id"])
    op.create_index("ix_records_benchmark", "records", ["benchmark"])
    op.create_index("ix_records_board", "records",
                    ["benchmark", "metric", "status", "is_probe", "run_id", "value"])

    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime()),
    )
    op.create_index("ux_tokens_name", "tokens", ["name"], unique=True)
    op.create_index("ix_tokens_token_sha256", "tokens", ["token_sha256"])


def downgrade() -> None:
    op.drop_table("tokens")
    op.drop_table("records")
    op.drop_table("runs")
