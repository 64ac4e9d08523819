"""exporter: schema with inbox and outbox

Revision ID: exporter_0001
Revises:
"""

from migrations.messaging_tables import create_schema_with_messaging, drop_schema

revision = "exporter_0001"
down_revision = None
branch_labels = ("exporter",)
depends_on = None


def upgrade() -> None:
    create_schema_with_messaging("exporter")


def downgrade() -> None:
    drop_schema("exporter")
