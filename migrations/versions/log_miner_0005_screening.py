"""log_miner: the inputs the prompt-injection screen fired on (user, system and client tool messages)

Revision ID: log_miner_0005
Revises: log_miner_0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "log_miner_0005"
down_revision = "log_miner_0004"
branch_labels = None
depends_on = None

S = "log_miner"


def upgrade() -> None:
    op.add_column("interactions", sa.Column(
        "screening", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb"),
        comment="AgentRunFinished.screening: messages of the request the screen fired on (tool results: their step)"),
        schema=S)


def downgrade() -> None:
    op.drop_column("interactions", "screening", schema=S)
