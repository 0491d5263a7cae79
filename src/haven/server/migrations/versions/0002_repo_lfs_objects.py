"""LFS objects tied to repositories: `repo_lfs_objects(repo_id, oid)`.

A repository serves (LFS batch download, verify, object GET, resolve) only the objects listed
for it. Existing deployments are backfilled from their repositories' refs when the server first
starts on the new schema (`haven.server.api.lfsrefs.backfill`).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "repo_lfs_objects",
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("oid", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("repo_id", "oid"),
    )
    op.create_index("ix_repo_lfs_objects_oid", "repo_lfs_objects", ["oid"])


def downgrade() -> None:
    op.drop_index("ix_repo_lfs_objects_oid", table_name="repo_lfs_objects")
    op.drop_table("repo_lfs_objects")
