"""metric_rollups: a partial index over the deltas not compacted yet (the bulk compactor's queue)

Revision ID: 0700_rollup_pending
Revises: 0600_lease_next_check
Create Date: 2026-11-23 06:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0700_rollup_pending'
down_revision = '0600_lease_next_check'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_metric_rollups_pending', 'metric_rollups', ['id'], unique=False,
                    postgresql_where=sa.text('NOT compacted'), sqlite_where=sa.text('NOT compacted'))


def downgrade() -> None:
    op.drop_index('ix_metric_rollups_pending', table_name='metric_rollups')
