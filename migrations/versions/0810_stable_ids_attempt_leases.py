"""stable ids on SQLite (AUTOINCREMENT) and healing attempts owned with a lease

SQLite hands the id of a deleted row to the next insert unless the table is AUTOINCREMENT; ids of
components and incidents are held elsewhere (healing rows, alerts, the scheduler's memory), so a
reused one made a new component inherit a deleted one's state. The tables are rebuilt in batch
mode with AUTOINCREMENT and their sequences start past every id still referenced anywhere.
Postgres sequences never reuse ids: nothing to do there.

healing_attempts gains the owner's lease (``lease_until``), the committed "acting" marker
(``acting_at``) and the command's process group (``pgid``, ``process_start``).

Revision ID: 0810
Revises: 0700_rollup_pending
Create Date: 2026-12-06 01:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db.types

revision = '0810'
down_revision = '0700_rollup_pending'
branch_labels = None
depends_on = None

STABLE_ID_TABLES = ("components", "incidents", "health_transitions", "check_results", "healing_attempts",
                    "detection_rules", "channels")
# Columns that hold ids of a table without a foreign key (or whose rows outlive the referenced row).
REFERENCES = {
    "components": [("healing_attempts", "component_id"), ("healing_incidents", "component_id"),
                   ("alerts", "component_id")],
    "incidents": [("healing_incidents", "incident_id"), ("healing_attempts", "incident_id"),
                  ("health_transitions", "incident_id"), ("alerts", "incident_id"),
                  ("component_states", "current_incident_id")],
}


def upgrade() -> None:
    with op.batch_alter_table('healing_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_until', app.db.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('acting_at', app.db.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('pgid', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('process_start', sa.String(length=96), nullable=True))
    # Attempts claimed before this revision may have acted: never treat them as "not started".
    op.execute("UPDATE healing_attempts SET acting_at = started_at WHERE started_at IS NOT NULL")
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for table in STABLE_ID_TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass
    for table in STABLE_ID_TABLES:
        highest = bind.execute(sa.text(f"SELECT coalesce(max(id), 0) FROM {table}")).scalar_one()
        for other, column in REFERENCES.get(table, []):
            seen = bind.execute(sa.text(f"SELECT coalesce(max({column}), 0) FROM {other}")).scalar_one()
            highest = max(highest, seen or 0)
        current = bind.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table}).first()
        if current is None:
            if highest:
                bind.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :s)"),
                             {"t": table, "s": highest})
        elif current[0] < highest:
            bind.execute(sa.text("UPDATE sqlite_sequence SET seq = :s WHERE name = :t"), {"t": table, "s": highest})


def downgrade() -> None:
    # AUTOINCREMENT stays (it only stops id reuse); the attempt columns go.
    with op.batch_alter_table('healing_attempts', schema=None) as batch_op:
        batch_op.drop_column('process_start')
        batch_op.drop_column('pgid')
        batch_op.drop_column('acting_at')
        batch_op.drop_column('lease_until')
