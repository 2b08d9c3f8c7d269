"""Dependencies and root cause: components.depends_on, incident attribution, rules that heal

Revision ID: 0860_dependencies
Revises: 0700_rollup_pending
Create Date: 2026-12-06 02:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.db.types import JSONType, UTCDateTime

revision = '0860_dependencies'
down_revision = '0850'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('components') as batch:
        batch.add_column(sa.Column('depends_on', JSONType, nullable=False, server_default='[]'))
    # A rebuilt SQLite table keeps AUTOINCREMENT (ids never reused), as migration 0810 made it.
    with op.batch_alter_table('incidents', table_kwargs={'sqlite_autoincrement': True}) as batch:
        batch.add_column(sa.Column('caused_by', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('held_until', UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('suppressed', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('detection_rules', table_kwargs={'sqlite_autoincrement': True}) as batch:
        batch.add_column(sa.Column('heal', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('metric_anomalies') as batch:
        batch.add_column(sa.Column('incident_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('metric_anomalies') as batch:
        batch.drop_column('incident_id')
    with op.batch_alter_table('detection_rules', table_kwargs={'sqlite_autoincrement': True}) as batch:
        batch.drop_column('heal')
    # A rebuilt SQLite table keeps AUTOINCREMENT (ids never reused), as migration 0810 made it.
    with op.batch_alter_table('incidents', table_kwargs={'sqlite_autoincrement': True}) as batch:
        batch.drop_column('suppressed')
        batch.drop_column('held_until')
        batch.drop_column('caused_by')
    with op.batch_alter_table('components') as batch:
        batch.drop_column('depends_on')
