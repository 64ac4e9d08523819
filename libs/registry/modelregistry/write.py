"""The registry's writer (the exporter only, decision 0011): register candidates, record the
gate's verdicts, move aliases.

Every alias move runs in one transaction that first locks the alias rows (`SELECT ... FOR
UPDATE`), so a gate's promotion, an operator's promotion and a rollback are serialised however
many exporter instances run; every move appends to `registry.alias_history` with its cause and
actor. Functions take an asyncpg connection and open a transaction on it (a savepoint when the
caller already has one, so the caller's inbox claim and outbox rows commit with the move).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from .errors import (
    CanaryConflictError,
    NoPreviousVersionError,
    NotPromotableError,
    UnknownVersionError,
    VersionConflictError,
)
from .model import CANARY_MODES, Canary, GateEvaluation, ModelFile, ModelVersion, canary_refusal, promotion_refusal
from .read import get_canary, get_version, running_canary


@dataclass(frozen=True)
class AliasMove:
    """What a promotion or rollback did: `version` is production now, `previous_version` before."""

    version: ModelVersion
    previous_version: str | None
    gguf: ModelFile  # the served quant's GGUF
    changed: bool = True  # False: the version was production already, nothing moved


def _jsonb(value: Any) -> str:
    """JSON text for a `$n::text::jsonb` parameter (right with or without a jsonb codec on the connection)."""
    return json.dumps(value, sort_keys=True)


async def _lock_aliases(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch("SELECT alias, version FROM registry.aliases ORDER BY alias FOR UPDATE")
    return {r["alias"]: r["version"] for r in rows}


async def _set_alias(conn: asyncpg.Connection, alias: str, old: str | None, new: str | None, *, cause: str,
                     actor: str, reason: str = "") -> None:
    if old == new:
        return
    if new is None:
        await conn.execute("DELETE FROM registry.aliases WHERE alias = $1", alias)
    else:
        await conn.execute(
            """INSERT INTO registry.aliases (alias, version, updated_at, updated_by) VALUES ($1, $2, now(), $3)
               ON CONFLICT (alias) DO UPDATE SET version = EXCLUDED.version, updated_at = now(),
                                                 updated_by = EXCLUDED.updated_by""",
            alias, new, actor,
        )
    await conn.execute(
        """INSERT INTO registry.alias_history (alias, from_version, to_version, cause, actor, reason)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        alias, old, new, cause, actor, reason,
    )


async def _set_status(conn: asyncpg.Connection, version: str, status: str) -> None:
    await conn.execute("UPDATE registry.model_versions SET status = $2, updated_at = now() WHERE version = $1",
                       version, status)


async def register_candidate(
    conn: asyncpg.Connection, *, version: str, base_model: str, files: list[ModelFile], job_id: str,
    dataset_id: str | None, adapter_uri: str | None, lineage: dict[str, Any], metrics: dict[str, Any] | None = None,
    quantization: str | None = None, actor: str = "exporter", cause: str = "exported",
) -> ModelVersion:
    """Record an exported version as `candidate` and point the `candidate` alias at it.

    Idempotent for the same job (a re-run export after a lost lease registers the same name):
    the existing row is returned unchanged. The same name from another job → VersionConflictError.
    """
    if not any(f.kind == "gguf" for f in files):
        raise NotPromotableError(f"{version}: an export without a GGUF file cannot be registered")
    async with conn.transaction():
        aliases = await _lock_aliases(conn)
        inserted = await conn.fetchval(
            """INSERT INTO registry.model_versions
                   (version, base_model, status, job_id, dataset_id, adapter_uri, quantization, files, lineage,
                    metrics)
               VALUES ($1, $2, 'candidate', $3, $4, $5, $6, $7::text::jsonb, $8::text::jsonb, $9::text::jsonb)
               ON CONFLICT (version) DO NOTHING RETURNING version""",
            version, base_model, job_id, dataset_id, adapter_uri, quantization,
            _jsonb([f.to_doc() for f in files]), _jsonb(lineage), _jsonb(metrics or {}),
        )
        if inserted is None:
            existing = await get_version(conn, version)
            assert existing is not None
            if existing.job_id != job_id:
                raise VersionConflictError(f"{version} is registered for job {existing.job_id}, not {job_id}")
            return existing
        await _set_alias(conn, "candidate", aliases.get("candidate"), version, cause=cause, actor=actor)
        found = await get_version(conn, version)
        assert found is not None
        return found


