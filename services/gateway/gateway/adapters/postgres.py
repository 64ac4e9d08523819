"""Postgres adapters (SQLAlchemy Core on asyncpg) for the gateway's ports off the hot path:
API keys, audit log, operator commands. (The run index is in `run_index.py`.)

A write that also emits a message stages it in the outbox inside the same transaction; the
use case publishes it after commit, the outbox relay covers crashes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import Contract
from servicekit.outbox import Outbox

from ..domain import ApiKeyRecord, AuditEntry, Role
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


class PostgresAuditLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(self, entry: AuditEntry) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(t.audit_log.insert(), _audit_row(entry))

    async def recent(self, limit: int) -> list[AuditEntry]:
        a = t.audit_log
        stmt = sa.select(
            a.c.subject, a.c.role, a.c.action, a.c.outcome, a.c.target, a.c.client_ip, a.c.details, a.c.at
        ).order_by(a.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [AuditEntry(**row._asdict()) for row in rows]


class PostgresOpsStore:
    def __init__(self, engine: AsyncEngine, outbox: Outbox) -> None:
        self.engine = engine
        self.outbox = outbox

    async def request(self, entry: AuditEntry, message: Contract) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(t.audit_log.insert(), _audit_row(entry))
            await self.outbox.add(conn, message)


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
