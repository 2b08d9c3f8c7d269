"""component_leases (Postgres): fillfactor 30, so a renewal's new row versions fit in the page of the
old ones (heap-only updates: no index entries written, the dead versions pruned in place instead of
piling up for vacuum). Rows already stored move to such pages on their next renewal. SQLite: nothing.

Revision ID: 0890_lease_fillfactor
Revises: 0880_relapse_index
Create Date: 2026-12-06 13:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0890_lease_fillfactor"
down_revision = "0880_relapse_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE component_leases SET (fillfactor = 30)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE component_leases RESET (fillfactor)")
