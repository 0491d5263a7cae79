"""`xet_xorbs.referenced_at`: when a client was last told it may name the xorb in a shard without
sending it (its upload, an upload answered "already stored", a dedup answer). `haven admin gc`
counts its grace from there, so a xorb a client was just told about is not collected before the
client's shard arrives. Existing rows start from their `created_at`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("xet_xorbs", sa.Column("referenced_at", sa.DateTime, nullable=True))
    op.execute("UPDATE xet_xorbs SET referenced_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("xet_xorbs") as batch:
        batch.drop_column("referenced_at")
