"""The Xet store: `xet_xorbs` (verified xorbs and their chunk index), `xet_files` (a file's terms
and sha256), `xet_file_xorbs` (the xorbs each file uses), `xet_dedup_chunks` (chunks the global dedup query answers for), `xet_shards`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "xet_xorbs",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("chunk_count", sa.Integer, nullable=False),
        sa.Column("unpacked_bytes", sa.BigInteger, nullable=False),
        sa.Column("chunk_index", sa.LargeBinary, nullable=False),
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_xet_xorbs_repo_id", "xet_xorbs", ["repo_id"])
    op.create_table(
        "xet_files",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("terms", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_xet_files_sha256", "xet_files", ["sha256"])
    op.create_table(
        "xet_dedup_chunks",
        sa.Column("chunk", sa.String(64), primary_key=True),
        sa.Column("xorb", sa.String(64), sa.ForeignKey("xet_xorbs.hash", ondelete="CASCADE"), nullable=False),
    )
    op.create_table(
        "xet_file_xorbs",
        sa.Column("file", sa.String(64), sa.ForeignKey("xet_files.hash", ondelete="CASCADE"), primary_key=True),
        sa.Column("xorb", sa.String(64), primary_key=True),
    )
    op.create_index("ix_xet_file_xorbs_xorb", "xet_file_xorbs", ["xorb"])
    op.create_table(
        "xet_shards",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_xet_shards_repo_id", "xet_shards", ["repo_id"])


def downgrade() -> None:
    op.drop_table("xet_shards")
    op.drop_table("xet_dedup_chunks")
    op.drop_table("xet_file_xorbs")
    op.drop_table("xet_files")
    op.drop_table("xet_xorbs")
