"""Create/drop a service schema with its inbox and outbox (the shapes servicekit.db queries)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from servicekit.db import inbox_table, outbox_table


def create_schema_with_messaging(schema: str) -> None:
    op.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
    metadata = sa.MetaData(schema=schema)
    inbox_table(metadata)
    outbox_table(metadata)
    metadata.create_all(op.get_bind())


def drop_schema(schema: str) -> None:
    op.execute(sa.schema.DropSchema(schema, cascade=True, if_exists=True))
