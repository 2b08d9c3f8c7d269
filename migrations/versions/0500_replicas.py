"""replicas: registered guard processes and their leases on components (fencing epochs)

Revision ID: 0500_replicas
Revises: 0499_merge_healing
Create Date: 2026-11-23 04:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db.types

revision = '0500_replicas'
# The integrator chains 0001 → 0100 → 0200 → 0300 → 0400 → 0500; on this branch the heads of the
# merged monitoring/alerts/healing branches are joined by 0499_merge_healing.
down_revision = '0400_healing'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('replicas',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('region', sa.String(length=64), nullable=True),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', app.db.types.UTCDateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('heartbeat_at', app.db.types.UTCDateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_replicas'))
    )
    with op.batch_alter_table('replicas', schema=None) as batch_op:
        batch_op.create_index('ix_replicas_status_heartbeat', ['status', 'heartbeat_at'], unique=False)

    op.create_table('component_leases',
    sa.Column('component_id', sa.Integer(), nullable=False),
    sa.Column('replica_id', sa.String(length=128), nullable=False),
    sa.Column('epoch', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', app.db.types.UTCDateTime(), nullable=False),
    sa.Column('acquired_at', app.db.types.UTCDateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['component_id'], ['components.id'], name=op.f('fk_component_leases_component_id_components'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('component_id', name=op.f('pk_component_leases'))
    )
    with op.batch_alter_table('component_leases', schema=None) as batch_op:
        batch_op.create_index('ix_component_leases_replica', ['replica_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('component_leases', schema=None) as batch_op:
        batch_op.drop_index('ix_component_leases_replica')
    op.drop_table('component_leases')
    with op.batch_alter_table('replicas', schema=None) as batch_op:
        batch_op.drop_index('ix_replicas_status_heartbeat')
    op.drop_table('replicas')
