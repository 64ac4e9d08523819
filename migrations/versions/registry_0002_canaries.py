"""registry: canary rollouts (a share of live runs on a version; at most one running)

Revision ID: registry_0002
Revises: registry_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "registry_0002"
down_revision = "registry_0001"
branch_labels = None
depends_on = None

S = "registry"


def upgrade() -> None:
    op.create_table(
        "canaries",
        sa.Column("canary_id", sa.Text, primary_key=True, comment="the request id of canary.start.requested"),
        sa.Column("version", sa.Text, sa.ForeignKey(f"{S}.model_versions.version"), nullable=False),
        sa.Column("production_version", sa.Text, nullable=False, comment="production when the canary started"),
        sa.Column("share_pct", sa.Float, nullable=False, comment="share of live runs routed to `version`, (0, 100]"),
        sa.Column("mode", sa.Text, nullable=False, comment="canary: the judge decides; ab: a report only"),
        sa.Column("status", sa.Text, nullable=False, comment="running, promoted, rolled_back, stopped, superseded"),
        sa.Column("min_samples", sa.Integer, nullable=False),
        sa.Column("max_duration_s", sa.Integer, nullable=False),
        sa.Column("started_by", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("ended_by", sa.Text),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("report", JSONB, comment="the judge's last report at the end"),
        sa.CheckConstraint("share_pct > 0 AND share_pct <= 100", name="ck_canaries_share"),
        sa.CheckConstraint("mode IN ('canary', 'ab')", name="ck_canaries_mode"),
        schema=S,
    )
    # The database itself keeps a second canary out while one runs.
    op.create_index("ux_canaries_running", "canaries", ["status"], unique=True, schema=S,
                    postgresql_where=sa.text("status = 'running'"))


def downgrade() -> None:
    op.drop_table("canaries", schema=S)
