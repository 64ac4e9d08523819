"""gateway: api keys, run index, feedback, audit log, inbox, outbox

Revision ID: gateway_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from migrations.messaging_tables import create_schema_with_messaging, drop_schema

revision = "gateway_0001"
down_revision = None
branch_labels = ("gateway",)
depends_on = None

S = "gateway"


def upgrade() -> None:
    create_schema_with_messaging(S)
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.Text, primary_key=True),
        sa.Column("secret_hash", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("role IN ('user', 'operator', 'admin')", name="api_keys_role"),
        schema=S,
    )
    op.create_index("ix_api_keys_name", "api_keys", ["name"], schema=S)
    op.create_table(
        "runs",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("request", JSONB, nullable=False),
        sa.Column("outcome", sa.Text),
        sa.Column("answer", sa.Text),
        sa.Column("steps", JSONB),
        sa.Column("client_tool_calls", JSONB),
        sa.Column("usage", JSONB),
        sa.Column("model_version", sa.Text),
        sa.Column("engine", sa.Text),
        sa.Column("error_code", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('queued', 'completed', 'failed')", name="runs_status"),
        schema=S,
    )
    op.create_index("ix_runs_subject_created", "runs", ["subject", "created_at"], schema=S)
    op.create_table(
        "feedback",
        sa.Column("feedback_id", sa.Text, primary_key=True),
        sa.Column("run_id", sa.Text, sa.ForeignKey(f"{S}.runs.run_id"), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("rating", sa.SmallInteger, nullable=False),
        sa.Column("corrected_answer", sa.Text),
        sa.Column("corrected_tool_calls", JSONB),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )
    op.create_index("ix_feedback_run", "feedback", ["run_id"], schema=S)
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("details", JSONB),
        sa.Column("client_ip", sa.Text),
        schema=S,
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"], schema=S)


def downgrade() -> None:
    drop_schema(S)
