"""Alembic environment. The URL comes from DATABASE__URL (the services' setting), run synchronously
through psycopg. Each service's schema is its own branch: `alembic upgrade heads` applies all."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool


def sync_url() -> str:
    url = os.environ.get("DATABASE__URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/agentloop")
    return url.replace("+asyncpg", "+psycopg")


def run() -> None:
    engine = create_engine(sync_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, version_table_schema="public")
        with context.begin_transaction():
            context.run_migrations()


run()
