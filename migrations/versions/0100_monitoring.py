"""monitoring: check results, transitions, incidents, hourly rollups, heartbeat pings; state machine columns

Revision ID: 0100_monitoring
Revises: 0001
Create Date: 2026-11-23 02:22:56.021981
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db.types

revision = '0100_monitoring'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('check_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('component_id', sa.Integer(), nullable=False),
    sa.Column('observed_at', app.db.types.UTCDateTime(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['component_id'], ['components.id'], name=op.f('fk_check_results_component_id_components'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_check_results'))
    )
    with op.batch_alter_table('check_results', schema=None) as batch_op:
        batch_op.create_index('ix_check_results_component_observed', ['component_id', 'observed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_check_results_observed_at'), ['observed_at'], unique=False)

    op.create_table('check_rollups',
    sa.Column('component_id', sa.Integer(), nullable=False),
    sa.Column('hour', app.db.types.UTCDateTime(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('degraded', sa.Integer(), nullable=False),
    sa.Column('latency_min_ms', sa.Float(), nullable=True),
    sa.Column('latency_mean_ms', sa.Float(), nullable=True),
    sa.Column('latency_max_ms', sa.Float(), nullable=True),
    sa.Column('latency_p95_ms', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['component_id'], ['components.id'], name=op.f('fk_check_rollups_component_id_components'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('component_id', 'hour', name=op.f('pk_check_rollups'))
    )
    with op.batch_alter_table('check_rollups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_check_rollups_hour'), ['hour'], unique=False)

    op.create_table('health_transitions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('component_id', sa.Integer(), nullable=False),
    sa.Column('at', app.db.types.UTCDateTime(), nullable=False),
    sa.Column('previous', sa.String(length=16), nullable=False),
    sa.Column('current', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('result_ids', app.db.types.JSONType, nullable=False),
    sa.Column('summary', app.db.types.JSONType, nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['component_id'], ['components.id'], name=op.f('fk_health_transitions_component_id_components'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_health_transitions'))
    )
    with op.batch_alter_table('health_transitions', schema=None) as batch_op:
        batch_op.create_index('ix_health_transitions_component_at', ['component_id', 'at'], unique=False)

    op.create_table('heartbeat_pings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('component_id', sa.Integer(), nullable=False),
    sa.Column('received_at', app.db.types.UTCDateTime(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['component_id'], ['components.id'], name=op.f('fk_heartbeat_pings_component_id_components'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_heartbeat_pings'))
    )
    with op.batch_alter_table('heartbeat_pings', schema=None) as batch_op:
        batch_op.create_index('ix_heartbeat_pings_component_received', ['component_id', 'received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_heartbeat_pings_received_at'), ['received_at'], unique=False)

    op.create_table('incidents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('component_id', sa.Integer(), nullable=False),
    sa.Column('opened_at', app.db.types.UTCDateTime(), nullable=False),
    sa.Column('closed_at', app.db.types.UTCDateTime(), nullable=True),
    sa.Column('opening_status', sa.String(length=16), nullable=False),
    sa.Column('worst_status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('close_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['component_id'], ['components.id'], name=op.f('fk_incidents_component_id_components'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incidents'))
    )
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_incidents_closed_at'), ['closed_at'], unique=False)
        batch_op.create_index('ix_incidents_component_opened', ['component_id', 'opened_at'], unique=False)

    with op.batch_alter_table('component_states', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recent_outcomes', sa.String(length=64), server_default='', nullable=False))
        batch_op.add_column(sa.Column('grace_until', app.db.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('current_incident_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('last_latency_ms', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('last_ping_at', app.db.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('last_ping_status', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('last_start_at', app.db.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('last_duration_s', sa.Float(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('component_states', schema=None) as batch_op:
        batch_op.drop_column('last_duration_s')
        batch_op.drop_column('last_start_at')
        batch_op.drop_column('last_ping_status')
        batch_op.drop_column('last_ping_at')
        batch_op.drop_column('last_latency_ms')
        batch_op.drop_column('current_incident_id')
        batch_op.drop_column('grace_until')
        batch_op.drop_column('recent_outcomes')

    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_index('ix_incidents_component_opened')
        batch_op.drop_index(batch_op.f('ix_incidents_closed_at'))

    op.drop_table('incidents')
    with op.batch_alter_table('heartbeat_pings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_heartbeat_pings_received_at'))
        batch_op.drop_index('ix_heartbeat_pings_component_received')

    op.drop_table('heartbeat_pings')
    with op.batch_alter_table('health_transitions', schema=None) as batch_op:
        batch_op.drop_index('ix_health_transitions_component_at')

    op.drop_table('health_transitions')
    with op.batch_alter_table('check_rollups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_check_rollups_hour'))

    op.drop_table('check_rollups')
    with op.batch_alter_table('check_results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_check_results_observed_at'))
        batch_op.drop_index('ix_check_results_component_observed')

    op.drop_table('check_results')
