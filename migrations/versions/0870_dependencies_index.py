"""components: a partial index of the components that list dependencies (the root-cause query reads
it instead of every component)

Revision ID: 0870_dependencies_index
Revises: 0860_dependencies
Create Date: 2026-12-06 10:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0870_dependencies_index"
down_revision = "0860_dependencies"
branch_labels = None
depends_on = None

HAS_DEPENDENCIES = "CAST(depends_on AS TEXT) NOT IN ('null', '[]')"


def upgrade() -> None:
    op.create_index(
        "ix_components_dependencies",
        "components",
        ["id"],
        unique=False,
        postgresql_where=sa.text(HAS_DEPENDENCIES),
        sqlite_where=sa.text(HAS_DEPENDENCIES),
    )


def downgrade() -> None:
    op.drop_index("ix_components_dependencies", table_name="components")
