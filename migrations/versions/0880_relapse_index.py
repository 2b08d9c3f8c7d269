"""healing_attempts: an index on (component, state, finished_at) for the relapse check, which reads a
component's latest succeeded attempt (the (component, created_at) and state indexes only narrow it)

Revision ID: 0880_relapse_index
Revises: 0870_dependencies_index
Create Date: 2026-12-06 13:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0880_relapse_index"
down_revision = "0870_dependencies_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_healing_attempts_component_state_finished",
        "healing_attempts",
        ["component", "state", "finished_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_healing_attempts_component_state_finished", table_name="healing_attempts")
