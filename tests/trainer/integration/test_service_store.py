"""The trainer's job store against real Postgres: intake in one transaction with the inbox,
leases on the database clock, SKIP LOCKED claims, lease-guarded writes, outbox rows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import sqlalchemy as sa

from contracts import TrainingCompleted, TrainingFailed, TrainingRequested, deterministic_id
from servicekit.db import make_engine
from servicekit.jobstore import PostgresJobQueue
from trainer import SCHEMA
from trainer.adapters import job_store
from trainer.adapters.job_store import TrainingJobStore
from trainer.domain import JobStatus
from tests.harness import IsolatedEnv, create_database, drop_database, migrate, unit_of_work


@pytest.fixture(scope="module")
def database_url(infra: IsolatedEnv) -> Iterator[str]:
    name = f"{infra.database}_trainer_store_{uuid.uuid4().hex[:6]}"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    create_database(name)
    try:
        migrate(url)
        yield url
    finally:
        drop_database(name)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[TrainingJobStore]:
    async with unit_of_work(database_url, SCHEMA) as uow:
        store = TrainingJobStore(PostgresJobQueue(uow, job_store.TABLE, job_store.KEY))
        store.engine = make_engine(database_url, pool_size=2)  # for the test's own reads
        try:
            yield store
        finally:
            await store.engine.dispose()


def request(job_id: str | None = None, message_id: str | None = None) -> TrainingRequested:
    job_id = job_id or f"job-{uuid.uuid4().hex[:8]}"
    return TrainingRequested.create(
        correlation_id=f"c-{job_id}", message_id=message_id, job_id=job_id, dataset_id=f"ds-{job_id}",
        train_uri=f"s3://b/{job_id}/train.jsonl", base_model="bundled", options={"max_steps": 3, "rank": 4},
    )


async def scalar(store: TrainingJobStore, sql: str, **params: object) -> object:
    async with store.engine.connect() as conn:
        return (await conn.execute(sa.text(sql), params)).scalar_one()


async def claim_mine(store: TrainingJobStore, job_id: str, owner: str, ttl_s: float = 30.0):
    """Claim until our job comes up (other tests' jobs share the table); release the others at once."""
    while (job := await store.claim(owner, ttl_s)) is not None:
        if job.job_id == job_id:
            return job
        await store.release(job.job_id, owner, error=None, retry_after_s=3600, refund_attempt=False)
    return None


async def test_intake_writes_inbox_and_job_together_and_ignores_duplicates(store: TrainingJobStore) -> None:
    req = request()
    assert await store.accept(req) is True
    assert await store.accept(req) is False
    assert await store.accept(request(job_id=req.job_id)) is False  # another message for the same job

    assert await scalar(store, "SELECT count(*) FROM trainer.jobs WHERE job_id = :j", j=req.job_id) == 1
    assert await scalar(store, "SELECT status FROM trainer.jobs WHERE job_id = :j", j=req.job_id) == "queued"
    assert await scalar(store, "SELECT request->'options'->>'rank' FROM trainer.jobs WHERE job_id = :j",
                        j=req.job_id) == "4"
    assert await scalar(store, "SELECT count(*) FROM trainer.inbox WHERE message_id = :m",
                        m=req.envelope.message_id) == 1


async def test_a_lease_holds_until_it_expires_and_then_another_owner_takes_the_job(store: TrainingJobStore) -> None:
    req = request()
    await store.accept(req)
    job = await claim_mine(store, req.job_id, "a:1", ttl_s=1.0)
    assert job is not None and job.status == JobStatus.RUNNING and job.started_at is not None
    assert await claim_mine(store, req.job_id, "b:1") is None  # live lease
    assert await store.start_attempt(req.job_id, "a:1") == 1
    assert await store.record_checkpoint(req.job_id, "a:1", 2, "s3://b/training/x/checkpoints/step-000002/")

    await asyncio.sleep(1.2)  # the database clock must pass the lease's expiry
    taken = await claim_mine(store, req.job_id, "b:1")

    assert taken is not None and taken.attempts == 1 and taken.last_checkpoint_step == 2
    assert taken.started_at == job.started_at  # the first claim's time is kept
    assert await store.heartbeat(req.job_id, "a:1", 30.0, {"step": 3}) is False  # the old owner is fenced off
    assert await store.start_attempt(req.job_id, "a:1") is None
    assert await store.heartbeat(req.job_id, "b:1", 30.0, {"step": 3}) is True
    assert await scalar(store, "SELECT progress->>'step' FROM trainer.jobs WHERE job_id = :j", j=req.job_id) == "3"


async def test_concurrent_claims_never_give_one_job_to_two_owners(store: TrainingJobStore) -> None:
    reqs = [request() for _ in range(3)]
    for r in reqs:
        await store.accept(r)
    ours = {r.job_id for r in reqs}

    claimed = await asyncio.gather(*(store.claim(f"w{i}:1", 30.0) for i in range(6)))

    got = [j.job_id for j in claimed if j is not None and j.job_id in ours]
    assert sorted(got) == sorted(ours)  # each exactly once


async def test_release_makes_the_job_claimable_after_the_delay_and_can_refund_the_attempt(
    store: TrainingJobStore,
) -> None:
    req = request()
    await store.accept(req)
    await claim_mine(store, req.job_id, "a:1")
    await store.start_attempt(req.job_id, "a:1")

    assert await store.release(req.job_id, "a:1", error=None, retry_after_s=0, refund_attempt=True)
    again = await claim_mine(store, req.job_id, "b:1")
    assert again is not None and again.attempts == 0

    await store.start_attempt(req.job_id, "b:1")
    assert await store.release(req.job_id, "b:1", error="exit -9", retry_after_s=3600, refund_attempt=False)
    assert await claim_mine(store, req.job_id, "c:1") is None
    assert await scalar(store, "SELECT last_error FROM trainer.jobs WHERE job_id = :j", j=req.job_id) == "exit -9"


async def test_completing_and_failing_write_the_outbox_row_in_the_same_transaction(store: TrainingJobStore) -> None:
    done, bad = request(), request()
    for r in (done, bad):
        await store.accept(r)
    await claim_mine(store, done.job_id, "a:1")
    completed = TrainingCompleted.create(
        correlation_id="c", message_id=deterministic_id("training-completed", done.job_id), job_id=done.job_id,
        dataset_id=done.dataset_id, base_model="bundled", adapter_uri="s3://b/training/x/adapter/", steps=3,
    )
    assert await store.complete(done.job_id, "b:1", adapter_uri="s3://x/", metrics={}, steps=3,
                                event=completed) is False  # not the owner: nothing written
    assert await store.complete(done.job_id, "a:1", adapter_uri="s3://b/training/x/adapter/",
                                metrics={"final_loss": 0.5}, steps=3, event=completed) is True
    assert await store.complete(done.job_id, "a:1", adapter_uri="s3://x/", metrics={}, steps=3,
                                event=completed) is False  # finished jobs hold no lease

    await claim_mine(store, bad.job_id, "a:1")
    failed = TrainingFailed.create(correlation_id="c", message_id=deterministic_id("training-failed", bad.job_id),
                                   job_id=bad.job_id, reason="boom")
    assert await store.fail(bad.job_id, "a:1", reason="boom", event=failed) is True

    row = "SELECT status || ' ' || coalesce(adapter_uri, last_error) FROM trainer.jobs WHERE job_id = :j"
    assert await scalar(store, row, j=done.job_id) == "completed s3://b/training/x/adapter/"
    assert await scalar(store, row, j=bad.job_id) == "failed boom"
    for event in (completed, failed):
        assert await scalar(store, "SELECT count(*) FROM trainer.outbox WHERE message_id = :m",
                            m=event.envelope.message_id) == 1
    counts = await store.counts()
    assert counts.get("completed", 0) >= 1 and counts.get("failed", 0) >= 1
