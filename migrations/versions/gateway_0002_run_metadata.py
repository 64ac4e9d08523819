"""gateway: runs found by their metadata tags (GET /v1/runs?metadata=key:value)

Revision ID: gateway_0002
Revises: gateway_0001
"""

from alembic import op

revision = "gateway_0002"
down_revision = "gateway_0001"
branch_labels = None
depends_on = None

S = "gateway"


def upgrade() -> None:
    op.execute(f"CREATE INDEX ix_runs_metadata ON {S}.runs USING gin ((request -> 'metadata') jsonb_path_ops)"
               " WHERE request ? 'metadata'")


def downgrade() -> None:
    op.drop_index("ix_runs_metadata", table_name="runs", schema=S)
