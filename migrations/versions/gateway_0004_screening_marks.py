"""gateway: operators' marks on screened texts (a false positive is marked benign), training data
for the screening classifier (`python -m screening.train CORPUS --extra MARKS.jsonl`)

Revision ID: gateway_0004
Revises: gateway_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "gateway_0004"
down_revision = "gateway_0003"
branch_labels = None
depends_on = None

S = "gateway"


def upgrade() -> None:
    op.create_table(
        "screening_marks",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("label", sa.Text, nullable=False, comment="benign (a false positive) or malicious (a miss)"),
        sa.Column("source", sa.Text, nullable=False, comment="user, system or tool"),
        sa.Column("note", sa.Text),
        sa.Column("marked_by", sa.Text, nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("label IN ('benign', 'malicious')", name="screening_marks_label"),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("screening_marks", schema=S)
