"""log_miner: conversations across runs (a client's own tool loop, one completion per model turn)

Revision ID: log_miner_0004
Revises: log_miner_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "log_miner_0004"
down_revision = "log_miner_0003"
branch_labels = None
depends_on = None

S = "log_miner"


def upgrade() -> None:
    op.add_column("interactions", sa.Column(
        "transcript_key", sa.Text, comment="domain.conversations.transcript_key of the run's whole transcript"),
        schema=S)
    op.add_column("interactions", sa.Column(
        "continues", sa.Text, comment="the run whose whole transcript this run's messages begin with"), schema=S)
    op.add_column("interactions", sa.Column(
        "session_id", sa.Text, comment="the client's session_id tag: its runs are one conversation"), schema=S)
    op.add_column("interactions", sa.Column(
        "conversation_id", sa.Text, comment="the first run of the conversation (the run itself when it starts one)"),
        schema=S)
    op.create_index("ix_interactions_transcript_key", "interactions", ["transcript_key"], schema=S)
    op.create_index("ix_interactions_continues", "interactions", ["continues"], schema=S,
                    postgresql_where=sa.text("continues IS NOT NULL"))
    op.create_index("ix_interactions_conversation", "interactions", ["conversation_id"], schema=S)
    op.create_index("ix_interactions_session", "interactions", ["session_id", "logged_at"], schema=S,
                    postgresql_where=sa.text("session_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_interactions_session", table_name="interactions", schema=S)
    op.drop_index("ix_interactions_conversation", table_name="interactions", schema=S)
    op.drop_index("ix_interactions_continues", table_name="interactions", schema=S)
    op.drop_index("ix_interactions_transcript_key", table_name="interactions", schema=S)
    for column in ("conversation_id", "session_id", "continues", "transcript_key"):
        op.drop_column("interactions", column, schema=S)
