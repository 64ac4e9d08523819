"""The evaluator's Postgres store on a migrated database of its own: intake once, leases, the
outcome with its outbox rows in one transaction, production's cached scores."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from contracts import EvaluationCompleted, ExportCompleted
from evaluator import SCHEMA
from evaluator.adapters import evaluation_store
from evaluator.adapters.evaluation_store import EvaluationJobStore, PostgresScores
from evaluator.ports import CachedScore
from servicekit.jobstore import PostgresJobQueue
from tests.harness import create_database, drop_database, migrate, unit_of_work


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    name = f"agentloop_test_evalstore_{uuid.uuid4().hex[:10]}"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    create_database(name)
    try:
        migrate(url)
        yield url
    finally:
        drop_database(name)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EvaluationJobStore]:
    async with unit_of_work(database_url, SCHEMA) as uow:
        yield EvaluationJobStore(PostgresJobQueue(uow, evaluation_store.TABLE, evaluation_store.KEY),
                                 PostgresScores(uow.db))


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url.replace("+asyncpg", ""), autocommit=True) as conn:
        yield conn


def export() -> ExportCompleted:
    key = uuid.uuid4().hex[:8]
    return ExportCompleted.create(correlation_id=f"c-{key}", model_version=f"v-{key}", job_id=f"job-{key}", files=[
        {"uri": f"s3://b/{key}.gguf", "sha256": "a" * 64, "size_bytes": 1, "kind": "gguf", "quantization": "Q4_K_M"}])


async def test_an_export_is_taken_in_once_and_claimed_by_one_owner(store: EvaluationJobStore):
    msg = export()
    eid = f"ev-{uuid.uuid4().hex[:8]}"
    assert await store.accept(eid, msg) is True
    assert await store.accept(eid, msg) is False
    job = await store.claim("a", 30)
    while job is not None and job.evaluation_id != eid:  # earlier tests' leftovers
        job = await store.claim("a", 30)
    assert job is not None and job.export == msg and job.attempts == 0
    assert await store.start_attempt(eid, "a") == 1
    assert await store.heartbeat(eid, "a", 30, {"phase": "production"}) is True
    assert await store.heartbeat(eid, "b", 30, None) is False  # not the owner
    assert await store.start_attempt(eid, "b") is None


async def test_a_released_evaluation_is_claimable_again_after_the_delay(store: EvaluationJobStore):
    eid = f"ev-{uuid.uuid4().hex[:8]}"
    await store.accept(eid, export())
    while (job := await store.claim("a", 30)) is not None and job.evaluation_id != eid:
        pass
    assert await store.start_attempt(eid, "a") == 1
    assert await store.release(eid, "a", error="S3 down", retry_after_s=0, refund_attempt=True) is True
    again = await store.claim("b", 30)
    while again is not None and again.evaluation_id != eid:
        again = await store.claim("b", 30)
    assert again is not None and again.last_error == "S3 down" and again.attempts == 0
    assert await store.heartbeat(eid, "a", 30, None) is False  # the old owner's lease is gone


async def test_the_outcome_and_its_events_are_one_transaction_under_the_lease(store: EvaluationJobStore,
                                                                               db: psycopg.Connection):
    msg = export()
    eid = f"ev-{uuid.uuid4().hex[:8]}"
    await store.accept(eid, msg)
    while (job := await store.claim("a", 30)) is not None and job.evaluation_id != eid:
        pass
    event = EvaluationCompleted.create(correlation_id="c", evaluation_id=eid, job_id="j", candidate=msg.model_version,
                                       passed=False)
    assert await store.finish(eid, "b", passed=False, quantization=None, report_uri="s3://b/r.json", error=None,
                              events=[event]) is False
    assert await store.finish(eid, "a", passed=False, quantization=None, report_uri="s3://b/r.json", error=None,
                              events=[event]) is True
    row = db.execute("SELECT status, passed, lease_owner FROM evaluator.evaluations WHERE evaluation_id = %s",
                     (eid,)).fetchone()
    assert row == ("completed", False, None)
    staged = db.execute("SELECT message_type FROM evaluator.outbox WHERE message_id = %s",
                        (event.envelope.message_id,)).fetchall()
    assert staged == [("EvaluationCompleted",)]
    counts = await store.counts()
    assert counts.get("completed", 0) >= 1


async def test_production_scores_are_cached_per_version_quant_and_key(store: EvaluationJobStore):
    version = f"base-{uuid.uuid4().hex[:6]}"
    score = CachedScore("tools", "k1", "ast", 0.5, {"simple": 0.5}, {"items": 2}, [{"id": "x", "ok": True}])
    await store.save_scores(version, "Q4_K_M", [score])
    await store.save_scores(version, "Q4_K_M", [score])  # saving twice is harmless
    assert await store.cached_scores(version, "Q4_K_M", ["k1", "k2"]) == {"k1": score}
    assert await store.cached_scores(version, "Q8_0", ["k1"]) == {}
    assert await store.cached_scores(version, "Q4_K_M", ["k2"]) == {}
