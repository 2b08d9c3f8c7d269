"""users: a unique index on lower(username), so names that differ only in case cannot both exist
(the check before an insert left a window where two concurrent creations both passed).

A database that already holds such names is not changed behind the admin's back (renaming or
disabling an account would lock a person out): the upgrade stops with the clashing names and what to
do, and the guard does not start until one account of each group is renamed or deleted.

Revision ID: 0900_username_case_unique
Revises: 0890_lease_fillfactor
Create Date: 2026-12-06 19:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0900_username_case_unique"
down_revision = "0890_lease_fillfactor"
branch_labels = None
depends_on = None

INDEX = "uq_users_username_lower"


class CaseDuplicateUsernames(RuntimeError):
    pass


def _clashes() -> list[list[str]]:
    rows = op.get_bind().execute(
        sa.text(
            "SELECT id, username FROM users WHERE lower(username) IN "
            "(SELECT lower(username) FROM users GROUP BY lower(username) HAVING count(*) > 1) "
            "ORDER BY lower(username), id"
        )
    )
    groups: dict[str, list[str]] = {}
    for user_id, username in rows:
        groups.setdefault(username.lower(), []).append(f"{username!r} (id {user_id})")
    return list(groups.values())


def upgrade() -> None:
    clashes = _clashes()
    if clashes:
        listed = "; ".join(", ".join(group) for group in clashes)
        raise CaseDuplicateUsernames(
            "usernames that differ only in case cannot both exist any more, and these do: "
            f"{listed}. Keep one account of each group: rename the others "
            "(UPDATE users SET username = '<new name>' WHERE id = <id>) or delete them "
            "(DELETE FROM users WHERE id = <id>), then start the guard again."
        )
    op.create_index(INDEX, "users", [sa.text("lower(username)")], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="users")
