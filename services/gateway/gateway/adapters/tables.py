"""The gateway's tables (schema `gateway`), as SQLAlchemy Core objects. The migration
`migrations/versions/gateway_0001_schema.py` creates them; keep the two in step."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from servicekit.db import inbox_table, outbox_table

from .. import SCHEMA

metadata = sa.MetaData(schema=SCHEMA)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("secret_hash", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

runs = sa.Table(
    "runs",
    metadata,
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
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("feedback_id", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, sa.ForeignKey(f"{SCHEMA}.runs.run_id"), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("rating", sa.SmallInteger, nullable=False),
    sa.Column("corrected_answer", sa.Text),
    sa.Column("corrected_tool_calls", JSONB),
    sa.Column("comment", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("details", JSONB),
    sa.Column("client_ip", sa.Text),
)

inbox = inbox_table(metadata)
outbox = outbox_table(metadata)