async def promote(
    conn: asyncpg.Connection, version: str, *, cause: str, actor: str, quantization: str | None = None,
    evaluation_id: str | None = None, reason: str = "",
) -> AliasMove:
    """previous ← production, production ← `version`, in one transaction.

    Refused (NotPromotableError / UnknownVersionError, nothing changed): an unknown version, a
    rejected one, one never evaluated (no evaluation id recorded or given, and never production
    before), or one without a GGUF of the quant to serve. `quantization` and `evaluation_id`
    (the gate's verdict) are recorded on the version. Promoting the current production changes
    nothing and answers `changed=False`.
    """
    async with conn.transaction():
        aliases = await _lock_aliases(conn)
        target = await get_version(conn, version)
        if target is None:
            raise UnknownVersionError(version)
        if (refusal := promotion_refusal(target, quantization, evaluation_id)) is not None:
            raise NotPromotableError(refusal)
        quant = quantization or target.quantization
        gguf = target.gguf(quant)
        assert gguf is not None  # promotion_refusal checked it
        current = aliases.get("production")
        if current == version:
            return AliasMove(target, aliases.get("previous"), gguf, changed=False)
        await conn.execute(
            """UPDATE registry.model_versions
               SET quantization = $2, evaluation_id = COALESCE($3, evaluation_id), status = 'production',
                   lineage = CASE WHEN $3::text IS NULL THEN lineage
                                  ELSE jsonb_set(lineage, '{evaluation_id}', to_jsonb($3::text)) END,
                   updated_at = now()
               WHERE version = $1""",
            version, gguf.quantization, evaluation_id,
        )
        old_previous = aliases.get("previous")
        if current is not None:
            await _set_status(conn, current, "previous")
            if old_previous not in (None, current, version):
                await _set_status(conn, old_previous, "retired")
            await _set_alias(conn, "previous", old_previous, current, cause=cause, actor=actor, reason=reason)
        await _set_alias(conn, "production", current, version, cause=cause, actor=actor, reason=reason)
        await _supersede_canary(conn, actor, f"production moved to {version} ({cause})")
        if aliases.get("candidate") == version:  # the candidate is production now
            await _set_alias(conn, "candidate", version, None, cause=cause, actor=actor, reason=reason)
        promoted = await get_version(conn, version)
        assert promoted is not None
        return AliasMove(promoted, current, gguf)


async def rollback(conn: asyncpg.Connection, *, actor: str, cause: str = "rollback", reason: str = "") -> AliasMove:
    """production ↔ previous, in one transaction; NoPreviousVersionError when there is no previous."""
    async with conn.transaction():
        aliases = await _lock_aliases(conn)
        previous, current = aliases.get("previous"), aliases.get("production")
        if previous is None or previous == current:
            raise NoPreviousVersionError()
        target = await get_version(conn, previous)
        if target is None:  # the foreign key makes this impossible; be explicit anyway
            raise UnknownVersionError(previous)
        gguf = target.gguf()
        if gguf is None:
            raise NotPromotableError(f"previous version {previous} has no GGUF for its quant {target.quantization!r}")
        await _set_status(conn, previous, "production")
        if current is not None:
            await _set_status(conn, current, "previous")
        await _set_alias(conn, "production", current, previous, cause=cause, actor=actor, reason=reason)
        await _set_alias(conn, "previous", previous, current, cause=cause, actor=actor, reason=reason)
        await _supersede_canary(conn, actor, f"production moved back to {previous} ({cause})")
        restored = await get_version(conn, previous)
        assert restored is not None
        return AliasMove(restored, current, gguf)


async def reject(conn: asyncpg.Connection, version: str, *, actor: str, cause: str = "gate",
                 evaluation_id: str | None = None, reason: str = "") -> ModelVersion:
    """Mark a candidate rejected (the gate failed it); the `candidate` alias leaves it."""
    async with conn.transaction():
        aliases = await _lock_aliases(conn)
        target = await get_version(conn, version)
        if target is None:
            raise UnknownVersionError(version)
        if version in (aliases.get("production"), aliases.get("previous")):
            raise NotPromotableError(f"{version} is {target.status}: only a candidate can be rejected")
        await conn.execute(
            """UPDATE registry.model_versions SET status = 'rejected', evaluation_id = COALESCE($2, evaluation_id),
                      updated_at = now() WHERE version = $1""",
            version, evaluation_id,
        )
        if aliases.get("candidate") == version:
            await _set_alias(conn, "candidate", version, None, cause=cause, actor=actor, reason=reason)
        rejected = await get_version(conn, version)
        assert rejected is not None
        return rejected


