"""exporter: export jobs (one per training job; lease, attempts, stage, result)

Revision ID: exporter_0002
Revises: exporter_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "exporter_0002"
down_revision = "exporter_0001"
branch_labels = None
depends_on = None

S = "exporter"


def upgrade() -> None:
    op.create_table(
        "export_jobs",
        sa.Column("job_id", sa.Text, primary_key=True, comment="TrainingCompleted.job_id (the training job)"),
        sa.Column("version", sa.Text, nullable=False, comment="the model version it exports to (from the job id)"),
        sa.Column("message_id", sa.Text, nullable=False, comment="the TrainingCompleted that created it"),
        sa.Column("correlation_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("request", JSONB, nullable=False, comment="the whole TrainingCompleted body"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0", comment="export processes started"),
        sa.Column("lease_owner", sa.Text, comment="instance:token holding the job; NULL when free"),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True),
                  comment="claimable again after this (database clock); also the retry delay"),
        sa.Column("stage", sa.Text, comment="latest stage: download, merge, gguf, quantize, parity, upload, ..."),
        sa.Column("progress", JSONB, comment="latest progress, written with each heartbeat"),
        sa.Column("result", JSONB, comment="files, parity, stage seconds of the finished export"),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), comment="first claim"),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('queued', 'running', 'completed', 'failed')", name="ck_export_jobs_status"),
        schema=S,
    )
    op.create_index(
        "ix_export_jobs_runnable", "export_jobs", ["created_at"], schema=S,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_index("ix_export_jobs_finished", "export_jobs", ["finished_at"], schema=S)


def downgrade() -> None:
    op.drop_table("export_jobs", schema=S)
