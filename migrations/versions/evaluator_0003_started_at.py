"""evaluator: evaluations get `started_at` (first claim), the column every leased job table has

Revision ID: evaluator_0003
Revises: evaluator_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "evaluator_0003"
down_revision = "evaluator_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("evaluations", sa.Column("started_at", sa.DateTime(timezone=True), comment="first claim"),
                  schema="evaluator")


def downgrade() -> None:
    op.drop_column("evaluations", "started_at", schema="evaluator")
