"""SQLAlchemy Core tables of the `agent_runner` schema (created by migrations/versions/agent_runner_*)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from servicekit.db import inbox_table, outbox_table

from .. import SCHEMA

metadata = sa.MetaData(schema=SCHEMA)

inbox = inbox_table(metadata)
outbox = outbox_table(metadata)

trajectories = sa.Table(
    "trajectories",
    metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("subject", sa.Text),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("answer", sa.Text),
    sa.Column("messages", JSONB, nullable=False),
    sa.Column("tools", JSONB, nullable=False),
    sa.Column("steps", JSONB, nullable=False),
    sa.Column("options", JSONB, nullable=False),
    sa.Column("usage", JSONB, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("engine", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("completed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)
