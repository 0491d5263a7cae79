"""The lists' search over card text and their facet counts in SQL: `repos.card_text` (the card's
body as lowercase plain text, bounded) and `repo_facets(repo_id, facet, value)` (the filter values
that select each repository, counted with one GROUP BY over a covering index; its `term` rows are
the tag-like filter values, so `filter=`, `license=` ... select in SQL); an index on
`repos(type, private)` counts a list of every visible repository from the index alone.

Both are written by the indexer, which reads the repositories' files: this migration cannot fill
them, so it marks every repository for re-indexing (`repos.sha = ''`), and the server re-indexes
the marked ones when it starts (`index.reindex_marked`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("repos") as batch:
        batch.add_column(sa.Column("card_text", sa.Text, nullable=True))
    op.create_table(
        "repo_facets",
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("facet", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(200), primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),
    )
    op.create_index("ix_repo_facets_count", "repo_facets", ["type", "facet", "value", "repo_id"])
    op.create_index("ix_repos_type_private", "repos", ["type", "private"])
    op.execute("UPDATE repos SET sha = ''")


def downgrade() -> None:
    op.drop_index("ix_repos_type_private", "repos")
    op.drop_table("repo_facets")
    with op.batch_alter_table("repos") as batch:
        batch.drop_column("card_text")
