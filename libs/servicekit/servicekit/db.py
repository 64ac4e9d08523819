"""Postgres access and the inbox/outbox tables every service has.

Each service owns one Postgres schema; its inbox and outbox live there. Every write path runs on
asyncpg (`AsyncpgPool`; the inbox/outbox statements are `messagesql`'s, the unit of work `uow`'s,
leased jobs `jobstore`'s): one prepared statement on an asyncpg connection costs ~0.15 ms of
CPU, the same transaction through SQLAlchemy's async layer (greenlet hop, pool checkout with
pre-ping, BEGIN/COMMIT) ~1 ms. SQLAlchemy Core stays for the table definitions (Alembic) and
for a few composed reads off the hot path (`make_engine`). Decision 0015.
"""

from __future__ import annotations

import json

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """`postgresql+asyncpg://…` (the services' DATABASE__URL) → `postgresql://…`."""
    scheme, sep, rest = sqlalchemy_url.partition("://")
    return "postgresql" + sep + rest if scheme.startswith("postgresql") else sqlalchemy_url


async def _jsonb_codec(conn: asyncpg.Connection) -> None:
    # JSONB in and out as Python values (asyncpg's default is text).
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Instead of asyncpg's reset query (RESET ALL, UNLISTEN *, ...) on every release: the hot
    paths leave no session state behind (an open transaction is still rolled back by asyncpg)."""


async def asyncpg_pool(url: str, *, min_size: int = 0, max_size: int = 10) -> asyncpg.Pool:
    """A pool for hot-path statements; JSONB columns take and give Python values."""
    return await asyncpg.create_pool(asyncpg_dsn(url), min_size=min_size, max_size=max_size, init=_jsonb_codec,
                                     reset=_keep_session)


class AsyncpgPool:
    """An adapter's own asyncpg pool (see `asyncpg_pool`): `open()` in a start-up hook, `close()`
    at shutdown, `pool` in between; `what` names the adapter in the error of a use before open."""

    def __init__(self, database_url: str, *, what: str, min_size: int = 0, max_size: int = 10) -> None:
        self.database_url = database_url
        self.what = what
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = await asyncpg_pool(self.database_url, min_size=self.min_size, max_size=self.max_size)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.what} is not open (its start-up hook has not run)")
        return self._pool


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
