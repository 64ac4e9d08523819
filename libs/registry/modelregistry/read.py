"""The registry's read model (schema `registry`), for any service: the gateway's `GET /v1/registry/models`,
the runner at start-up, the evaluator looking for production's GGUF.

Functions take an asyncpg connection (or pool: anything with `fetch`/`fetchrow`). JSONB columns
are accepted both decoded (servicekit's `asyncpg_pool` codec) and as text (a bare connection).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from .model import ALIASES, Canary, ModelFile, ModelVersion


class Queryable(Protocol):
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def fetchrow(self, query: str, *args: Any) -> Any: ...


_SELECT = """
SELECT v.version, v.base_model, v.status, v.quantization, v.files, v.lineage, v.metrics, v.job_id,
       v.dataset_id, v.adapter_uri, v.evaluation_id, v.created_at,
       COALESCE(array_agg(a.alias ORDER BY a.alias) FILTER (WHERE a.alias IS NOT NULL), '{}') AS aliases
FROM registry.model_versions v
LEFT JOIN registry.aliases a ON a.version = v.version
"""


def _json(value: Any, default: Any) -> Any:
    if value is None:
        return default
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


def version_from_row(row: Any) -> ModelVersion:
    files = _json(row["files"], [])
    return ModelVersion(
        version=row["version"], base_model=row["base_model"], status=row["status"],
        quantization=row["quantization"], files=[ModelFile.from_doc(f) for f in files],
        lineage=_json(row["lineage"], {}), metrics=_json(row["metrics"], {}), job_id=row["job_id"],
        dataset_id=row["dataset_id"], adapter_uri=row["adapter_uri"], evaluation_id=row["evaluation_id"],
        created_at=row["created_at"], aliases=list(row["aliases"] or []),
    )


async def list_versions(conn: Queryable) -> list[ModelVersion]:
    """Every registered version, newest first."""
    rows = await conn.fetch(_SELECT + " GROUP BY v.version ORDER BY v.created_at DESC, v.version")
    return [version_from_row(r) for r in rows]


async def get_version(conn: Queryable, version: str) -> ModelVersion | None:
    row = await conn.fetchrow(_SELECT + " WHERE v.version = $1 GROUP BY v.version", version)
    return version_from_row(row) if row is not None else None


async def get_aliases(conn: Queryable) -> dict[str, str]:
    """alias → version, for the aliases that are set (production always is)."""
    rows = await conn.fetch("SELECT alias, version FROM registry.aliases ORDER BY alias")
    return {r["alias"]: r["version"] for r in rows}


async def resolve(conn: Queryable, alias_or_version: str) -> ModelVersion | None:
    """An alias (production, candidate, previous) or a version name → the version; None if unknown."""
    if alias_or_version in ALIASES:
        row = await conn.fetchrow("SELECT version FROM registry.aliases WHERE alias = $1", alias_or_version)
        if row is None:
            return None
        alias_or_version = row["version"]
    return await get_version(conn, alias_or_version)


_CANARY = """SELECT canary_id, version, production_version, share_pct, mode, status, min_samples, max_duration_s,
                    started_by, started_at, ended_by, ended_at, reason, report FROM registry.canaries"""


def canary_from_row(row: Any) -> Canary:
    return Canary(
        canary_id=row["canary_id"], version=row["version"], production_version=row["production_version"],
        share_pct=float(row["share_pct"]), mode=row["mode"], status=row["status"], min_samples=row["min_samples"],
        max_duration_s=row["max_duration_s"], started_by=row["started_by"], started_at=row["started_at"],
        ended_by=row["ended_by"], ended_at=row["ended_at"], reason=row["reason"], report=_json(row["report"], None),
    )


async def running_canary(conn: Queryable) -> Canary | None:
    """The canary running now (at most one), or None."""
    row = await conn.fetchrow(_CANARY + " WHERE status = 'running'")
    return canary_from_row(row) if row is not None else None


async def get_canary(conn: Queryable, canary_id: str | None = None) -> Canary | None:
    """One canary by id; without an id the running one, else the last one started."""
    if canary_id is not None:
        row = await conn.fetchrow(_CANARY + " WHERE canary_id = $1", canary_id)
    else:
        row = await conn.fetchrow(_CANARY + " ORDER BY status = 'running' DESC, started_at DESC LIMIT 1")
    return canary_from_row(row) if row is not None else None
