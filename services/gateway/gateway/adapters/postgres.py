"""Postgres adapters for the gateway's ports off the hot path: the audit log and operator
commands (asyncpg, on the run index's pool, beside its outbox), API keys (SQLAlchemy Core: the
admin entry point runs them on a connection of its own). The run index is in `run_index.py`.

A write that also emits a message stages it in the outbox inside the same transaction; the
use case publishes it after commit, the outbox relay covers crashes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import Contract
from servicekit.db import AsyncpgPool
from servicekit.outbox import Outbox

from ..domain import ApiKeyRecord, AuditEntry, Role, ScreenMark
from . import tables as t

Database = AsyncEngine | AsyncConnection


@contextlib.asynccontextmanager
async def transaction(db: Database) -> AsyncIterator[AsyncConnection]:
    """A transaction on an engine, or on a caller's connection (joining its open transaction)."""
    if isinstance(db, AsyncEngine):
        async with db.begin() as conn:
            yield conn
    elif db.in_transaction():
        yield db
    else:
        async with db.begin():
            yield db


def _audit_row(entry: AuditEntry) -> dict:
    return {
        "subject": entry.subject,
        "role": entry.role,
        "action": entry.action,
        "target": entry.target,
        "outcome": entry.outcome,
        "details": entry.details,
        "client_ip": entry.client_ip,
    }


AUDIT_INSERT = f"""INSERT INTO {t.audit_log.fullname} (subject, role, action, target, outcome, details, client_ip)
    VALUES ($1, $2, $3, $4, $5, $6, $7)"""


def _audit_values(entry: AuditEntry) -> tuple:
    return (entry.subject, entry.role, entry.action, entry.target, entry.outcome, entry.details, entry.client_ip)


class PostgresAuditLog:
    def __init__(self, db: AsyncpgPool) -> None:
        self.db = db

    async def record(self, entry: AuditEntry) -> None:
        await self.db.pool.execute(AUDIT_INSERT, *_audit_values(entry))

    async def recent(self, limit: int) -> list[AuditEntry]:
        rows = await self.db.pool.fetch(
            f"""SELECT subject, role, action, outcome, target, client_ip, details, at FROM {t.audit_log.fullname}
                ORDER BY id DESC LIMIT $1""", limit,
        )
        return [AuditEntry(**dict(row)) for row in rows]


class PostgresOpsStore:
    """An operator command: its audit row and its outbox row in one transaction (the use case
    publishes after commit)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def request(self, entry: AuditEntry, message: Contract) -> None:
        async with self.outbox.db.pool.acquire() as conn, conn.transaction():
            await conn.execute(AUDIT_INSERT, *_audit_values(entry))
            await self.outbox.add(conn, message)


MARKS_INSERT = """INSERT INTO gateway.screening_marks (text, label, source, note, marked_by)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])"""
MARKS_RECENT = """SELECT text, label, source, note, marked_by, marked_at FROM gateway.screening_marks
ORDER BY id DESC LIMIT $1"""


class PostgresScreeningMarks:
    """Operators' marks on screened texts, on the service's asyncpg pool."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def add(self, marks: list[ScreenMark], marked_by: str) -> int:
        columns = [[m.text for m in marks], [m.label for m in marks], [m.source for m in marks],
                   [m.note for m in marks], [marked_by] * len(marks)]
        await self.outbox.db.pool.execute(MARKS_INSERT, *columns)
        return len(marks)

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.outbox.db.pool.fetch(MARKS_RECENT, limit)]


class PostgresApiKeys:
    """API keys; works on an engine (the service) or a caller's connection (the CLI)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        k = t.api_keys
        stmt = sa.select(k.c.key_id, k.c.secret_hash, k.c.role, k.c.name, k.c.revoked_at).where(k.c.key_id == key_id)
        async with transaction(self.db) as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        return ApiKeyRecord(
            key_id=row.key_id, secret_hash=row.secret_hash, role=Role.parse(row.role), name=row.name,
            revoked=row.revoked_at is not None,
        )

    async def touch(self, key_id: str) -> None:
        async with transaction(self.db) as conn:
            await conn.execute(
                sa.update(t.api_keys).where(t.api_keys.c.key_id == key_id).values(last_used_at=sa.func.now())
            )

    async def insert(self, key_id: str, secret_hash: str, role: Role, name: str, audit: AuditEntry) -> None:
        async with transaction(self.db) as conn:
            await conn.execute(
                t.api_keys.insert(),
                {"key_id": key_id, "secret_hash": secret_hash, "role": role.label, "name": name},
            )
            await conn.execute(t.audit_log.insert(), _audit_row(audit))

    async def revoke(self, key_id: str, audit: AuditEntry) -> bool:
        async with transaction(self.db) as conn:
            result = await conn.execute(
                sa.update(t.api_keys)
                .where(t.api_keys.c.key_id == key_id, t.api_keys.c.revoked_at.is_(None))
                .values(revoked_at=sa.func.now())
            )
            if result.rowcount:
                await conn.execute(t.audit_log.insert(), _audit_row(audit))
        return bool(result.rowcount)

    async def list(self) -> list[dict]:
        k = t.api_keys
        stmt = sa.select(k.c.key_id, k.c.name, k.c.role, k.c.created_at, k.c.last_used_at, k.c.revoked_at).order_by(
            k.c.created_at
        )
        async with transaction(self.db) as conn:
            return [row._asdict() for row in (await conn.execute(stmt)).all()]
