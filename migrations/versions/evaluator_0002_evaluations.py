"""evaluator: evaluations (lease, attempts, verdict) and production's cached suite scores

Revision ID: evaluator_0002
Revises: evaluator_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "evaluator_0002"
down_revision = "evaluator_0001"
branch_labels = None
depends_on = None

S = "evaluator"


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("evaluation_id", sa.Text, primary_key=True, comment="derived from the export.completed message id"),
        sa.Column("message_id", sa.Text, nullable=False, unique=True, comment="the export.completed that asked for it"),
        sa.Column("correlation_id", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False, comment="the candidate"),
        sa.Column("job_id", sa.Text),
        sa.Column("request", JSONB, nullable=False, comment="the whole ExportCompleted body"),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.Text, comment="instance:token holding the evaluation; NULL when free"),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True),
                  comment="runnable again after this (database clock); also the retry delay after a failure"),
        sa.Column("progress", JSONB, comment="latest progress, written with each heartbeat"),
        sa.Column("passed", sa.Boolean),
        sa.Column("quantization", sa.Text, comment="the quant that passed"),
        sa.Column("report_uri", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('queued', 'running', 'completed', 'failed')", name="ck_evaluations_status"),
        schema=S,
    )
    op.create_index("ix_evaluations_runnable", "evaluations", ["created_at"], schema=S,
                    postgresql_where=sa.text("status IN ('queued', 'running')"))
    op.create_index("ix_evaluations_version", "evaluations", ["model_version"], schema=S)
    op.create_table(
        "baseline_scores",
        sa.Column("model_version", sa.Text, primary_key=True),
        sa.Column("quantization", sa.Text, primary_key=True),
        sa.Column("suite_key", sa.Text, primary_key=True,
                  comment="hash of the suite content, measured suites and generation bounds"),
        sa.Column("suite", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("per_category", JSONB, nullable=False),
        sa.Column("details", JSONB, nullable=False),
        sa.Column("items", JSONB, nullable=False, comment="per-item verdicts, for reports"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("baseline_scores", schema=S)
    op.drop_table("evaluations", schema=S)
