"""metric_rollups: ix_metric_rollups_series_bucket ends with series_key, so the compactor's lookup of a
bucket's compacted row (and a summary of one labelled series) finds it in the index instead of
reading the rows of every other series of the metric from the table.

Revision ID: 0910_rollup_series_key_index
Revises: 0900_username_case_unique
Create Date: 2026-12-06 23:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0910_rollup_series_key_index"
down_revision = "0900_username_case_unique"
branch_labels = None
depends_on = None

INDEX = "ix_metric_rollups_series_bucket"
BEFORE = ["component", "metric_name", "resolution", "bucket_start"]


def upgrade() -> None:
    op.drop_index(INDEX, table_name="metric_rollups")
    op.create_index(INDEX, "metric_rollups", [*BEFORE, "series_key"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="metric_rollups")
    op.create_index(INDEX, "metric_rollups", BEFORE)
