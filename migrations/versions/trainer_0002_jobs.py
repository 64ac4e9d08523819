"""trainer: training jobs (lease, attempts, checkpoints, result)

Revision ID: trainer_0002
Revises: trainer_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "trainer_0002"
down_revision = "trainer_0001"
branch_labels = None
depends_on = None

S = "trainer"


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.Text, primary_key=True, comment="TrainingRequested.job_id"),
        sa.Column("message_id", sa.Text, nullable=False, comment="the request that created the job"),
        sa.Column("correlation_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("dataset_id", sa.Text, nullable=False),
        sa.Column("base_model", sa.Text, nullable=False, comment="as requested (e.g. bundled)"),
        sa.Column("train_uri", sa.Text, nullable=False),
        sa.Column("val_uri", sa.Text),
        sa.Column("request", JSONB, nullable=False, comment="the whole TrainingRequested body"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0",
                  comment="training processes started (an attempt ended by our own shutdown is refunded)"),
        sa.Column("lease_owner", sa.Text, comment="instance:token holding the job; NULL when free"),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True),
                  comment="runnable again after this (database clock); also the retry delay after a crash"),
        sa.Column("last_checkpoint_uri", sa.Text, comment="s3:// prefix of the latest complete checkpoint"),
        sa.Column("last_checkpoint_step", sa.Integer),
        sa.Column("progress", JSONB, comment="latest progress, written with each heartbeat"),
        sa.Column("adapter_uri", sa.Text),
        sa.Column("metrics", JSONB, comment="TrainingCompleted.metrics"),
        sa.Column("steps", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), comment="first claim"),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('queued', 'running', 'completed', 'failed')", name="ck_jobs_status"),
        schema=S,
    )
    op.create_index(
        "ix_jobs_runnable", "jobs", ["created_at"], schema=S,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_index("ix_jobs_dataset", "jobs", ["dataset_id"], schema=S)


def downgrade() -> None:
    op.drop_table("jobs", schema=S)
