"""The indexer's bounded, incremental reading: `safetensors_facts(oid, parameters, error)` caches
what each safetensors header says, by content id, so a header is read once per object and never
again on later commits; `repos.index_errors` records the head's files the indexer could not read.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "safetensors_facts",
        sa.Column("oid", sa.String(64), primary_key=True),
        sa.Column("parameters", sa.JSON, nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
    )
    with op.batch_alter_table("repos") as batch:
        batch.add_column(sa.Column("index_errors", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("repos") as batch:
        batch.drop_column("index_errors")
    op.drop_table("safetensors_facts")
