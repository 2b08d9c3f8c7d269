"""heartbeat_pings: the run id a ping URL's ``?rid=`` names (a UUID), indexed per component, so a
finish is timed from its own run's ``start`` and a late ping of a run the recovery action replaced is
told apart from the rerun's

Revision ID: 0920_heartbeat_ping_rid
Revises: 0910_rollup_series_key_index
Create Date: 2026-12-07 08:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0920_heartbeat_ping_rid"
down_revision = "0910_rollup_series_key_index"
branch_labels = None
depends_on = None

INDEX = "ix_heartbeat_pings_component_rid"


def upgrade() -> None:
    with op.batch_alter_table("heartbeat_pings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rid", sa.String(length=36), nullable=True))
        batch_op.create_index(INDEX, ["component_id", "rid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("heartbeat_pings", schema=None) as batch_op:
        batch_op.drop_index(INDEX)
        batch_op.drop_column("rid")
