"""components: a covering index for the scheduler's per-second change check (one aggregate row
over id, version, updated_at and enabled, read from the index instead of every row)

Revision ID: 0840_registry_watch
Revises: 0700_rollup_pending
Create Date: 2026-12-06 01:30:00
"""
from __future__ import annotations

from alembic import op

revision = '0840_registry_watch'
down_revision = '0810'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_components_registry_watch', 'components', ['id', 'version', 'updated_at', 'enabled'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_components_registry_watch', table_name='components')
