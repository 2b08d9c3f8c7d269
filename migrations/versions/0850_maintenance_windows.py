"""silences: recurring maintenance windows (cron schedule, zone, duration), a name and a source;
detection_rules and channels: a source (declared in the config file)

Revision ID: 0850
Revises: 0700_rollup_pending
Create Date: 2026-12-06 01:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0850'
down_revision = '0840_registry_watch'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('silences', schema=None) as batch_op:
        batch_op.add_column(sa.Column('schedule', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('tz', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('duration_seconds', sa.Double(), nullable=True))
        batch_op.add_column(sa.Column('name', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('source', sa.String(length=16), server_default='api', nullable=False))
        batch_op.create_unique_constraint(batch_op.f('uq_silences_name'), ['name'])
    for table in ('detection_rules', 'channels'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('source', sa.String(length=16), server_default='api', nullable=False))


def downgrade() -> None:
    for table in ('channels', 'detection_rules'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('source')
    with op.batch_alter_table('silences', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_silences_name'), type_='unique')
        batch_op.drop_column('source')
        batch_op.drop_column('name')
        batch_op.drop_column('duration_seconds')
        batch_op.drop_column('tz')
        batch_op.drop_column('schedule')
