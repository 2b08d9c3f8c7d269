"""metrics: points (id-less, COPY target), rollups, series, detection rules, rule states, anomalies

Revision ID: 0200_metrics
Revises: 0001
Create Date: 2026-11-23 02:23:02.103786
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db.types

revision = '0200_metrics'
down_revision = "0100_monitoring"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('detection_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('component', sa.String(length=128), nullable=False),
    sa.Column('metric_name', sa.String(length=200), nullable=False),
    sa.Column('labels', app.db.types.JSONType, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('params', app.db.types.JSONType, nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', app.db.types.UTCDateTime(), nullable=False),
    sa.Column('updated_at', app.db.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_detection_rules')),
    sa.UniqueConstraint('name', name=op.f('uq_detection_rules_name'))
    )
    with op.batch_alter_table('detection_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_detection_rules_component'), ['component'], unique=False)

    op.create_table('metric_points',
    sa.Column('component', sa.String(length=128), nullable=False),
    sa.Column('metric_name', sa.String(length=200), nullable=False),
    sa.Column('series_key', sa.Text(), nullable=False),
    sa.Column('labels', app.db.types.JSONType, nullable=False),
    sa.Column('value', sa.Double(), nullable=False),
    sa.Column('ts', app.db.types.UTCDateTime(), nullable=False)
    )
    with op.batch_alter_table('metric_points', schema=None) as batch_op:
        batch_op.create_index('ix_metric_points_series_ts', ['component', 'metric_name', 'ts'], unique=False)
        batch_op.create_index('ix_metric_points_ts', ['ts'], unique=False, postgresql_using='brin')

    op.create_table('metric_rollups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('resolution', sa.SmallInteger(), nullable=False),
    sa.Column('component', sa.String(length=128), nullable=False),
    sa.Column('metric_name', sa.String(length=200), nullable=False),
    sa.Column('series_key', sa.Text(), nullable=False),
    sa.Column('bucket_start', app.db.types.UTCDateTime(), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.Column('sum', sa.Double(), nullable=False),
    sa.Column('min', sa.Double(), nullable=False),
    sa.Column('max', sa.Double(), nullable=False),
    sa.Column('sumsq', sa.Double(), nullable=False),
    sa.Column('sketch', app.db.types.BlobType, nullable=False),
    sa.Column('compacted', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metric_rollups'))
    )
    with op.batch_alter_table('metric_rollups', schema=None) as batch_op:
        batch_op.create_index('ix_metric_rollups_bucket_start', ['bucket_start'], unique=False)
        batch_op.create_index('ix_metric_rollups_series_bucket', ['component', 'metric_name', 'resolution', 'bucket_start'], unique=False)

    op.create_table('metric_series',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('component', sa.String(length=128), nullable=False),
    sa.Column('metric_name', sa.String(length=200), nullable=False),
    sa.Column('series_key', sa.Text(), nullable=False),
    sa.Column('labels', app.db.types.JSONType, nullable=False),
    sa.Column('last_value', sa.Double(), nullable=False),
    sa.Column('last_ts', app.db.types.UTCDateTime(), nullable=False),
    sa.Column('first_seen', app.db.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metric_series')),
    sa.UniqueConstraint('component', 'metric_name', 'series_key', name='uq_metric_series_key')
    )
    with op.batch_alter_table('metric_series', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_metric_series_component'), ['component'], unique=False)

    op.create_table('metric_anomalies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=True),
    sa.Column('component', sa.String(length=128), nullable=False),
    sa.Column('metric_name', sa.String(length=200), nullable=False),
    sa.Column('series_key', sa.Text(), nullable=False),
    sa.Column('labels', app.db.types.JSONType, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('evidence', app.db.types.JSONType, nullable=False),
    sa.Column('started_at', app.db.types.UTCDateTime(), nullable=False),
    sa.Column('cleared_at', app.db.types.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['rule_id'], ['detection_rules.id'], name=op.f('fk_metric_anomalies_rule_id_detection_rules'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metric_anomalies'))
    )
    with op.batch_alter_table('metric_anomalies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_metric_anomalies_component'), ['component'], unique=False)
        batch_op.create_index(batch_op.f('ix_metric_anomalies_rule_id'), ['rule_id'], unique=False)

    op.create_table('rule_states',
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('series_key', sa.Text(), nullable=False),
    sa.Column('labels', app.db.types.JSONType, nullable=False),
    sa.Column('rule_version', sa.Integer(), nullable=False),
    sa.Column('state', app.db.types.JSONType, nullable=False),
    sa.Column('firing', sa.Boolean(), nullable=False),
    sa.Column('anomaly_id', sa.Integer(), nullable=True),
    sa.Column('last_ts', app.db.types.UTCDateTime(), nullable=True),
    sa.Column('updated_at', app.db.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['rule_id'], ['detection_rules.id'], name=op.f('fk_rule_states_rule_id_detection_rules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('rule_id', 'series_key', name=op.f('pk_rule_states'))
    )


def downgrade() -> None:
    op.drop_table('rule_states')
    with op.batch_alter_table('metric_anomalies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_metric_anomalies_rule_id'))
        batch_op.drop_index(batch_op.f('ix_metric_anomalies_component'))

    op.drop_table('metric_anomalies')
    with op.batch_alter_table('metric_series', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_metric_series_component'))

    op.drop_table('metric_series')
    with op.batch_alter_table('metric_rollups', schema=None) as batch_op:
        batch_op.drop_index('ix_metric_rollups_series_bucket')
        batch_op.drop_index('ix_metric_rollups_bucket_start')

    op.drop_table('metric_rollups')
    with op.batch_alter_table('metric_points', schema=None) as batch_op:
        batch_op.drop_index('ix_metric_points_ts', postgresql_using='brin')
        batch_op.drop_index('ix_metric_points_series_ts')

    op.drop_table('metric_points')
    with op.batch_alter_table('detection_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_detection_rules_component'))

    op.drop_table('detection_rules')
