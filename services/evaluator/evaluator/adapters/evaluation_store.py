"""The evaluator's EvaluationStore: `evaluator.evaluations` as a servicekit job queue (rows mapped
to `EvaluationJob`) beside production's cached suite scores.

The queue (`servicekit.jobstore`) holds every lease rule; this file holds only the evaluator's own
columns. Built on `PostgresJobQueue` and `PostgresScores` in the service, on the shared fake queue
in unit tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from contracts import Contract, ExportCompleted
from servicekit.db import AsyncpgPool
from servicekit.jobstore import JobQueue, Row

from .. import SCHEMA
from ..domain import EvaluationJob, EvaluationStatus
from ..ports import CachedScore

TABLE, KEY = f"{SCHEMA}.evaluations", "evaluation_id"
SCORES = f"{SCHEMA}.baseline_scores"


def evaluation_of(row: Row) -> EvaluationJob:
    return EvaluationJob(row["evaluation_id"], ExportCompleted.model_validate(row["request"]), row["attempts"],
                         row["last_error"], row["created_at"])


class ScoreCache(Protocol):
    async def cached_scores(self, version: str, quantization: str, keys: Sequence[str]) -> dict[str, CachedScore]:
        ...

    async def save_scores(self, version: str, quantization: str, scores: Sequence[CachedScore]) -> None:
        ...


class PostgresScores:
    """`evaluator.baseline_scores`: written once per (version, quant, suite key), never updated."""

    def __init__(self, db: AsyncpgPool) -> None:
        self.db = db

    async def cached_scores(self, version: str, quantization: str, keys: Sequence[str]) -> dict[str, CachedScore]:
        rows = await self.db.pool.fetch(
            f"""SELECT suite, suite_key, kind, score, per_category, details, items FROM {SCORES}
                WHERE model_version = $1 AND quantization = $2 AND suite_key = ANY($3::text[])""",
            version, quantization, list(keys),
        )
        return {r["suite_key"]: CachedScore(r["suite"], r["suite_key"], r["kind"], r["score"], r["per_category"],
                                            r["details"], r["items"]) for r in rows}

    async def save_scores(self, version: str, quantization: str, scores: Sequence[CachedScore]) -> None:
        if scores:
            await self.db.pool.executemany(
                f"""INSERT INTO {SCORES} (model_version, quantization, suite_key, suite, kind, score, per_category,
                                          details, items)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING""",
                [(version, quantization, s.key, s.suite, s.kind, s.score, s.per_category, s.details, s.items)
                 for s in scores],
            )


class EvaluationJobStore:
    """Implements `ports.EvaluationStore` on `queue` and `scores`."""

    def __init__(self, queue: JobQueue, scores: ScoreCache) -> None:
        self.queue = queue
        # The lease writes that need none of this service's columns are the queue's own.
        self.start_attempt, self.release, self.counts = queue.start_attempt, queue.release, queue.counts
        self.scores = scores
        self.cached_scores, self.save_scores = scores.cached_scores, scores.save_scores

    async def accept(self, evaluation_id: str, export: ExportCompleted) -> bool:
        return await self.queue.accept(export, evaluation_id, model_version=export.model_version,
                                       job_id=export.job_id)

    async def claim(self, owner: str, ttl_s: float) -> EvaluationJob | None:
        row = await self.queue.claim(owner, ttl_s)
        return evaluation_of(row) if row is not None else None

    async def heartbeat(self, evaluation_id: str, owner: str, ttl_s: float, progress: dict[str, Any] | None) -> bool:
        return await self.queue.heartbeat(evaluation_id, owner, ttl_s, progress=progress)

    async def finish(self, evaluation_id: str, owner: str, *, passed: bool, quantization: str | None,
                     report_uri: str | None, error: str | None, events: Sequence[Contract]) -> bool:
        status = EvaluationStatus.COMPLETED if report_uri is not None else EvaluationStatus.FAILED
        return await self.queue.settle(evaluation_id, owner, status.value, events, passed=passed,
                                       quantization=quantization, report_uri=report_uri, last_error=error)

