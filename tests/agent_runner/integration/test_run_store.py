"""The runner's Postgres store (asyncpg statements) against the migrated schema: the inbox
claim, the trajectory row and the outbox rows are written together or not at all."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from faststream.rabbit import RabbitBroker

from agent_runner.adapters.postgres_runs import PostgresRunStore
from agent_runner.ports import RunRecord
from agent_runner.service import completed_id, logged_id
from contracts import AgentRunCompleted, ChatMessage, InteractionLogged, TrajectoryStep, Usage, utcnow
from servicekit.db import AsyncpgPool

from .conftest import fetch_all


@pytest.fixture(scope="module")
async def store(infra) -> AsyncIterator[PostgresRunStore]:
    db = AsyncpgPool(infra.database_url, what="the test's pool", max_size=2)
    await db.open()
    try:
        yield PostgresRunStore(db, RabbitBroker("amqp://unused/"))  # never connected: rows stay staged
    finally:
        await db.close()


def run_record(run_id: str | None = None, message_id: str | None = None) -> RunRecord:
    run_id = run_id or f"run-{uuid.uuid4().hex[:10]}"
    steps = [TrajectoryStep(index=0, kind="model", text="391"), TrajectoryStep(index=1, kind="final", text="391")]
    messages = [ChatMessage(role="user", content="What is 17*23?"), ChatMessage(role="assistant", content="391")]
    usage = Usage(prompt_tokens=12, completion_tokens=2, engine_ms=1.5, total_ms=2.0)
    completed = AgentRunCompleted.create(correlation_id=run_id, message_id=completed_id(run_id), run_id=run_id,
                                         outcome="answered", answer="391", steps=steps, usage=usage,
                                         model_version="m@1", engine="scripted")
    logged = InteractionLogged.create(correlation_id=run_id, message_id=logged_id(run_id), run_id=run_id,
                                      outcome="answered", messages=messages, steps=steps, usage=usage,
                                      model_version="m@1", engine="scripted", subject="tester")
    row = {
        "run_id": run_id, "subject": "tester", "outcome": "answered", "answer": "391",
        "messages": [m.model_dump(mode="json", exclude_none=True) for m in messages], "tools": [],
        "steps": [s.model_dump(mode="json") for s in steps], "options": {"max_steps": 1},
        "usage": usage.model_dump(mode="json"), "model_version": "m@1", "engine": "scripted", "error": None,
        "attempt": 1, "started_at": utcnow(),
    }
    return RunRecord(message_id or uuid.uuid4().hex, "AgentRunRequested", row, (completed, logged))


async def outbox_rows(db, run_id: str) -> list[tuple[str, bool]]:
    rows = await fetch_all(db, "SELECT message_type, published_at IS NOT NULL FROM agent_runner.outbox"
                               " WHERE body->>'run_id' = :run_id ORDER BY id", run_id=run_id)
    return [tuple(r) for r in rows]


async def test_a_run_is_recorded_with_its_claim_and_outbox_rows_in_one_go(store, db):
    record = run_record()
    run_id = record.row["run_id"]
    assert not await store.is_processed(record.message_id)

    assert await store.record(record)

    assert await store.is_processed(record.message_id)
    (row,) = await fetch_all(db, "SELECT outcome, answer, steps, usage, attempt FROM agent_runner.trajectories"
                                 " WHERE run_id = :run_id", run_id=run_id)
    assert (row.outcome, row.answer, row.attempt) == ("answered", "391", 1)
    assert row.steps == record.row["steps"] and row.usage == record.row["usage"]
    assert await outbox_rows(db, run_id) == [("AgentRunCompleted", False), ("InteractionLogged", False)]
    completed = record.outbox[0]
    assert await store.stored_outcome(run_id, completed_id(run_id)) == completed.model_dump(mode="json")


async def test_a_duplicate_delivery_writes_nothing(store, db):
    record = run_record()
    assert await store.record(record)
    assert not await store.record(record)
    assert len(await outbox_rows(db, record.row["run_id"])) == 2
    assert len(await fetch_all(db, "SELECT 1 FROM agent_runner.inbox WHERE message_id = :m", m=record.message_id)) == 1


async def test_the_same_run_under_another_message_id_is_claimed_but_not_recorded_again(store, db):
    first = run_record()
    run_id = first.row["run_id"]
    again = run_record(run_id=run_id)  # a re-sent request: same run, new message id, new outcome
    assert await store.record(first)

    assert not await store.record(again)

    assert await store.is_processed(again.message_id), "the claim stands: the message is handled"
    (row,) = await fetch_all(db, "SELECT started_at FROM agent_runner.trajectories WHERE run_id = :r", r=run_id)
    assert row.started_at == first.row["started_at"]
    assert len(await outbox_rows(db, run_id)) == 2


async def test_published_rows_are_marked(store, db):
    record = run_record()
    assert await store.record(record)
    await store.outbox.mark_published([m.envelope.message_id for m in record.outbox])
    assert await outbox_rows(db, record.row["run_id"]) == [("AgentRunCompleted", True), ("InteractionLogged", True)]


async def test_an_unknown_outcome_is_none(store):
    assert await store.stored_outcome("nope", completed_id("nope")) is None
