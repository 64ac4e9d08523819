"""SQLAlchemy Core tables of the `log_miner` schema (created by migrations/versions/log_miner_*)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from servicekit.db import inbox_table, outbox_table

from .. import SCHEMA

metadata = sa.MetaData(schema=SCHEMA)

inbox = inbox_table(metadata)
outbox = outbox_table(metadata)

interactions = sa.Table(
    "interactions",
    metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("engine", sa.Text, nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("messages", JSONB, nullable=False),
    sa.Column("tools", JSONB, nullable=False),
    sa.Column("steps", JSONB, nullable=False),
    sa.Column("usage", JSONB, nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("labels", JSONB, nullable=False),
    sa.Column("example_kind", sa.Text),
    sa.Column("confidence", sa.Float),
    sa.Column("screening", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),  # inputs screened
    sa.Column("transcript_key", sa.Text),
    sa.Column("continues", sa.Text),  # the run this one continues (domain.conversations)
    sa.Column("session_id", sa.Text),  # the client's session_id tag
    sa.Column("conversation_id", sa.Text),  # the conversation's first run
    sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column("classified_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("feedback_id", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("rating", sa.SmallInteger, nullable=False),
    sa.Column("corrected_answer", sa.Text),
    sa.Column("corrected_tool_calls", JSONB),
    sa.Column("comment", sa.Text),
    sa.Column("submitted_by", sa.Text, nullable=False),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)

taxonomy_counts = sa.Table(
    "taxonomy_counts",
    metadata,
    sa.Column("model_version", sa.Text, primary_key=True),
    sa.Column("label", sa.Text, primary_key=True),
    sa.Column("runs", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("dataset_id", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False, unique=True),
    sa.Column("train_uri", sa.Text, nullable=False),
    sa.Column("val_uri", sa.Text, nullable=False),
    sa.Column("manifest_uri", sa.Text, nullable=False),
    sa.Column("train_sha256", sa.Text, nullable=False),
    sa.Column("val_sha256", sa.Text, nullable=False),
    sa.Column("counts", JSONB, nullable=False),
    sa.Column("sources", JSONB, nullable=False),
    sa.Column("source_run_ids", JSONB, nullable=False),
    sa.Column("feedback_ids", JSONB, nullable=False),
    sa.Column("trigger", sa.Text, nullable=False),
    sa.Column("request_id", sa.Text),
    sa.Column("requested_by", sa.Text, nullable=False),
    sa.Column("job_id", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)

dataset_version_seq = sa.Sequence("dataset_version_seq", metadata=metadata)