async def record_evaluation(conn: asyncpg.Connection, version: str, evaluation: GateEvaluation) -> ModelVersion:
    """Merge the gate's verdict into the version's `metrics` (keys of GateEvaluation.to_doc; the
    export's own keys stay). The same evaluation again writes the same document; a later one
    replaces the earlier's keys. UnknownVersionError for a version not registered."""
    async with conn.transaction():
        found = await conn.fetchval(
            """UPDATE registry.model_versions SET metrics = metrics || $2::text::jsonb, updated_at = now()
               WHERE version = $1 RETURNING version""",
            version, _jsonb(evaluation.to_doc()),
        )
        if found is None:
            raise UnknownVersionError(version)
        recorded = await get_version(conn, version)
        assert recorded is not None
        return recorded


async def alias_history(conn: asyncpg.Connection, alias: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest alias moves first (for audits and tests)."""
    rows = await conn.fetch(
        """SELECT id, alias, from_version, to_version, cause, actor, reason, at FROM registry.alias_history
           WHERE $1::text IS NULL OR alias = $1 ORDER BY id DESC LIMIT $2""",
        alias, limit,
    )
    return [dict(r) for r in rows]


# ---------------------------------------------------------------------- canaries (decision 0020)


async def start_canary(conn: asyncpg.Connection, *, canary_id: str, version: str, share_pct: float, mode: str,
                       min_samples: int, max_duration_s: int, actor: str, reason: str = "") -> Canary:
    """Route `share_pct` % of live runs to `version` from now on. Idempotent for the same id
    (the canary as recorded); CanaryConflictError / UnknownVersionError otherwise refused."""
    if not 0 < share_pct <= 100:
        raise CanaryConflictError(f"share {share_pct:g}% is outside (0, 100]")
    if mode not in CANARY_MODES:
        raise CanaryConflictError(f"mode {mode!r} is not one of {', '.join(CANARY_MODES)}")
    async with conn.transaction():
        aliases = await _lock_aliases(conn)
        existing = await get_canary(conn, canary_id)
        if existing is not None:
            return existing
        target = await get_version(conn, version)
        if target is None:
            raise UnknownVersionError(version)
        refusal = canary_refusal(target, version, mode, aliases.get("production"), await running_canary(conn))
        if refusal is not None:
            raise CanaryConflictError(refusal)
        await conn.execute(
            """INSERT INTO registry.canaries (canary_id, version, production_version, share_pct, mode, status,
                                              min_samples, max_duration_s, started_by, reason)
               VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $9)""",
            canary_id, version, aliases.get("production"), share_pct, mode, min_samples, max_duration_s, actor,
            reason,
        )
        started = await get_canary(conn, canary_id)
        assert started is not None
        return started


async def end_canary(conn: asyncpg.Connection, canary_id: str, *, status: str, actor: str, reason: str,
                     report: dict[str, Any] | None = None) -> Canary | None:
    """End a running canary (`promoted`, `rolled_back` or `stopped`); the canary as ended, or
    None when it had ended already (a repeated command changes nothing). The promotion itself
    is `promote(..., cause="canary")` in the same transaction."""
    if status not in ("promoted", "rolled_back", "stopped"):
        raise ValueError(f"a canary cannot end as {status!r}")
    async with conn.transaction():
        await _lock_aliases(conn)
        found = await get_canary(conn, canary_id)
        if found is None:
            raise CanaryConflictError(f"no canary {canary_id!r}")
        if not found.running:
            return None
        await conn.execute(
            """UPDATE registry.canaries SET status = $2, ended_by = $3, ended_at = now(), reason = $4,
                      report = $5::text::jsonb WHERE canary_id = $1""",
            canary_id, status, actor, reason, _jsonb(report) if report is not None else None,
        )
        return await get_canary(conn, canary_id)


async def _supersede_canary(conn: asyncpg.Connection, actor: str, reason: str) -> None:
    """Production moved by another path: the running canary compares against a version that no
    longer serves, so it ends (`superseded`)."""
    await conn.execute(
        """UPDATE registry.canaries SET status = 'superseded', ended_by = $1, ended_at = now(), reason = $2
           WHERE status = 'running'""",
        actor, reason,
    )
