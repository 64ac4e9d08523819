"""The exporter's tables (schema `exporter`; migrations exporter_0001/0002). The registry's tables
belong to `modelregistry` (schema `registry`)."""

from __future__ import annotations

import sqlalchemy as sa

from servicekit.db import inbox_table, outbox_table

from .. import SCHEMA

metadata = sa.MetaData(schema=SCHEMA)
inbox = inbox_table(metadata)
outbox = outbox_table(metadata)

INBOX = f"{SCHEMA}.inbox"
OUTBOX = f"{SCHEMA}.outbox"
JOBS = f"{SCHEMA}.export_jobs"
