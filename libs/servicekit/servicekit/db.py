"""Postgres access (SQLAlchemy Core on asyncpg) and the inbox/outbox tables every service has.

Each service owns one Postgres schema; its inbox and outbox live there.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def inbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "inbox",
        metadata,
        sa.Column("message_id", sa.Text, primary_key=True),
        sa.Column("message_type", sa.Text, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("message_id", sa.Text, nullable=False, unique=True),
        sa.Column("message_type", sa.Text, nullable=False),
        sa.Column("routing_key", sa.Text, nullable=False),
        sa.Column("body", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Index("ix_outbox_unpublished", "id", postgresql_where=sa.text("published_at IS NULL")),
    )


class Inbox:
    """Idempotent consumption: claim a message id inside the transaction of the side effect."""

    def __init__(self, table: sa.Table) -> None:
        self.table = table

    async def claim(self, conn: AsyncConnection, message_id: str, message_type: str) -> bool:
        """True the first time a message id is seen; False for a duplicate delivery."""
        stmt = (
            insert(self.table)
            .values(message_id=message_id, message_type=message_type)
            .on_conflict_do_nothing(index_elements=["message_id"])
            .returning(self.table.c.message_id)
        )
        return (await conn.execute(stmt)).first() is not None

    async def seen(self, conn: AsyncConnection, message_id: str) -> bool:
        stmt = sa.select(self.table.c.message_id).where(self.table.c.message_id == message_id)
        return (await conn.execute(stmt)).first() is not None
