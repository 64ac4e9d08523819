"""log_miner: interactions, feedback, taxonomy counts, datasets

Revision ID: log_miner_0002
Revises: log_miner_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "log_miner_0002"
down_revision = "log_miner_0001"
branch_labels = None
depends_on = None

S = "log_miner"


def upgrade() -> None:
    op.create_table(
        "interactions",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("engine", sa.Text, nullable=False),
        sa.Column("subject", sa.Text),
        sa.Column("messages", JSONB, nullable=False, comment="the whole conversation, OpenAI format"),
        sa.Column("tools", JSONB, nullable=False),
        sa.Column("steps", JSONB, nullable=False, comment="TrajectoryStep list as the runner recorded it"),
        sa.Column("usage", JSONB, nullable=False),
        sa.Column("label", sa.Text, nullable=False, comment="primary taxonomy label (see log_miner.domain.taxonomy)"),
        sa.Column("labels", JSONB, nullable=False, comment="every label that applies"),
        sa.Column("example_kind", sa.Text, comment="success | corrected: the run yields a training example"),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("classified_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )
    op.create_index("ix_interactions_received", "interactions", ["received_at"], schema=S)
    op.create_index("ix_interactions_logged", "interactions", ["logged_at"], schema=S)
    op.create_index(
        "ix_interactions_examples", "interactions", ["classified_at"], schema=S,
        postgresql_where=sa.text("example_kind IS NOT NULL"),
    )

    op.create_table(
        "feedback",
        sa.Column("feedback_id", sa.Text, primary_key=True),
        sa.Column("run_id", sa.Text, nullable=False, comment="may arrive before its interaction"),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("rating", sa.SmallInteger, nullable=False),
        sa.Column("corrected_answer", sa.Text),
        sa.Column("corrected_tool_calls", JSONB),
        sa.Column("comment", sa.Text),
        sa.Column("submitted_by", sa.Text, nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )
    op.create_index("ix_feedback_run", "feedback", ["run_id", "submitted_at"], schema=S)

    op.create_table(
        "taxonomy_counts",
        sa.Column("model_version", sa.Text, primary_key=True),
        sa.Column("label", sa.Text, primary_key=True),
        sa.Column("runs", sa.BigInteger, nullable=False, server_default="0",
                  comment="runs whose primary label this is now (a relabel moves a run)"),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )

    op.execute(sa.text(f"CREATE SEQUENCE {S}.dataset_version_seq"))
    op.create_table(
        "datasets",
        sa.Column("dataset_id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False, unique=True),
        sa.Column("train_uri", sa.Text, nullable=False),
        sa.Column("val_uri", sa.Text, nullable=False),
        sa.Column("manifest_uri", sa.Text, nullable=False),
        sa.Column("train_sha256", sa.Text, nullable=False),
        sa.Column("val_sha256", sa.Text, nullable=False),
        sa.Column("counts", JSONB, nullable=False),
        sa.Column("sources", JSONB, nullable=False, comment="per-source counts as in the manifest"),
        sa.Column("source_run_ids", JSONB, nullable=False),
        sa.Column("feedback_ids", JSONB, nullable=False),
        sa.Column("trigger", sa.Text, nullable=False, comment="operator | policy:<reason>"),
        sa.Column("request_id", sa.Text),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("job_id", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )
    op.create_index("ix_datasets_created", "datasets", ["created_at"], schema=S)


def downgrade() -> None:
    op.drop_table("datasets", schema=S)
    op.execute(sa.text(f"DROP SEQUENCE IF EXISTS {S}.dataset_version_seq"))
    op.drop_table("taxonomy_counts", schema=S)
    op.drop_table("feedback", schema=S)
    op.drop_table("interactions", schema=S)
