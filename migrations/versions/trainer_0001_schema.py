"""trainer: schema with inbox and outbox

Revision ID: trainer_0001
Revises:
"""

from migrations.messaging_tables import create_schema_with_messaging, drop_schema

revision = "trainer_0001"
down_revision = None
branch_labels = ("trainer",)
depends_on = None


def upgrade() -> None:
    create_schema_with_messaging("trainer")


def downgrade() -> None:
    drop_schema("trainer")
