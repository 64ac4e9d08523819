"""Tables of the `evaluator` schema (SQLAlchemy Core). Created by migrations/versions/evaluator_*."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from servicekit.db import inbox_table, outbox_table
from servicekit.jobstore import job_columns

from .. import SCHEMA

metadata = sa.MetaData(schema=SCHEMA)
inbox = inbox_table(metadata)
outbox = outbox_table(metadata)

evaluations = sa.Table(
    "evaluations",
    metadata,
    *job_columns("evaluation_id"),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("job_id", sa.Text),
    sa.Column("passed", sa.Boolean),
    sa.Column("quantization", sa.Text),
    sa.Column("report_uri", sa.Text),
)

baseline_scores = sa.Table(
    "baseline_scores",
    metadata,
    sa.Column("model_version", sa.Text, primary_key=True),
    sa.Column("quantization", sa.Text, primary_key=True),
    sa.Column("suite_key", sa.Text, primary_key=True),
    sa.Column("suite", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("per_category", JSONB, nullable=False),
    sa.Column("details", JSONB, nullable=False),
    sa.Column("items", JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)
