"""branch merge point (monitoring + alerts + healing); no schema change. Delete when the integrator re-chains.

Revision ID: 0499_merge_healing
Revises: 0100_monitoring, 0300_alerts, 0400_healing
"""
from __future__ import annotations

revision = '0499_merge_healing'
down_revision = ('0100_monitoring', '0300_alerts', '0400_healing')
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
