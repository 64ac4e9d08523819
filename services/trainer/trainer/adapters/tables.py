"""Tables of the `trainer` schema (SQLAlchemy Core). Created by migrations/versions/trainer_*."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from servicekit.db import inbox_table, outbox_table
from servicekit.jobstore import job_columns

from .. import SCHEMA

metadata = sa.MetaData(schema=SCHEMA)
inbox = inbox_table(metadata)
outbox = outbox_table(metadata)

jobs = sa.Table(
    "jobs",
    metadata,
    *job_columns("job_id"),
    sa.Column("dataset_id", sa.Text, nullable=False),
    sa.Column("base_model", sa.Text, nullable=False),
    sa.Column("train_uri", sa.Text, nullable=False),
    sa.Column("val_uri", sa.Text),
    sa.Column("last_checkpoint_uri", sa.Text),
    sa.Column("last_checkpoint_step", sa.Integer),
    sa.Column("adapter_uri", sa.Text),
    sa.Column("metrics", JSONB),
    sa.Column("steps", sa.Integer),
)
