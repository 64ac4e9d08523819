"""The exporter's job store (the servicekit job queue on Postgres) on a migrated database of its own (no service polls it): intake is
idempotent, leases expire and are taken over, and a writer that lost its lease changes nothing;
completing registers the candidate and stages the event in one transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

import modelregistry as reg
from contracts import ExportCompleted, ExportFailed, TrainingCompleted, new_id
from exporter import SCHEMA
from exporter.adapters import export_store
from exporter.adapters.export_store import ExportStore, PostgresRegistrar
from exporter.domain import JobStatus, version_name
from exporter.ports import Candidate
from modelregistry import ModelFile
from servicekit.jobstore import PostgresJobQueue
from tests.harness import IsolatedEnv, create_database, drop_database, migrate, unit_of_work


@pytest.fixture(scope="module")
def database_url(infra: IsolatedEnv) -> Iterator[str]:
    name = f"{infra.database}_exstore_{uuid.uuid4().hex[:6]}"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    create_database(name)
    try:
        migrate(url)
        yield url
    finally:
        drop_database(name)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[ExportStore]:
    async with unit_of_work(database_url, SCHEMA) as uow:
        s = ExportStore(PostgresJobQueue(uow, export_store.TABLE, export_store.KEY), PostgresRegistrar())
        s.pool = uow.db.pool  # for the test's own reads
        await s.pool.execute("DELETE FROM exporter.export_jobs")  # claim takes the oldest job: start with none
        yield s


def _training() -> TrainingCompleted:
    return TrainingCompleted.create(correlation_id=new_id(), job_id=new_id(), dataset_id="ds", base_model="bundled",
                                    adapter_uri="s3://b/training/x/adapter/")


async def _outbox(store: ExportStore, message_id: str) -> dict | None:
    return await store.pool.fetchval("SELECT body FROM exporter.outbox WHERE message_id = $1", message_id)


async def test_intake_is_idempotent_per_message_and_per_job(store: ExportStore) -> None:
    msg = _training()
    version = version_name("bundled", msg.job_id)
    assert await store.accept(msg, version)
    assert not await store.accept(msg, version)  # the same delivery again
    again = TrainingCompleted.create(correlation_id=new_id(), **msg.model_dump(exclude={"envelope"}))
    assert not await store.accept(again, version)  # another message for the same job
    row = await store.pool.fetchrow("SELECT status, version FROM exporter.export_jobs WHERE job_id = $1", msg.job_id)
    assert (row["status"], row["version"]) == ("queued", version)


async def test_an_expired_lease_is_taken_over_and_the_old_owner_changes_nothing(store: ExportStore) -> None:
    msg = _training()
    await store.accept(msg, version_name("bundled", msg.job_id))
    first = await store.claim("owner-a", ttl_s=0.3)
    assert first is not None and first.job_id == msg.job_id and first.request == msg
    assert await store.start_attempt(msg.job_id, "owner-a") == 1
    assert await store.claim("owner-b", ttl_s=30) is None  # held
    await asyncio.sleep(0.5)
    second = await store.claim("owner-b", ttl_s=30)
    assert second is not None and second.job_id == msg.job_id and second.attempts == 1
    assert not await store.heartbeat(msg.job_id, "owner-a", 30, "merge", {"x": 1})
    failed = ExportFailed.create(correlation_id="c", job_id=msg.job_id, reason="late")
    assert not await store.fail(msg.job_id, "owner-a", reason="late", event=failed)
    assert await _outbox(store, failed.envelope.message_id) is None
    assert await store.heartbeat(msg.job_id, "owner-b", 30, "quantize", {"attempt": 2})
    row = await store.pool.fetchrow("SELECT stage, progress FROM exporter.export_jobs WHERE job_id = $1", msg.job_id)
    assert row["stage"] == "quantize" and row["progress"] == {"attempt": 2}


async def test_release_makes_the_job_claimable_after_the_delay(store: ExportStore) -> None:
    msg = _training()
    await store.accept(msg, version_name("bundled", msg.job_id))
    assert await store.claim("a", 30) is not None
    await store.start_attempt(msg.job_id, "a")
    assert await store.release(msg.job_id, "a", error="crashed", retry_after_s=0.3, refund_attempt=True)
    assert await store.claim("b", 30) is None
    await asyncio.sleep(0.4)
    job = await store.claim("b", 30)
    assert job is not None and job.attempts == 0 and job.last_error == "crashed"


async def test_complete_registers_the_candidate_and_stages_the_event_together(store: ExportStore) -> None:
    msg = _training()
    version = version_name("bundled", msg.job_id)
    await store.accept(msg, version)
    await store.claim("a", 30)
    files = [ModelFile("Q4_K_M", f"s3://b/models/{version}/{version}.Q4_K_M.gguf", "c" * 64, 123, "gguf")]
    event = ExportCompleted.create(correlation_id="c", model_version=version, files=[], job_id=msg.job_id)
    candidate = Candidate(version=version, base_model="bundled", job_id=msg.job_id, dataset_id="ds",
                          adapter_uri=msg.adapter_uri, files=files, lineage={"source_run_ids": ["r1"]},
                          metrics={"parity": {"mismatches": []}})
    assert await store.complete(msg.job_id, "a", candidate=candidate, result={"files": []}, event=event)
    assert (await _outbox(store, event.envelope.message_id))["model_version"] == version
    async with store.pool.acquire() as conn:
        v = await reg.get_version(conn, version)
    assert v is not None and v.status == "candidate" and v.lineage == {"source_run_ids": ["r1"]} and v.files == files
    assert (await store.last_finished())["job_id"] == msg.job_id
    assert (await store.counts()).get(JobStatus.COMPLETED.value, 0) >= 1
