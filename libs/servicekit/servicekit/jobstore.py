"""Leased jobs in Postgres, written once for the trainer, the evaluator and the exporter.

A job table has the shape of `job_columns()` (the key, the request that created it, the lease,
attempts, progress, the error and the times) plus the service's own columns. The queue:

- `accept`: in one transaction, the inbox claim of the request and a queued row (False for a
  redelivered message, or for a key already on record);
- `claim`: leases the oldest runnable row (queued, or running with an expired lease) to an owner;
- `heartbeat`, `update`, `start_attempt`, `release`, `settle`: writes under the lease. Each one
  matches `lease_owner = owner AND status = 'running'`, so an instance whose lease was taken
  over changes nothing and is told so (False / None);
- `settle`: the outcome, its events staged in the outbox (and, through `within`, any other write
  that must commit with it), one transaction; the events are published after commit.

Leases use the database clock (`now()`), so instances with skewed clocks agree on expiry. Rows
come back as plain dicts of column → value (JSONB as Python values); the service's store maps
them to its domain job. `tests/servicekit/fakes.FakeJobQueue` keeps the same rules in memory.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from contracts import Contract

from .uow import UnitOfWork

Row = dict[str, Any]
Within = Callable[[Any], Awaitable[None]]  # gets the transaction's connection

RUNNABLE = ("queued", "running")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def job_columns(key: str) -> list[sa.Column]:
    """The columns every job table has (SQLAlchemy, for the table definitions and migrations)."""
    return [
        sa.Column(key, sa.Text, primary_key=True),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("correlation_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("request", JSONB, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("progress", JSONB),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    ]


class JobQueue(Protocol):
    """The port the services' job stores are built on (Postgres here, a fake in unit tests)."""

    async def accept(self, request: Contract, key: str, **columns: Any) -> bool: ...

    async def claim(self, owner: str, ttl_s: float) -> Row | None: ...

    async def heartbeat(self, key: str, owner: str, ttl_s: float, **columns: Any) -> bool:
        """Extends the lease; columns given as None keep their value."""
        ...

    async def update(self, key: str, owner: str, **columns: Any) -> bool: ...

    async def start_attempt(self, key: str, owner: str) -> int | None: ...

    async def release(self, key: str, owner: str, *, error: str | None, retry_after_s: float,
                      refund_attempt: bool) -> bool: ...

    async def settle(self, key: str, owner: str, status: str, events: Sequence[Contract] = (),
                     within: Within | None = None, **columns: Any) -> bool: ...

    async def counts(self) -> dict[str, int]: ...

    async def latest_finished(self) -> Row | None: ...


def _names(columns: dict[str, Any]) -> list[str]:
    for name in columns:
        if not _NAME.match(name):
            raise ValueError(f"not a column name: {name!r}")
    return list(columns)


class PostgresJobQueue:
    """`table` (schema-qualified) keyed by `key`, in the schema whose inbox/outbox `uow` writes."""

    def __init__(self, uow: UnitOfWork, table: str, key: str) -> None:
        self.uow = uow
        self.table = table
        self.key = key
        self._leased = f"{key} = $1 AND lease_owner = $2 AND status = 'running'"
        self._claim = f"""
UPDATE {table} SET status = 'running', lease_owner = $1, lease_expires_at = now() + $2::interval,
                   started_at = COALESCE(started_at, now()), updated_at = now()
WHERE {key} = (
    SELECT {key} FROM {table}
    WHERE status IN ('queued', 'running') AND (lease_expires_at IS NULL OR lease_expires_at < now())
    ORDER BY created_at, {key} LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING *"""

    @property
    def _pool(self):  # noqa: ANN202 - asyncpg.Pool
        return self.uow.db.pool

    def _set(self, columns: dict[str, Any], first: int, *, keep_nulls: bool = False) -> str:
        """`, a = $first, b = $first+1`; with keep_nulls a None leaves the column as it is."""
        sets = []
        for i, name in enumerate(_names(columns), start=first):
            sets.append(f", {name} = COALESCE(${i}, {name})" if keep_nulls else f", {name} = ${i}")
        return "".join(sets)

    async def accept(self, request: Contract, key: str, **columns: Any) -> bool:
        env = request.envelope
        names = ["message_id", "correlation_id", "status", "request", *_names(columns)]
        values = [env.message_id, env.correlation_id, "queued", request.model_dump(mode="json"), *columns.values()]
        params = ", ".join(f"${i}" for i in range(2, len(values) + 2))
        async with self.uow.begin(request) as tx:
            if not tx.fresh:
                return False
            row = await tx.conn.fetchval(
                f"""INSERT INTO {self.table} ({self.key}, {", ".join(names)}) VALUES ($1, {params})
                    ON CONFLICT DO NOTHING RETURNING {self.key}""",
                key, *values,
            )
            return row is not None

    async def claim(self, owner: str, ttl_s: float) -> Row | None:
        row = await self._pool.fetchrow(self._claim, owner, timedelta(seconds=ttl_s))
        return dict(row) if row is not None else None

    async def _write(self, key: str, owner: str, set_sql: str, *values: Any, returning: str | None = None) -> Any:
        return await self._pool.fetchval(
            f"UPDATE {self.table} SET updated_at = now(){set_sql} WHERE {self._leased} "
            f"RETURNING {returning or self.key}",
            key, owner, *values,
        )

    async def heartbeat(self, key: str, owner: str, ttl_s: float, **columns: Any) -> bool:
        set_sql = ", lease_expires_at = now() + $3::interval" + self._set(columns, 4, keep_nulls=True)
        return await self._write(key, owner, set_sql, timedelta(seconds=ttl_s), *columns.values()) is not None

    async def update(self, key: str, owner: str, **columns: Any) -> bool:
        return await self._write(key, owner, self._set(columns, 3), *columns.values()) is not None

    async def start_attempt(self, key: str, owner: str) -> int | None:
        return await self._write(key, owner, ", attempts = attempts + 1", returning="attempts")

    async def release(self, key: str, owner: str, *, error: str | None, retry_after_s: float,
                      refund_attempt: bool) -> bool:
        set_sql = """, lease_owner = NULL,
            lease_expires_at = CASE WHEN $3::float8 > 0 THEN now() + make_interval(secs => $3) END,
            last_error = COALESCE($4, last_error),
            attempts = CASE WHEN $5 THEN greatest(attempts - 1, 0) ELSE attempts END"""
        return await self._write(key, owner, set_sql, float(retry_after_s), error, refund_attempt) is not None

    async def settle(self, key: str, owner: str, status: str, events: Sequence[Contract] = (),
                     within: Within | None = None, **columns: Any) -> bool:
        set_sql = ", status = $3, lease_owner = NULL, lease_expires_at = NULL, finished_at = now()"
        set_sql += self._set(columns, 4)
        async with self.uow.begin() as tx:
            row = await tx.conn.fetchval(
                f"UPDATE {self.table} SET updated_at = now(){set_sql} WHERE {self._leased} RETURNING {self.key}",
                key, owner, status, *columns.values(),
            )
            if row is None:
                return False
            if within is not None:
                await within(tx.conn)
            tx.stage(*events)
        return True

    async def counts(self) -> dict[str, int]:
        rows = await self._pool.fetch(f"SELECT status, count(*) AS n FROM {self.table} GROUP BY status")
        return {r["status"]: r["n"] for r in rows}

    async def latest_finished(self) -> Row | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {self.table} WHERE finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1"
        )
        return dict(row) if row is not None else None
