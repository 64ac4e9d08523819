"""log_miner: schema with inbox and outbox

Revision ID: log_miner_0001
Revises:
"""

from migrations.messaging_tables import create_schema_with_messaging, drop_schema

revision = "log_miner_0001"
down_revision = None
branch_labels = ("log_miner",)
depends_on = None


def upgrade() -> None:
    create_schema_with_messaging("log_miner")


def downgrade() -> None:
    drop_schema("log_miner")
