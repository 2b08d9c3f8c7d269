"""component_leases.next_check_at: the due time of the next check, written when a lease is handed over

Revision ID: 0600_lease_next_check
Revises: 0500_replicas
Create Date: 2026-11-24 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db.types

revision = '0600_lease_next_check'
down_revision = '0500_replicas'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('component_leases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_check_at', app.db.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('component_leases', schema=None) as batch_op:
        batch_op.drop_column('next_check_at')
