"""agent_runner: trajectories, inbox, outbox

Revision ID: agent_runner_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from migrations.messaging_tables import create_schema_with_messaging, drop_schema

revision = "agent_runner_0001"
down_revision = None
branch_labels = ("agent_runner",)
depends_on = None

S = "agent_runner"


def upgrade() -> None:
    create_schema_with_messaging(S)
    op.create_table(
        "trajectories",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("subject", sa.Text),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("answer", sa.Text),
        sa.Column("messages", JSONB, nullable=False, comment="every message of the run, OpenAI format"),
        sa.Column("tools", JSONB, nullable=False),
        sa.Column("steps", JSONB, nullable=False, comment="model turns, tool calls, results, timings"),
        sa.Column("options", JSONB, nullable=False),
        sa.Column("usage", JSONB, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("engine", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )
    op.create_index("ix_trajectories_model_completed", "trajectories", ["model_version", "completed_at"], schema=S)


def downgrade() -> None:
    drop_schema(S)
