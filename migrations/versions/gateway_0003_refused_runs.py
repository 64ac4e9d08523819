"""gateway: a run request the injection screen blocks is recorded as a run with status `refused`

Revision ID: gateway_0003
Revises: gateway_0002
"""

from alembic import op

revision = "gateway_0003"
down_revision = "gateway_0002"
branch_labels = None
depends_on = None

S = "gateway"


def upgrade() -> None:
    op.drop_constraint("runs_status", "runs", schema=S, type_="check")
    op.create_check_constraint("runs_status", "runs", "status IN ('queued', 'completed', 'failed', 'refused')",
                               schema=S)


def downgrade() -> None:
    op.execute(f"DELETE FROM {S}.runs WHERE status = 'refused'")
    op.drop_constraint("runs_status", "runs", schema=S, type_="check")
    op.create_check_constraint("runs_status", "runs", "status IN ('queued', 'completed', 'failed')", schema=S)
