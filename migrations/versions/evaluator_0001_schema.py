"""evaluator: schema with inbox and outbox

Revision ID: evaluator_0001
Revises:
"""

from migrations.messaging_tables import create_schema_with_messaging, drop_schema

revision = "evaluator_0001"
down_revision = None
branch_labels = ("evaluator",)
depends_on = None


def upgrade() -> None:
    create_schema_with_messaging("evaluator")


def downgrade() -> None:
    drop_schema("evaluator")
