"""log_miner: the GroupThink confidence of each run (for the label queue)

Revision ID: log_miner_0003
Revises: log_miner_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "log_miner_0003"
down_revision = "log_miner_0002"
branch_labels = None
depends_on = None

S = "log_miner"


def upgrade() -> None:
    op.add_column(
        "interactions",
        sa.Column("confidence", sa.Float,
                  comment="GroupThink: the lowest agreement of the run's model turns (1.0 = unanimous); null: greedy"),
        schema=S,
    )
    # The label queue reads the least confident runs first.
    op.create_index(
        "ix_interactions_confidence", "interactions", ["confidence", "received_at"], schema=S,
        postgresql_where=sa.text("confidence IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_interactions_confidence", table_name="interactions", schema=S)
    op.drop_column("interactions", "confidence", schema=S)
